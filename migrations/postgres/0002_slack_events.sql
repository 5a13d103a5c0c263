-- Slack Events API deliveries already taken, keyed by event_id. Slack retries a delivery
-- (X-Slack-Retry-Num) when it did not see a 2xx in time, and a retry may reach another
-- replica than the original, so the memory of what was seen lives in the shared database.
-- Keep this file parallel to the other backend's 0002_slack_events.sql.

CREATE TABLE slack_events (
    event_key TEXT   PRIMARY KEY,
    seen_at   BIGINT NOT NULL
);
CREATE INDEX slack_events_seen_at ON slack_events (seen_at);
