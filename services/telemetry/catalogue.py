"""Which service modules declare metrics, and which metric names a rule or dashboard uses.

Services declare their metrics at import (``declare_metric``), so the full
catalogue exists only once every declaring module is imported.
:func:`service_metric_modules` finds them by reading the sources under
``services/`` (no guessing, no importing of everything), and
:func:`load_service_metrics` imports them; checks of dashboards and alert
rules then compare against :func:`shared.observability.metrics.exported_metric_names`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from pathlib import Path

import services

__all__ = [
    "load_service_metrics",
    "recording_rule_refs",
    "referenced_metric_names",
    "service_metric_modules",
]

_DECLARES = re.compile(r"(=|^)\s*declare_metric\(", re.MULTILINE)
_METRIC = re.compile(r"(?<![A-Za-z0-9_:.-])mindstream_[a-z0-9_]*[a-z0-9](?![A-Za-z0-9_:])")
_RECORDED = re.compile(r"(?<![A-Za-z0-9_])mindstream:[a-z0-9_:]*[a-z0-9_]")


def service_metric_modules(root: Path | None = None) -> list[str]:
    """Dotted names of modules under ``services/`` that declare metrics at import
    (a ``declare_metric(`` call at the start of a statement or assignment)."""
    base = root or Path(next(iter(services.__path__)))
    found = []
    for path in sorted(base.rglob("*.py")):
        if _DECLARES.search(path.read_text(encoding="utf-8")):
            relative = path.relative_to(base.parent).with_suffix("")
            found.append(".".join(relative.parts))
    return found


def load_service_metrics() -> list[str]:
    """Import every declaring module, so the catalogue is complete; returns their names."""
    modules = service_metric_modules()
    for name in modules:
        importlib.import_module(name)
    return modules


def referenced_metric_names(texts: Iterable[str]) -> set[str]:
    """Metric names (``mindstream_...``) used in PromQL or anywhere in ``texts``."""
    return {match for text in texts for match in _METRIC.findall(text)}


def recording_rule_refs(texts: Iterable[str]) -> set[str]:
    """Recording-rule names (``mindstream:...``) used in ``texts``."""
    return {match for text in texts for match in _RECORDED.findall(text)}
