-- Which process carries out an executing request, and whether that process is alive, so a
-- request whose process died (kill -9, OOM, node loss) is found and reconciled by another
-- one instead of staying `executing` forever. Keep this file parallel to the other
-- backend's 0004_request_owner.sql.

ALTER TABLE requests ADD COLUMN owner TEXT;
-- The last progress line seen while it ran, so an interrupted record can say where it was.
ALTER TABLE requests ADD COLUMN last_progress TEXT;
-- When someone acknowledged an interrupted request; until then `requests` lists it.
ALTER TABLE requests ADD COLUMN acknowledged_at BIGINT;

-- One row per running process. A zero heartbeat reads as long dead, which is the safe side.
CREATE TABLE replicas (
    owner        TEXT   PRIMARY KEY,
    started_at   BIGINT NOT NULL DEFAULT 0,
    heartbeat_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX requests_owner ON requests (owner);
