-- Ingest: v2 clients and keys, the nonce replay cache, idempotency records, rate-limit buckets,
-- and the jobs ingest gave up on after publishing some of their lots.

-- One row per API v2 client. rate_per_s / rate_burst override the service defaults (GCRA).
CREATE TABLE api_clients (
    client_id  text        PRIMARY KEY CHECK (client_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name       text        NOT NULL DEFAULT '',
    status     text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    rate_per_s double precision CHECK (rate_per_s > 0),
    rate_burst integer     CHECK (rate_burst > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Several keys per client so keys can be rotated: 'active' and 'retiring' keys verify,
-- 'revoked' keys never do; not_after ends a key's validity at a fixed time.
CREATE TABLE api_keys (
    client_id  text        NOT NULL REFERENCES api_clients ON DELETE CASCADE,
    key_id     text        NOT NULL CHECK (key_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    secret     bytea       NOT NULL CHECK (length(secret) >= 32),
    status     text        NOT NULL DEFAULT 'active'
               CHECK (status IN ('active', 'retiring', 'revoked')),
    not_before timestamptz NOT NULL DEFAULT now(),
    not_after  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, key_id)
);

-- Nonces of verified v2 requests; a second INSERT of the same nonce is a replay. Rows older than
-- twice the timestamp tolerance are purged (the timestamp check rejects those requests anyway).
CREATE TABLE request_nonces (
    client_id text        NOT NULL,
    nonce     text        NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, nonce)
);
CREATE INDEX request_nonces_seen ON request_nonces (seen_at);

-- The first answer to an Idempotency-Key (or to a byte-identical body, key 'body:<sha256>'),
-- replayed for repeats. status_code NULL = the first request is still running.
CREATE TABLE idempotency_keys (
    client_id    text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status_code  integer,
    response     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (client_id, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

-- GCRA state: one theoretical arrival time per bucket. Losing it in a crash only resets limits.
CREATE UNLOGGED TABLE rate_limits (
    bucket  text        PRIMARY KEY,
    tat     timestamptz NOT NULL,
    allowed boolean     NOT NULL DEFAULT true
);

-- Jobs whose creation failed after some of their lots were already published: consumers must
-- ignore lots.submitted events of these jobs (and must not create the jobs row for them).
CREATE TABLE aborted_jobs (
    job_id     uuid        PRIMARY KEY,
    reason     text        NOT NULL,
    aborted_at timestamptz NOT NULL DEFAULT now()
);
