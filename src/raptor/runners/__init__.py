"""Ingestion: stream consumers (``streaming`` DataSources) and the ``rest`` builder.

Modules, by concept (see ``docs/ingestion.md`` for the behaviour users see):

* :mod:`~raptor.runners.source` — the source contract (partitions, positions, batches,
  ack-after-write, resume state) that every broker adapter implements;
* one adapter per broker, each the only importer of its client library, imported lazily:
  :mod:`~raptor.runners.kafka` (confluent-kafka), :mod:`~raptor.runners.redis_streams`
  (redis), :mod:`~raptor.runners.nats` (nats-py), :mod:`~raptor.runners.pubsub`
  (google-cloud-pubsub);
* :mod:`~raptor.runners.config` — DataSource ``config`` entries and ``secretKeyRef`` values;
* :mod:`~raptor.runners.events` — per event: decode, flatten, keys, event time, programs,
  mutations, poison reasons;
* :mod:`~raptor.runners.loop` — the consume→update loop of one DataSource (exactly-once effect
  through :class:`raptor.state.CheckpointStore`);
* :mod:`~raptor.runners.dead_letters` — where poison messages go;
* :mod:`~raptor.runners.metrics` — counters rendered as Prometheus text;
* :mod:`~raptor.runners.process` — ``raptor runner``'s process (probes, metrics, drain);
* :mod:`~raptor.runners.supervisor` — the in-process runners of ``raptor up``;
* :mod:`~raptor.runners.rest_builder` — request-time HTTP sources (the only importer of httpx).

Nothing here is imported by ``import raptor``.
"""
