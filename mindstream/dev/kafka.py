"""Apache Kafka in KRaft mode, one node, from its Maven Central jars."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import uuid

from mindstream.dev import process
from mindstream.dev.errors import DevError
from mindstream.dev.settings import LOCAL_DEPLOY, DevSettings

NAME = "kafka"

# Size-capped logs: tests create and delete many topics, and state-change
# chatter alone would otherwise fill the disk.
LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise DevError("Java is not installed: Kafka needs Java 17+ "
                       "(apt-get install openjdk-17-jre-headless)")
    return java


def install(settings: DevSettings) -> None:
    """Resolve the broker's jars with Maven once; later starts reuse them."""
    libs = settings.kafka_libs
    if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevError("Maven is not installed: it fetches Kafka's jars (apt-get install maven)")
    print(f"resolving Apache Kafka {settings.kafka_version} jars from Maven Central "
          "(first time only, about a minute)...", file=sys.stderr, flush=True)
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    log = settings.log_dir / "kafka-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        result = subprocess.run(
            [mvn, "-B", "-f", str(LOCAL_DEPLOY / "kafka-pom.xml"),
             f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
             "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={tmp}"],
            stdout=out, stderr=subprocess.STDOUT, check=False,
        )
    if result.returncode != 0:
        raise DevError(f"downloading Kafka's jars with Maven failed; see {log}:\n"
                       + process.log_tail(log, 8))
    tmp.rename(libs)


def _properties(settings: DevSettings) -> str:
    h, p, c = settings.host, settings.kafka_port, settings.kafka_controller_port
    data = settings.data_dir / "kafka"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{h}:{c}",
        f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
        f"advertised.listeners=PLAINTEXT://{h}:{p}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=12",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # Tests create many short-lived consumer groups; start them without delay.
        "group.initial.rebalance.delay.ms=0",
        # Tests create and delete many topics: free deleted partitions' files quickly.
        "file.delete.delay.ms=1000",
        "auto.create.topics.enable=false",
        "",
    ])


def start(settings: DevSettings) -> process.Tracked:
    java = _java()
    for port in (settings.kafka_port, settings.kafka_controller_port):
        if process.port_open(settings.host, port):
            raise DevError(f"port {port} is already in use by another process; stop it or set "
                           "MINDSTREAM_DEV_KAFKA_PORT / MINDSTREAM_DEV_KAFKA_CONTROLLER_PORT")
    conf_dir = settings.cache_dir / "dev" / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    props = conf_dir / "kafka.properties"
    props.write_text(_properties(settings))
    log = settings.log_dir / "kafka.log"
    log4j = conf_dir / "kafka-log4j2.properties"
    log4j.write_text(LOG4J2.format(log=log))
    classpath = f"{settings.kafka_libs}/*"
    data = settings.data_dir / "kafka"
    if not (data / "meta.properties").exists():
        data.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [java, "-cp", classpath, f"-Dlog4j2.configurationFile={log4j}",
             "kafka.tools.StorageTool", "format", "-t", str(uuid.uuid4().hex[:22]),
             "-c", str(props)],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise DevError("formatting Kafka storage failed: "
                           + (result.stderr or result.stdout).strip().splitlines()[-1])
    return process.spawn(
        NAME,
        [java, f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}",
         "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
         f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
         "kafka.Kafka", str(props)],
        run_dir=settings.run_dir, log=settings.log_dir / "kafka.stdout.log",
        cwd=settings.cache_dir, max_open_files=True,
    )


def ready(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when the broker answers a metadata request (an open port is not enough)."""
    host, _, port = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    if not process.port_open(host or "127.0.0.1", int(port)):
        return False

    async def probe() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        # A probe's connection errors are expected while the broker starts.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
            await asyncio.wait_for(admin.describe_cluster(), timeout_s)
            return True
        except Exception:
            return False
        finally:
            try:
                await admin.close()
            except Exception:  # noqa: S110 - closing a half-started client may fail; nothing to do
                pass

    return asyncio.run(probe())
