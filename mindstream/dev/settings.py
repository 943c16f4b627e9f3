"""Where local infrastructure lives and which ports it takes: one settings source.

Versions are pinned in the build files that fetch each component (the Maven
pom for Kafka, go.mod for FerretDB), read from there, so there is one pin each.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DEPLOY = REPO_ROOT / "deploy" / "local"


class DevSettings(BaseSettings):
    """Local dev infrastructure settings (env prefix ``MINDSTREAM_DEV_``)."""

    model_config = SettingsConfigDict(env_prefix="MINDSTREAM_DEV_")

    cache_dir: Path = Field(default=REPO_ROOT / ".cache", description="downloads, data, logs, pids")
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    mongo_port: int = 27017
    kafka_heap: str = "768m"
    start_timeout_s: float = 90.0

    @property
    def kafka_version(self) -> str:
        pom = (LOCAL_DEPLOY / "kafka-pom.xml").read_text()
        match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
        if match is None:  # pragma: no cover - the pom is ours
            raise RuntimeError("kafka.version missing from deploy/local/kafka-pom.xml")
        return match.group(1)

    @property
    def ferretdb_version(self) -> str:
        gomod = (LOCAL_DEPLOY / "ferretdb" / "go.mod").read_text()
        match = re.search(r"github.com/FerretDB/FerretDB (v\S+)", gomod)
        if match is None:  # pragma: no cover - the go.mod is ours
            raise RuntimeError("FerretDB version missing from deploy/local/ferretdb/go.mod")
        return match.group(1)

    @property
    def run_dir(self) -> Path:
        return self.cache_dir / "dev" / "run"

    @property
    def log_dir(self) -> Path:
        return self.cache_dir / "dev" / "logs"

    @property
    def data_dir(self) -> Path:
        return self.cache_dir / "dev" / "data"

    @property
    def kafka_libs(self) -> Path:
        return self.cache_dir / "kafka" / self.kafka_version / "libs"

    @property
    def ferretdb_bin(self) -> Path:
        # Keyed by the launcher's own sources too, so a change to them rebuilds it.
        digest = hashlib.sha256()
        for source in sorted((LOCAL_DEPLOY / "ferretdb").iterdir()):
            if source.suffix in {".go", ".mod", ".sum"}:
                digest.update(source.name.encode() + b"\0" + source.read_bytes())
        name = f"mindstream-ferretdb-{self.ferretdb_version}-{digest.hexdigest()[:10]}"
        return self.cache_dir / "bin" / name

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://{self.host}:{self.mongo_port}"
