-- Translate stage: one row per assessed lot, one work row per (lot, language), one result row
-- per finished (lot, language). Redelivered lots.assessed records are absorbed by the keys.

CREATE TABLE translate_lots (
    job_id          uuid        NOT NULL,
    lot_seq         integer     NOT NULL CHECK (lot_seq >= 0),
    lot_id          jsonb       NOT NULL,
    mode            text        NOT NULL CHECK (mode IN ('sync', 'realtime', 'batch')),
    languages       text[]      NOT NULL,  -- as requested, en codes dropped, duplicates kept
    description_en  text        NOT NULL,
    assessment      jsonb       NOT NULL,  -- structured assessment; codes are language-free
    missing_images  text[]      NOT NULL DEFAULT '{}',
    assessed_at     timestamptz NOT NULL,
    deadline_at     timestamptz,           -- sync lots only: the translation time budget
    cancelled       boolean     NOT NULL DEFAULT false,
    translated_at   timestamptz,           -- set once, with the LotTranslated outbox row
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, lot_seq)
);

-- Jobs cancelled through jobs.control; a lots.assessed arriving later is dropped.
CREATE TABLE translate_cancelled_jobs (
    job_id       uuid        PRIMARY KEY,
    cancelled_at timestamptz NOT NULL DEFAULT now()
);

-- The work queue (gen_common.jobs): one row per lot and distinct non-en language.
CREATE TABLE translate_work (
    id              bigserial   PRIMARY KEY,
    job_id          uuid        NOT NULL,
    lot_seq         integer     NOT NULL,
    language        text        NOT NULL,
    status          text        NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    priority        smallint    NOT NULL DEFAULT 5,  -- sync 10 > realtime 5 > batch 1
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    last_error      text,
    deadline_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, lot_seq, language)
);
CREATE INDEX translate_work_due ON translate_work (priority DESC, next_attempt_at, id)
    WHERE status = 'queued';
CREATE INDEX translate_work_running ON translate_work (lease_until) WHERE status = 'running';
CREATE INDEX translate_work_deadline ON translate_work (deadline_at)
    WHERE status = 'queued' AND deadline_at IS NOT NULL;

-- One row per finished (lot, language): a translation, or why there is none.
CREATE TABLE translate_results (
    job_id           uuid        NOT NULL,
    lot_seq          integer     NOT NULL,
    language         text        NOT NULL,
    outcome          text        NOT NULL
                     CHECK (outcome IN ('translated', 'time_limit', 'failed')),
    text             text,
    error_code       text,
    model            text,
    response_id      text,
    input_tokens     bigint      NOT NULL DEFAULT 0,
    cached_tokens    bigint      NOT NULL DEFAULT 0,
    output_tokens    bigint      NOT NULL DEFAULT 0,
    reasoning_tokens bigint      NOT NULL DEFAULT 0,
    cost_usd         numeric(16, 6) NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, lot_seq, language)
);
