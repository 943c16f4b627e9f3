"""The control plane: hash-chained audit log, management API, tokens and dashboard.

It is the operators' door into the system. Everything it changes goes out as
messages (agent definitions, run requests, run commands) and is audited; what
it shows comes from its own views built from topics, never from another
service's collections.
"""
