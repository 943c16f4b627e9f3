"""Tools that ship with mindstream; each module exposes ``TOOLS`` for :func:`discover`."""

BUILTIN_MODULES = [
    "services.tools.builtins.calculator",
    "services.tools.builtins.clock",
    "services.tools.builtins.http_fetch",
    "services.tools.builtins.transform",
]

__all__ = ["BUILTIN_MODULES"]
