"""mindstream's user-facing side: the CLI, the Python client, and local dev infrastructure."""
