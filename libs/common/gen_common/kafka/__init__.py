"""Kafka, and the only package that imports aiokafka (modules: publish, consume, lag).

- :func:`open_publisher` — an idempotent producer (``acks=all``); ``publish`` returns once the
  event is durably in Kafka.
- :func:`consume` — the consume loop: decode each record into its event model, run the handler
  inside the batch's PostgreSQL transaction (no savepoints: a permanent failure runs the batch
  again with a savepoint per record; :mod:`gen_common.kafka.batch`), commit the transaction, and
  only then commit the offsets. Undecodable or schema-invalid records, and records whose handler
  raises a :class:`~gen_common.errors.PermanentError`, become ``dead_letter`` rows in that same
  transaction, so the partition keeps flowing. A :class:`~gen_common.errors.RetryableError` (or a
  lost database) rolls the batch back and rewinds to it. Cancellation stops cleanly without
  committing anything that was not processed.
- :func:`tail` — a group-less reader from the latest offset (sync replies).
- :func:`ensure_topics` — create the topics with the configured partitions and replication.
- :func:`open_lag_probe` — a group's committed offsets against its topics' end offsets (metrics).

Every produced record carries a W3C ``traceparent`` header (a child of the bound or given trace
context, see :mod:`gen_common.tracing`); the consume loop binds each record's trace context and
its event's job_id / lot_seq / lot_id (:mod:`gen_common.logs`) while its handler runs.
"""

from gen_common.kafka.batch import Received, Subscription
from gen_common.kafka.consume import consume, tail
from gen_common.kafka.lag import LagProbe, PartitionLag, open_lag_probe
from gen_common.kafka.publish import (
    TRACEPARENT,
    Publisher,
    encode,
    ensure_topics,
    new_traceparent,
    open_publisher,
)

__all__ = [
    "TRACEPARENT",
    "LagProbe",
    "PartitionLag",
    "Publisher",
    "Received",
    "Subscription",
    "consume",
    "encode",
    "ensure_topics",
    "new_traceparent",
    "open_lag_probe",
    "open_publisher",
    "tail",
]
