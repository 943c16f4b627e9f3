"""The mindstream services, one package each, all of the same shape."""
