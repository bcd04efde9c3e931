-- W3C trace context (gen_common.tracing): outbox rows keep the context of the transaction that
-- wrote them, so the relay publishes them as part of the same trace; a lot keeps the context of
-- its lots.submitted record, so events its workers emit later (outside any consumed record)
-- continue the lot's trace. Both nullable: rows written before this migration carry none.
ALTER TABLE outbox ADD COLUMN traceparent text;
ALTER TABLE lots ADD COLUMN traceparent text;
