-- The runtime's own tables: poison records and the transactional outbox.

CREATE TABLE dead_letter (
    id             bigserial PRIMARY KEY,
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    kafka_partition integer    NOT NULL,
    kafka_offset   bigint      NOT NULL,
    key            bytea,
    value          bytea,
    error          text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer_group, topic, kafka_partition, kafka_offset)
);

-- Events written in the same transaction as the state they announce; a relay publishes them.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,  -- base topic name; the relay applies the topic prefix
    key        text        NOT NULL,
    payload    bytea       NOT NULL,  -- the event's JSON, exactly as published
    created_at timestamptz NOT NULL DEFAULT now()
);
