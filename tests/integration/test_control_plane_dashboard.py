"""The dashboard in headless Chromium: sign in with a token, watch a run appear and
complete (run events published as reasoning would), open its timeline; a screenshot
goes to test-artifacts/dashboard.png.

Needs ``chromium`` and ``chromium-driver`` (Debian packages) and the ``selenium``
Python package; skipped, saying so, when they are missing.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.runs import RunCompleted, RunEvent, RunEventKind, RunStatus
from schemas.topics import RUNS_COMPLETED, RUNS_EVENTS
from shared.settings import KafkaSettings, MongoSettings
from tests.support.control_plane import (
    BOOTSTRAP,
    running_control_plane,
)

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard.png"
RUN = "r-dash"


def drive(base_url: str, run_listed: Any, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """In a worker thread (selenium blocks); tells the test loop when the run is listed."""
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
    try:
        driver.get(base_url)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=token]").is_displayed())
        driver.find_element(By.CSS_SELECTOR, "[data-testid=token]").send_keys(BOOTSTRAP)
        driver.find_element(By.CSS_SELECTOR, "[data-testid=login]").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-run="{RUN}"]'))
        loop.call_soon_threadsafe(run_listed.set)
        wait.until(lambda d: d.find_elements(
            By.CSS_SELECTOR, f'tr[data-run="{RUN}"][data-status="completed"]'))
        wait.until(lambda d: d.execute_script(
            f'document.querySelector(\'tr[data-run="{RUN}"]\').click(); return true;'))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline rect[data-step=tool]"))
        steps = [e.get_attribute("data-step")
                 for e in driver.find_elements(By.CSS_SELECTOR, "#timeline rect")]
        title = driver.find_element(By.ID, "run-title").text
        ARTIFACT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACT))
        return {"steps": steps, "title": title,
                "kill": driver.find_element(By.CSS_SELECTOR, "[data-testid=kill-switch]").text}
    finally:
        driver.quit()


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs chromium and chromium-driver (apt-get install)")
async def test_dashboard_shows_a_run_complete_and_its_timeline(
    topics: KafkaSettings, mongo_settings: MongoSettings,
) -> None:
    pytest.importorskip("selenium")
    async with running_control_plane(topics, mongo_settings) as cp:
        admin = cp.auth()
        await cp.http.post("/api/v1/agents", headers=admin, json={
            "id": "helper", "instructions": "Be helpful.", "model": {"name": "scripted"}})
        submitted = await cp.http.post("/api/v1/runs", headers=admin, json={
            "agent_id": "helper", "input": "What is 6*7?", "user_id": "u1", "run_id": RUN,
            "session_id": "s-dash"})
        assert submitted.status_code == 202
        listed = asyncio.Event()
        browser = asyncio.create_task(asyncio.to_thread(
            drive, f"http://127.0.0.1:{cp.plane.server.port}/", listed,
            asyncio.get_running_loop()))
        await asyncio.wait_for(listed.wait(), 60)

        t0, publisher = datetime.now(UTC), cp.plane.runtime.publisher
        kinds = [(RunEventKind.RUN_STARTED, 0, {}),
                 (RunEventKind.MODEL_COMPLETED, 300, {}),
                 (RunEventKind.TOOL_REQUESTED, 310, {"tool": "calculator", "call_id": "c1"}),
                 (RunEventKind.TOOL_COMPLETED, 360, {"tool": "calculator", "call_id": "c1"}),
                 (RunEventKind.MODEL_COMPLETED, 700, {}),
                 (RunEventKind.RUN_COMPLETED, 710, {})]
        for seq, (kind, ms, extra) in enumerate(kinds):
            await publisher.publish(RUNS_EVENTS, RunEvent(
                run_id=RUN, session_id="s-dash", agent_id="helper@1", seq=seq, kind=kind,
                at=t0 + timedelta(milliseconds=ms), **extra), message_id=f"{RUN}-{seq}")
        await publisher.publish(RUNS_COMPLETED, RunCompleted(
            run_id=RUN, session_id="s-dash", agent_id="helper@1", user_id="u1",
            status=RunStatus.COMPLETED, output="42", completed_at=t0 + timedelta(seconds=1)))
        seen = await asyncio.wait_for(browser, 90)
    assert seen["steps"] == ["model", "tool", "model"]
    assert RUN in seen["title"] and "completed" in seen["title"]
    assert seen["kill"] == "runs accepted"
    assert ARTIFACT.stat().st_size > 10_000
