-- A claim takes due jobs in (due_at, id) order, one batch at a time. With the index in that
-- order it reads one batch of entries; on due_at alone it sorted every due job first, which
-- with thousands due at once (the status updates of a long outage) was most of a claim.
DROP INDEX scheduled_jobs_due;
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (due_at, id);

-- A claim changes only the lease columns, which no index holds: with room left on the page
-- the new row version stays there (a HOT update) and no index is touched. Existing pages
-- take the new factor as their rows are rescheduled, which every job is at each run.
ALTER TABLE scheduled_jobs SET (fillfactor = 50);
