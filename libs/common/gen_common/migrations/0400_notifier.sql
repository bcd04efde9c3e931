-- Notifier: webhook endpoints, deliveries (a gen_common.jobs work table), their attempt log,
-- and the lots waiting to be grouped into a W2 chunk.

CREATE TABLE webhook_endpoints (
    id                 bigserial   PRIMARY KEY,
    url                text        NOT NULL UNIQUE,
    secret             text,       -- NULL: the shared client key signs (v1 receivers know it)
    old_secrets        jsonb       NOT NULL DEFAULT '[]',  -- [{"secret": ..., "expires_at": ...}]
    disabled_at        timestamptz,
    disabled_reason    text,
    breaker_open_until timestamptz,
    breaker_trips      integer     NOT NULL DEFAULT 0,
    breaker_since      timestamptz NOT NULL DEFAULT now(),  -- attempts before it are not sampled
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- status: 'queued' (shown as pending) and 'running' (shown as sending) are the gen_common.jobs
-- states; delivered | failed | exhausted | disabled are final until a manual replay.
CREATE TABLE webhook_deliveries (
    id              bigserial   PRIMARY KEY,
    msg_id          text        NOT NULL UNIQUE,  -- webhook-id, stable across retries
    endpoint_id     bigint      NOT NULL REFERENCES webhook_endpoints,
    job_id          uuid,
    kind            text        NOT NULL CHECK (kind IN ('lots', 'completion', 'lot_event')),
    body            bytea       NOT NULL,         -- the exact bytes sent on every attempt
    status          text        NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'delivered', 'failed', 'exhausted',
                                      'disabled')),
    trigger         text        NOT NULL DEFAULT 'scheduled'
                    CHECK (trigger IN ('scheduled', 'manual')),
    priority        smallint    NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    last_error      text,
    last_status_code integer,
    last_attempt_at timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (priority DESC, next_attempt_at, id)
    WHERE status = 'queued';
CREATE INDEX webhook_deliveries_running ON webhook_deliveries (endpoint_id)
    WHERE status = 'running';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, status);

CREATE TABLE webhook_attempts (
    id             bigserial   PRIMARY KEY,
    delivery_id    bigint      NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    endpoint_id    bigint      NOT NULL REFERENCES webhook_endpoints,
    attempt        integer     NOT NULL,
    trigger        text        NOT NULL,
    attempted_at   timestamptz NOT NULL,
    status_code    integer,
    duration_ms    integer     NOT NULL DEFAULT 0,
    response_body  text,        -- at most 20 kB
    error_class    text,        -- NULL on success; http_status, timeout, connect, refused_address...
    error          text,
    succeeded      boolean     NOT NULL,
    next_attempt_at timestamptz
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);
CREATE INDEX webhook_attempts_endpoint_time ON webhook_attempts (endpoint_id, attempted_at);

-- Finalised lots of a job with a lot webhook URL, not yet sent in a W2 chunk.
CREATE TABLE notifier_chunk_lots (
    job_id   uuid        NOT NULL,
    url      text        NOT NULL,
    lot_seq  integer     NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, url, lot_seq)
);
