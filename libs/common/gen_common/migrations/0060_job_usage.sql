-- Token and cost usage on its way to the job's totals (gen_common.job_usage).
--
-- Every stored model result used to add its usage to its jobs row in the same statement. With
-- 48 workers finishing lots of one job, that single row was updated ~2 times per lot: workers
-- queued on its row lock and PostgreSQL walked ever longer update chains (10 of 26 ms of CPU per
-- lot in bench_pipeline). A result now appends its usage here (insert-only, no shared row), and
-- the notifier folds the rows into jobs: periodically, and for a job when it finalises it.
CREATE TABLE job_usage (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id           uuid           NOT NULL,
    input_tokens     bigint         NOT NULL,
    cached_tokens    bigint         NOT NULL,
    output_tokens    bigint         NOT NULL,
    reasoning_tokens bigint         NOT NULL,
    cost_usd         numeric(16, 6) NOT NULL,
    created_at       timestamptz    NOT NULL DEFAULT now()
);
CREATE INDEX job_usage_job ON job_usage (job_id);
