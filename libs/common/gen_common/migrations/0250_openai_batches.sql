-- OpenAI Batch API bookkeeping (gen_common.openai_batch): one row per input file / batch, one row
-- per line. Every remote call is recorded before and after, so a crash never loses or duplicates a
-- batch: 'preparing' (items claimed, file not yet recorded) -> 'uploaded' (input_file_id known)
-- -> 'submitted' (batch_id known; remote_status mirrors OpenAI) -> 'finished' (every line applied);
-- 'abandoned' = never reached OpenAI as a batch (its items went back to the stage).

CREATE TABLE openai_batches (
    id               bigserial   PRIMARY KEY,
    stage            text        NOT NULL,
    model            text        NOT NULL,
    job_id           text        NOT NULL,  -- one job per batch, so cancelling a job is exact
    status           text        NOT NULL DEFAULT 'preparing'
                     CHECK (status IN ('preparing', 'uploaded', 'submitted', 'finished', 'abandoned')),
    remote_status    text,                  -- OpenAI's batch status, as last polled
    line_count       integer     NOT NULL CHECK (line_count > 0),
    input_bytes      bigint      NOT NULL,
    est_tokens       bigint      NOT NULL,  -- estimated enqueued prompt tokens
    input_file_id    text,
    batch_id         text        UNIQUE,
    output_file_id   text,
    error_file_id    text,
    counts           jsonb,                 -- request_counts {total, completed, failed}
    usage            jsonb,
    cancel_requested boolean     NOT NULL DEFAULT false,
    lease_owner      text,
    lease_until      timestamptz,
    next_poll_at     timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    uploaded_at      timestamptz,
    submitted_at     timestamptz,
    last_polled_at   timestamptz,
    completed_at     timestamptz,
    error            text
);
CREATE INDEX openai_batches_open ON openai_batches (stage, status, next_poll_at)
    WHERE status IN ('preparing', 'uploaded', 'submitted');
CREATE INDEX openai_batches_job ON openai_batches (job_id) WHERE status <> 'finished';

CREATE TABLE openai_batch_items (
    batch_row   bigint      NOT NULL REFERENCES openai_batches ON DELETE CASCADE,
    work_id     bigint      NOT NULL,      -- the stage's work row id
    custom_id   text        NOT NULL UNIQUE,
    line_no     integer     NOT NULL,      -- 1-based line in the input file
    attempt     integer     NOT NULL,      -- the work row's attempts when it was claimed
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'completed', 'failed', 'retried', 'released',
                                  'cancelled')),
    error       text,
    finished_at timestamptz,
    PRIMARY KEY (batch_row, work_id)
);
CREATE INDEX openai_batch_items_pending ON openai_batch_items (batch_row) WHERE status = 'pending';
