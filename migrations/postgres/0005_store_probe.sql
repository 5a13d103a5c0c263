-- One row that /readyz upserts to prove the store accepts a write: a database that answers
-- reads but is locked, read-only or full must not be reported ready.
-- Keep this file parallel to the other backend's 0005_store_probe.sql.

CREATE TABLE store_probe (
    id        BIGINT PRIMARY KEY,
    probed_at BIGINT NOT NULL DEFAULT 0
);
