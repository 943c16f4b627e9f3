"""The memory service: session history, running summaries, user memories, knowledge.

Infrastructure-free core (pure logic, unit-tested without Kafka or MongoDB):
``tokens`` (estimates), ``window`` (history window, when to summarise),
``summarizer``, ``learning`` (facts, merge, relevance), ``chunking``,
``retrieval`` (BM25, vectors, RRF, hybrid) and ``context`` (assembly within
a budget). Kafka and MongoDB wiring goes in ``app.py`` and ``store.py`` (not yet written).
"""
