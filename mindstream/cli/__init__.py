"""The ``mindstream`` command: one entry point for the whole project."""
