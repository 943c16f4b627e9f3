"""The MongoDB-wire server: a real ``mongod`` if one is on PATH, else FerretDB on SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from mindstream.dev import process
from mindstream.dev.errors import DevError
from mindstream.dev.settings import LOCAL_DEPLOY, DevSettings

NAME = "mongo"


def flavour() -> str:
    return "mongod" if shutil.which("mongod") else "ferretdb"


def install(settings: DevSettings) -> None:
    """Build our FerretDB launcher (pinned in deploy/local/ferretdb/go.mod) once."""
    if flavour() == "mongod" or settings.ferretdb_bin.exists():
        return
    go = shutil.which("go")
    if go is None:
        raise DevError("Go is not installed: it builds FerretDB, the MongoDB-wire server "
                       "(apt-get install golang), or put a real mongod on PATH")
    print(f"building FerretDB {settings.ferretdb_version} from the Go module proxy "
          "(first time only, about two minutes)...", file=sys.stderr, flush=True)
    log = settings.log_dir / "ferretdb-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GOMODCACHE": str(settings.cache_dir / "gomod"),
        "GOCACHE": str(settings.cache_dir / "gobuild"),
        "GOFLAGS": "-mod=readonly",
        "CGO_ENABLED": "0",
    }
    tmp = settings.ferretdb_bin.with_suffix(".partial")
    with log.open("w") as out:
        result = subprocess.run(
            [go, "build", "-trimpath", "-o", str(tmp), "."],
            cwd=LOCAL_DEPLOY / "ferretdb", env=env, stdout=out, stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise DevError(f"building FerretDB failed; see {log}:\n" + process.log_tail(log, 8))
    tmp.rename(settings.ferretdb_bin)


def start(settings: DevSettings) -> process.Tracked:
    if process.port_open(settings.host, settings.mongo_port):
        raise DevError(f"port {settings.mongo_port} is already in use by another process; "
                       "stop it or set MINDSTREAM_DEV_MONGO_PORT")
    data = settings.data_dir / flavour()
    data.mkdir(parents=True, exist_ok=True)
    log = settings.log_dir / "mongo.log"
    if flavour() == "mongod":
        mongod = shutil.which("mongod")
        assert mongod is not None
        argv = [mongod, "--bind_ip", settings.host, "--port", str(settings.mongo_port),
                "--dbpath", str(data), "--replSet", "rs0"]
    else:
        argv = [str(settings.ferretdb_bin), f"--listen-addr={settings.host}:{settings.mongo_port}",
                f"--sqlite-url=file:{data}/", "--log-level=warn"]
    return process.spawn(NAME, argv, run_dir=settings.run_dir, log=log, cwd=settings.cache_dir)


def ready(uri: str, timeout_s: float = 2.0) -> bool:
    """True when the server answers ``ping``."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000))
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def init_replica_set(uri: str) -> None:
    """A real mongod runs as a replica set of one, for retryable writes and majority concern."""
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    client: MongoClient[dict[str, object]] = MongoClient(uri, directConnection=True)
    try:
        client.admin.command("replSetInitiate")
    except OperationFailure as exc:
        if "already initialized" not in str(exc):
            raise
    finally:
        client.close()
