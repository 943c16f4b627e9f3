"""`mindstream demo`: the whole system, locally, telling a short story end to end."""
