"""Counts the database commands of a bench's service process, by command and collection.

The bench puts this folder on ``PYTHONPATH`` of the service processes it starts
and sets ``MINDSTREAM_BENCH_DB_PROFILE`` to a folder; Python imports
``sitecustomize`` at start-up, which registers a PyMongo command listener
before any client exists. Twice a second the counts are written to
``<folder>/<instance>.json``. Without the variable nothing happens. The
services' code is not touched; the overhead is one Python call per command.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

_FOLDER = os.environ.get("MINDSTREAM_BENCH_DB_PROFILE")


def _install(folder: Path, instance: str, every_s: float) -> None:
    from pymongo import monitoring

    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    class _Counter(monitoring.CommandListener):
        def started(self, event: Any) -> None:
            target = event.command.get(event.command_name)
            key = f"{event.command_name}:{target if isinstance(target, str) else ''}"
            with lock:
                counts[key] += 1

        def succeeded(self, event: Any) -> None:
            return None

        def failed(self, event: Any) -> None:
            return None

    monitoring.register(_Counter())
    out = folder / f"{instance}.json"

    def dump() -> None:
        while True:
            time.sleep(every_s)
            with lock:
                snapshot = dict(counts)
            tmp = out.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps(snapshot))
                tmp.replace(out)
            except OSError:
                pass

    threading.Thread(target=dump, name="bench-db-profile", daemon=True).start()


if _FOLDER:
    try:
        _install(Path(_FOLDER), os.environ.get("MINDSTREAM_BENCH_INSTANCE", str(os.getpid())),
                 float(os.environ.get("MINDSTREAM_BENCH_DB_PROFILE_EVERY_S", "0.5")))
    except Exception:  # noqa: S110 - profiling must never stop a service from starting
        pass
