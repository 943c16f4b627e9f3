"""A folder the bench puts on its service processes' ``PYTHONPATH`` (see ``sitecustomize``)."""
