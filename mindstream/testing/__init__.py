"""Test doubles that speak real protocols (HTTP, Kafka), for tests and local demos."""
