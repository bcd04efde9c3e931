-- Work rows are updated by id (their primary key) with "AND status = 'running' AND lease_owner =
-- $owner" (gen_common.jobs, the vision and translate stores). The partial indexes below matched
-- that status predicate, and with statistics taken while few rows were queued or running the
-- planner preferred them to the primary key: each finish then scanned every queued row of the job
-- (vision_work_job: 480 buffers and 1.2 ms for a 3,000-lot job, growing with the job) or every
-- running row. Leased rows are indexed by "lease_until IS NOT NULL" instead, which a lookup by id
-- does not match; the reaper's "lease_until < now()" still does, and a job's rows are found by
-- the (job_id, lot_seq) unique index.
DROP INDEX vision_work_job;
DROP INDEX vision_work_running;
DROP INDEX translate_work_running;
CREATE INDEX vision_work_leased ON vision_work (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX translate_work_leased ON translate_work (lease_until) WHERE lease_until IS NOT NULL;
