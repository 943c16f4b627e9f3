"""Message contracts: every Kafka message as a pydantic model, and the topic registry.

This package is the project's public API for anyone who publishes to or
consumes from mindstream's topics. Nothing here does I/O.
"""
