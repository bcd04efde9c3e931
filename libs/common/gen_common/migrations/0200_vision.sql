-- Vision stage: one work row per submitted lot (gen_common.jobs queue), one row per model call
-- (written BEFORE the call, so duplicate calls after a crash are bounded and countable), and one
-- result row per assessed lot. Redelivered lots.submitted records are absorbed by the keys.

CREATE TABLE vision_work (
    id              bigserial   PRIMARY KEY,
    job_id          uuid        NOT NULL,
    lot_seq         integer     NOT NULL CHECK (lot_seq >= 0),
    lot_id          jsonb       NOT NULL,
    mode            text        NOT NULL CHECK (mode IN ('sync', 'realtime', 'batch')),
    path            text        NOT NULL DEFAULT 'realtime' CHECK (path IN ('realtime', 'batch')),
    languages       text[]      NOT NULL,
    images          text[]      NOT NULL,
    additional_info text        NOT NULL DEFAULT '',
    status          text        NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    priority        smallint    NOT NULL DEFAULT 5,  -- sync 10 > realtime 5 > batch 1
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    last_error      text,
    model_calls     integer     NOT NULL DEFAULT 0,  -- calls started for this lot (all attempts)
    invalid_outputs integer     NOT NULL DEFAULT 0,  -- refusals / incomplete / unparseable
    refused_images  text[]      NOT NULL DEFAULT '{}',  -- images OpenAI could not download
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, lot_seq)
);
CREATE INDEX vision_work_due ON vision_work (priority DESC, next_attempt_at, id)
    WHERE status = 'queued';
CREATE INDEX vision_work_running ON vision_work (lease_until) WHERE status = 'running';
CREATE INDEX vision_work_job ON vision_work (job_id) WHERE status IN ('queued', 'running');

-- Every model call, recorded before it is made; finished_at/outcome filled after.
CREATE TABLE vision_calls (
    id          bigserial   PRIMARY KEY,
    work_id     bigint      NOT NULL,
    job_id      uuid        NOT NULL,
    lot_seq     integer     NOT NULL,
    attempt     integer     NOT NULL,
    owner       text        NOT NULL,
    model       text        NOT NULL,
    image_count integer     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text,       -- ok | rate_limited | upstream | invalid_output | image_refused | ...
    response_id text
);
CREATE INDEX vision_calls_work ON vision_calls (work_id);

-- One assessment per lot (realtime or Batch API path).
CREATE TABLE vision_results (
    job_id           uuid        NOT NULL,
    lot_seq          integer     NOT NULL,
    assessment       jsonb       NOT NULL,  -- the strict-schema structure (taxonomy codes)
    html             text        NOT NULL,  -- English description, <p> paragraphs, escaped
    missing_images   text[]      NOT NULL DEFAULT '{}',
    model            text        NOT NULL,
    response_id      text,
    via_batch        boolean     NOT NULL DEFAULT false,
    input_tokens     bigint      NOT NULL DEFAULT 0,
    cached_tokens    bigint      NOT NULL DEFAULT 0,
    output_tokens    bigint      NOT NULL DEFAULT 0,
    reasoning_tokens bigint      NOT NULL DEFAULT 0,
    cost_usd         numeric(16, 6) NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, lot_seq)
);
