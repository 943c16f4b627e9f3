"""`mindstream demo --once`, the command `make demo` runs, tells its whole story.

Every service runs as its own process on free ports, with a unique topic
prefix and database, so this runs beside other tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from mindstream.dev.process import free_port
from mindstream.dev.services import SERVICES, port_env_var
from tests.infra import Infra, delete_topics_with_prefix

pytestmark = pytest.mark.integration




def test_demo_once_tells_the_whole_story(infra: Infra) -> None:
    prefix = f"demo{uuid.uuid4().hex[:8]}."
    try:
        run_demo(infra, prefix)
    finally:
        asyncio.run(delete_topics_with_prefix(infra.kafka_bootstrap, prefix))


def run_demo(infra: Infra, prefix: str) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "MONGODB_URI": infra.mongo_uri,
        "MINDSTREAM_TOPIC_PREFIX": prefix,
        "MINDSTREAM_DB": f"demo_{uuid.uuid4().hex[:8]}",
        "MINDSTREAM_CONTROL_PLANE_HTTP_PORT": str(free_port()),
        **{port_env_var(name): str(free_port()) for name in SERVICES},
    }
    for var in ("MINDSTREAM_MODEL_BASE_URL", "OPENAI_API_KEY"):
        env.pop(var, None)  # the scripted model, as on a fresh machine
    result = subprocess.run([sys.executable, "-m", "mindstream.cli.main", "demo", "--once"],
                            env=env, capture_output=True, text=True, timeout=420, check=False)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "using the scripted model" in out
    for shown in ("For 6 guests buy 720 g", "memory learned: 'vegetarian'",
                  "Since you are vegetarian", "needs approval", "chain intact",
                  "step drafting.2/review: APPROVED", "workflow.completed",
                  "the story ran end to end", "dashboard"):
        assert shown in out, shown
    assert out.count("operator approves http_fetch") == 1
