"""``dev up``, ``dev down``, ``dev status``: the two components as one stack.

``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URI`` point everything at an
existing cluster instead; then the matching local component is not started.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from mindstream.dev import kafka, mongo, process
from mindstream.dev.errors import DevError
from mindstream.dev.settings import DevSettings


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    mongo_uri: str
    backend: str  # says which infrastructure tests and services run against


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # "running", "down" (started but dead or not answering), "stopped", "external"
    detail: str


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def endpoints(settings: DevSettings) -> Endpoints:
    kafka_ext = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo_ext = os.environ.get("MONGODB_URI")
    kafka_desc = (f"external Kafka at {kafka_ext}" if kafka_ext
                  else f"local Apache Kafka {settings.kafka_version} (KRaft)")
    mongo_desc = (f"external MongoDB at {mongo_ext}" if mongo_ext
                  else ("local mongod" if mongo.flavour() == "mongod"
                        else f"local FerretDB {settings.ferretdb_version} on SQLite"))
    return Endpoints(kafka_ext or settings.kafka_bootstrap, mongo_ext or settings.mongo_uri,
                     f"{kafka_desc}; {mongo_desc}")


def up(settings: DevSettings | None = None) -> Endpoints:
    """Start whatever is not already running, and wait until it answers.

    A second ``up`` while running is a no-op that says so.
    """
    settings = settings or DevSettings()
    ends = endpoints(settings)
    if os.environ.get("MONGODB_URI"):
        _say(f"mongo: using MONGODB_URI ({ends.mongo_uri}); not starting a local server")
    else:
        _up_one(settings, mongo.NAME, lambda: mongo.install(settings), lambda: mongo.start(settings),
                lambda: mongo.ready(settings.mongo_uri), ends.mongo_uri)
        if mongo.flavour() == "mongod":
            mongo.init_replica_set(settings.mongo_uri)
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        _say(f"kafka: using KAFKA_BOOTSTRAP_SERVERS ({ends.kafka_bootstrap}); not starting a local broker")
    else:
        _up_one(settings, kafka.NAME, lambda: kafka.install(settings), lambda: kafka.start(settings),
                lambda: kafka.ready(settings.kafka_bootstrap), ends.kafka_bootstrap)
    return ends


def _up_one(settings: DevSettings, name: str, install: Callable[[], None],
            start: Callable[[], process.Tracked], ready: Callable[[], bool], address: str) -> None:
    tracked = process.read(settings.run_dir, name)
    if process.alive(tracked):
        if ready():
            _say(f"{name}: already running at {address} (pid {tracked.pid if tracked else '?'})")
            return
        raise DevError(f"{name}: process is running but not answering at {address}; "
                       "run `mindstream dev down` and try again")
    install()
    _say(f"{name}: starting at {address} ...")
    started = start()
    ok = process.wait_for(lambda: ready() or not process.alive(started), settings.start_timeout_s, 0.5)
    if not ok or not process.alive(started):
        process.stop(settings.run_dir, name)
        raise DevError(f"{name} did not come up within {settings.start_timeout_s:.0f}s; "
                       f"last lines of {started.log}:\n{process.log_tail(started.log)}")
    _say(f"{name}: ready at {address} (pid {started.pid}, log {started.log})")


def down(settings: DevSettings | None = None) -> list[str]:
    """Stop exactly the processes ``up`` started (by recorded pid); return their names."""
    settings = settings or DevSettings()
    stopped = []
    for name in (kafka.NAME, mongo.NAME):
        if process.stop(settings.run_dir, name):
            stopped.append(name)
    return stopped


def status(settings: DevSettings | None = None) -> list[ComponentStatus]:
    settings = settings or DevSettings()
    result = []
    checks = [
        (kafka.NAME, "KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap,
         lambda: kafka.ready(settings.kafka_bootstrap)),
        (mongo.NAME, "MONGODB_URI", settings.mongo_uri, lambda: mongo.ready(settings.mongo_uri)),
    ]
    for name, env, address, ready in checks:
        if os.environ.get(env):
            result.append(ComponentStatus(name, "external", f"{env}={os.environ[env]}"))
            continue
        tracked = process.read(settings.run_dir, name)
        if tracked is None:
            result.append(ComponentStatus(name, "stopped", "not started by `mindstream dev up`"))
        elif not process.alive(tracked):
            result.append(ComponentStatus(name, "down", f"pid {tracked.pid} has exited; see {tracked.log}"))
        elif not ready():
            result.append(ComponentStatus(name, "down", f"pid {tracked.pid} is not answering at {address}"))
        else:
            result.append(ComponentStatus(name, "running", f"{address} (pid {tracked.pid})"))
    return result


__all__ = ["ComponentStatus", "DevError", "Endpoints", "down", "endpoints", "status", "up"]
