"""Kafka plumbing every service uses: one broker factory, one publisher, one
consumer pipeline, one topic admin. No service talks to Kafka another way."""
