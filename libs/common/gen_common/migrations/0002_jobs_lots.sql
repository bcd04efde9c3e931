-- Jobs and lots: the state every stage advances and the status service reads.

CREATE TABLE jobs (
    job_id          uuid        PRIMARY KEY,
    client_id       text        NOT NULL,
    api_version     smallint    NOT NULL DEFAULT 1,
    mode            text        NOT NULL CHECK (mode IN ('sync', 'realtime', 'batch')),
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    languages       text[]      NOT NULL,
    total_lots      integer     NOT NULL CHECK (total_lots > 0),
    completed_lots  integer     NOT NULL DEFAULT 0,
    failed_lots     integer     NOT NULL DEFAULT 0,
    webhook_url     text,
    input_tokens    bigint      NOT NULL DEFAULT 0,
    cached_tokens   bigint      NOT NULL DEFAULT 0,
    output_tokens   bigint      NOT NULL DEFAULT 0,
    reasoning_tokens bigint     NOT NULL DEFAULT 0,
    cost_usd        numeric(16, 6) NOT NULL DEFAULT 0,
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    cancelled_at    timestamptz
);
CREATE INDEX jobs_client_created ON jobs (client_id, created_at DESC);
CREATE INDEX jobs_created ON jobs (created_at DESC);

CREATE TABLE lots (
    job_id            uuid        NOT NULL REFERENCES jobs ON DELETE CASCADE,
    lot_seq           integer     NOT NULL CHECK (lot_seq >= 0),
    lot_id            jsonb       NOT NULL,
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'assessing', 'assessed', 'translating',
                                        'completed', 'failed', 'cancelled')),
    webhook           text,
    missing_images    text[]      NOT NULL DEFAULT '{}',
    descriptions      jsonb,
    pending_languages text[]      NOT NULL DEFAULT '{}',
    warnings          text[]      NOT NULL DEFAULT '{}',
    error_code        text,
    error_message     text,
    input_tokens      bigint      NOT NULL DEFAULT 0,
    cached_tokens     bigint      NOT NULL DEFAULT 0,
    output_tokens     bigint      NOT NULL DEFAULT 0,
    reasoning_tokens  bigint      NOT NULL DEFAULT 0,
    cost_usd          numeric(16, 6) NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz,
    PRIMARY KEY (job_id, lot_seq)
);
CREATE INDEX lots_job_status ON lots (job_id, status);
