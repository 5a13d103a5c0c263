-- The newest signed checkpoints of the audit log, for `audit export`. Verification never
-- trusts this table: it checks against the checkpoint file or an export's own records.
CREATE TABLE audit_checkpoints (
    seq       BIGINT NOT NULL DEFAULT 0,
    hash      TEXT   NOT NULL DEFAULT '',
    at        BIGINT NOT NULL DEFAULT 0,
    kind      TEXT   NOT NULL DEFAULT 'periodic',
    signature TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (seq, kind)
);
