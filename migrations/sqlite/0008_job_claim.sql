-- Nothing to change: PostgreSQL's 0008_job_claim.sql orders its due-jobs index by
-- (due_at, id) and leaves room on each page for a claim's new row version. Here the index
-- on due_at already ends in the rowid, which id is, and a row is rewritten in place.
-- Kept so the two backends' migrations keep the same numbers.
SELECT 1;
