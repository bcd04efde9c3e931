-- Status: GET /api/v1/batch-jobs?status=... pages newest first within one status.
CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at DESC, job_id DESC);
