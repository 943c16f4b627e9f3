"""The memory service: session history, running summaries, user memories, knowledge.

Infrastructure-free core (pure logic, unit-tested without Kafka or MongoDB):
``tokens`` (estimates), ``window`` (history window, when to summarise),
``summarizer``, ``learning`` (facts, merge, relevance), ``chunking``,
``retrieval`` (BM25, vectors, RRF, hybrid) and ``context`` (assembly within
a budget). The service around it: ``store`` (MongoDB collections), ``knowledge``
(ingestion and the per-replica search index), ``assembly`` (a run's context
from the store), ``handlers`` (one per consumed topic), ``app`` (wiring) and
``__main__`` (``mindstream serve memory``).
"""
