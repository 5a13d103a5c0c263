-- Inbound deliveries already taken, per chat platform: a platform retries a delivery it did
-- not see acknowledged in time, and the retry may reach another replica, so the memory of
-- what was seen lives in the shared database. Replaces slack_events, which only one
-- platform could use; its rows are kept (they are Slack's). Keep this file parallel to the
-- other backend's 0007_delivery_dedup.sql.

CREATE TABLE inbound_deliveries (
    platform TEXT   NOT NULL,
    key      TEXT   NOT NULL,
    seen_at  BIGINT NOT NULL,
    PRIMARY KEY (platform, key)
);
CREATE INDEX inbound_deliveries_seen_at ON inbound_deliveries (seen_at);

INSERT INTO inbound_deliveries (platform, key, seen_at)
    SELECT 'slack', event_key, seen_at FROM slack_events;

DROP TABLE slack_events;
