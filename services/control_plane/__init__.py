"""mindstream package."""
