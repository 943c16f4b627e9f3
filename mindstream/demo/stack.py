"""Bring up the whole system locally for the demo: infrastructure, model, services.

Every service runs as its own process, started the one way services start
(``mindstream serve <name>``), exactly as on Kubernetes but on loopback.
When no model endpoint is configured, the scripted OpenAI-compatible model
server answers from ``script.yaml`` -- and the demo says so.
"""

from __future__ import annotations

import http.server
import os
import re
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindstream.dev import DevSettings, process, services
from mindstream.dev import up as dev_up
from mindstream.dev.errors import DevError

DEMO_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEMO_DIR.parents[1]
KNOWLEDGE_DIR = DEMO_DIR / "knowledge"
SCRIPT = DEMO_DIR / "script.yaml"
AGENTS_DIR = REPO_ROOT / "agents"
WORKFLOWS_DIR = REPO_ROOT / "workflows"


@dataclass
class DemoStack:
    settings: DevSettings
    env: dict[str, str]
    model_note: str
    running: list[services.ServiceProcess] = field(default_factory=list)
    model_proc: subprocess.Popen[str] | None = None
    notes_server: http.server.ThreadingHTTPServer | None = None

    @property
    def run_dir(self) -> Path:
        return self.settings.cache_dir / "dev" / "run"

    @property
    def api_url(self) -> str:
        port = self.env.get("MINDSTREAM_CONTROL_PLANE_HTTP_PORT") or os.environ.get(
            "MINDSTREAM_CONTROL_PLANE_HTTP_PORT", str(services.CONTROL_PLANE_API_PORT))
        return f"http://127.0.0.1:{port}"

    @property
    def token(self) -> str:
        return self.env["MINDSTREAM_CONTROL_PLANE_BOOTSTRAP_TOKEN"]

    @property
    def notes_url(self) -> str:
        assert self.notes_server is not None
        return f"http://127.0.0.1:{self.notes_server.server_address[1]}/release-notes.md"

    def stop(self) -> None:
        for service in reversed(self.running):
            services.stop(service, self.run_dir)
        self.running.clear()
        if self.model_proc is not None:
            self.model_proc.terminate()
            try:
                self.model_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.model_proc.kill()
            self.model_proc = None
        if self.notes_server is not None:
            self.notes_server.shutdown()
            self.notes_server = None


def say(text: str) -> None:
    print(text, flush=True)


def _start_scripted_model(settings: DevSettings) -> tuple[subprocess.Popen[str], str]:
    settings.log_dir.mkdir(parents=True, exist_ok=True)  # absent when Kafka and MongoDB are external
    log = (settings.log_dir / "scripted-model.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mindstream.testing.scripted_model", "--script", str(SCRIPT),
         "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        raise DevError(f"the scripted model server did not start; see {log.name}")
    return proc, match.group(1) + "/v1"


def _serve_notes() -> http.server.ThreadingHTTPServer:
    """A tiny local web page for the approval-gated fetch in the story."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(KNOWLEDGE_DIR), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="demo-notes").start()
    return server


def start(settings: DevSettings | None = None) -> DemoStack:
    settings = settings or DevSettings()
    say("① infrastructure")
    ends = dev_up(settings)
    say(f"   {ends.backend}")
    env: dict[str, str] = {
        "KAFKA_BOOTSTRAP_SERVERS": ends.kafka_bootstrap,
        "MONGODB_URI": ends.mongo_uri,
        # A fresh admin token per demo, printed for the dashboard; the server keeps only its hash.
        "MINDSTREAM_CONTROL_PLANE_BOOTSTRAP_TOKEN": f"ms_demo_{secrets.token_urlsafe(24)}",
        "MINDSTREAM_LOG_LEVEL": "WARNING",
    }
    stack = DemoStack(settings, env, model_note="")
    if os.environ.get("MINDSTREAM_MODEL_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
        stack.model_note = ("using the model endpoint from "
                            + ("MINDSTREAM_MODEL_BASE_URL" if os.environ.get("MINDSTREAM_MODEL_BASE_URL")
                               else "OPENAI_API_KEY (api.openai.com)"))
    else:
        stack.model_proc, base_url = _start_scripted_model(settings)
        env["MINDSTREAM_MODEL_BASE_URL"] = base_url
        env["OPENAI_API_KEY"] = "scripted"
        stack.model_note = (f"no model endpoint configured: using the scripted model at {base_url} "
                            "(answers from mindstream/demo/script.yaml; set MINDSTREAM_MODEL_BASE_URL "
                            "or OPENAI_API_KEY for a real model)")
    say(f"② model: {stack.model_note}")
    stack.notes_server = _serve_notes()
    env["MINDSTREAM_TOOLS_MODULE_CONFIG"] = (
        '{"services.tools.builtins.http_fetch": {"allowed_hosts": ["127.0.0.1"], '
        '"private_hosts": ["127.0.0.1"]}}')
    os.environ.update(env)  # the CLI steps below talk to the same infrastructure

    try:
        say("③ topics, agents, workflows and knowledge")
        _cli(["topics", "apply"])
        _cli(["agents", "apply", "-f", str(AGENTS_DIR)])
        _cli(["workflows", "apply", "-f", str(WORKFLOWS_DIR)])
        _cli(["knowledge", "add", *sorted(str(p) for p in KNOWLEDGE_DIR.glob("*.md"))])
        say("④ services, each its own process")
        for name in services.SERVICES:
            stack.running.append(services.start(name, env=env, run_dir=stack.run_dir,
                                                log_dir=settings.log_dir))
        services.wait_ready(stack.running, timeout_s=90)
    except BaseException:
        stack.stop()
        raise
    for service in stack.running:
        say(f"   {service.name:<14} ready  pid {service.tracked.pid:<7} {service.url}/metrics")
    return stack


def _cli(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "mindstream.cli.main", *argv],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DevError(f"`mindstream {' '.join(argv)}` failed: "
                       f"{(result.stderr or result.stdout).strip()}")
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    created = sum(1 for ln in lines if ln.startswith(("created", "published", "applied")))
    say(f"   mindstream {' '.join(argv[:2])}: {created or len(lines)} change(s)")


def wait_alive(stack: DemoStack) -> list[str]:
    """Names of services that died (the demo stops and shows their logs)."""
    return [s.instance for s in stack.running if not process.alive(s.tracked)]


