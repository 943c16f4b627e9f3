"""The dashboard in headless Chromium: sign in with a token, watch a run appear and
complete (run events published as reasoning would), open its timeline; a screenshot
goes to test-artifacts/dashboard.png. Then a workflow run drawn as its graph, one node
per step coloured by state, approved from its Approve button while it waits, followed until
it ends (test-artifacts/dashboard-workflow.png); and a workflow started from the Workflows tab.

Needs ``chromium`` and ``chromium-driver`` (Debian packages) and the ``selenium``
Python package; skipped, saying so, when they are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.runs import RunCompleted, RunEvent, RunEventKind, RunStatus
from schemas.topics import RUNS_COMPLETED, RUNS_EVENTS, WORKFLOWS, WORKFLOWS_EVENTS
from schemas.workflows import StepType, WorkflowDefinition, WorkflowEvent, WorkflowEventKind
from shared.settings import KafkaSettings, MongoSettings
from tests.support.control_plane import (
    BOOTSTRAP,
    by_action,
    running_control_plane,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard.png"
RUN = "r-dash"
WORKFLOW_RUN = "wr-dash"
WORKFLOW_ARTIFACT = ARTIFACT.with_name("dashboard-workflow.png")
needs_chromium = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                    reason="needs chromium and chromium-driver (apt-get install)")


@contextlib.contextmanager
def signed_in(base_url: str) -> Iterator[tuple[Any, Any]]:
    """(driver, wait) of a headless Chromium signed in to the dashboard with the bootstrap token."""
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
    # Generous: on a loaded 2-core machine the view can trail the events by seconds.
    wait = WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,))
    try:
        driver.get(base_url)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=token]").is_displayed(),
                   "the sign-in form")
        driver.find_element(By.CSS_SELECTOR, "[data-testid=token]").send_keys(BOOTSTRAP)
        driver.find_element(By.CSS_SELECTOR, "[data-testid=login]").click()
        yield driver, wait
    finally:
        driver.quit()


def drive(base_url: str, run_listed: Any, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """In a worker thread (selenium blocks); tells the test loop when the run is listed."""
    from selenium.webdriver.common.by import By

    with signed_in(base_url) as (driver, wait):
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-run="{RUN}"]'),
                   f"the row of {RUN}")
        loop.call_soon_threadsafe(run_listed.set)
        wait.until(lambda d: d.find_elements(
            By.CSS_SELECTOR, f'tr[data-run="{RUN}"][data-status="completed"]'),
            f"{RUN} shown completed")
        wait.until(lambda d: d.execute_script(
            f'document.querySelector(\'tr[data-run="{RUN}"]\').click(); return true;'),
            "opening the run")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline rect[data-step=tool]"),
                   "the tool step on the timeline")
        steps = driver.execute_script(  # one call: the page redraws the timeline every second
            "return [...document.querySelectorAll('#timeline rect')].map(r => r.dataset.step);")
        title = driver.find_element(By.ID, "run-title").text
        ARTIFACT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACT))
        return {"steps": steps, "title": title,
                "kill": driver.find_element(By.CSS_SELECTOR, "[data-testid=kill-switch]").text}


async def _seen_or_failed(seen: asyncio.Event, browser: asyncio.Task[Any], what: str,
                          timeout_s: float = 150.0) -> None:
    """Wait until the browser thread signals ``seen``; if it fails first, its own error
    (which names the element it waited for) is the test's failure."""
    signalled = asyncio.create_task(seen.wait())
    await asyncio.wait({signalled, browser}, timeout=timeout_s,
                       return_when=asyncio.FIRST_COMPLETED)
    if seen.is_set():
        return
    signalled.cancel()
    if browser.done():
        browser.result()
    raise AssertionError(f"{what}: not within {timeout_s:g}s")


@needs_chromium
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
        await _seen_or_failed(listed, browser, "the run listed in the browser")

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
        seen = await asyncio.wait_for(browser, 200)
    assert seen["steps"] == ["model", "tool", "model"]
    assert RUN in seen["title"] and "completed" in seen["title"]
    assert seen["kill"] == "runs accepted"
    assert ARTIFACT.stat().st_size > 10_000


DASH_WORKFLOW = WorkflowDefinition.model_validate(yaml.safe_load("""
id: desk
steps:
  - {id: triage, type: router, agent: classifier, routes: {billing: pay, tech: fix}}
  - {id: pay, type: agent, agent: billing}
  - {id: fix, type: parallel, branches: [draft, sign-off], next: publish}
  - {id: draft, type: agent, agent: writer}
  - {id: sign-off, type: approval}
  - {id: publish, type: agent, agent: publisher}
version: 1
"""))
K = WorkflowEventKind
# (kind, ms, step, step type, extra): a run waiting for an approval, then its end.
WAITING = [
    (K.STARTED, 0, None, None, {}),
    (K.STEP_STARTED, 10, "triage", StepType.ROUTER, {"run_id": "wfs-t"}),
    (K.STEP_COMPLETED, 400, "triage", StepType.ROUTER, {"output": "tech", "data": {"next": "fix"}}),
    (K.STEP_STARTED, 410, "fix", StepType.PARALLEL, {}),
    (K.STEP_STARTED, 410, "draft", StepType.AGENT, {"run_id": "wfs-d"}),
    (K.STEP_STARTED, 410, "sign-off", StepType.APPROVAL, {}),
    (K.AWAITING_APPROVAL, 410, "sign-off", StepType.APPROVAL, {"data": {"message": "Ship?"}}),
    (K.STEP_RETRYING, 900, "draft", StepType.AGENT, {"run_id": "wfs-d", "reason": "timeout",
                                                     "data": {"next_attempt": 2}}),
]
ENDING = [
    (K.STEP_COMPLETED, 1500, "draft", StepType.AGENT, {"run_id": "wfs-d2", "attempt": 2,
                                                       "output": "text"}),
    (K.RESUMED, 2000, "sign-off", StepType.APPROVAL, {"data": {"approved_by": "user:op"}}),
    (K.STEP_COMPLETED, 2000, "sign-off", StepType.APPROVAL, {"output": "ok"}),
    (K.STEP_COMPLETED, 2000, "fix", StepType.PARALLEL, {"output": "{}"}),
    (K.STEP_STARTED, 2010, "publish", StepType.AGENT, {"run_id": "wfs-p"}),
    (K.STEP_FAILED, 2500, "publish", StepType.AGENT, {"run_id": "wfs-p", "reason": "refused"}),
    (K.FAILED, 2500, None, None, {"reason": "step 'publish' failed: refused"}),
]


def node_classes(driver: Any) -> dict[str, set[str]]:
    """Each drawn step's classes, read in one script call: the page redraws the graph
    every second, so elements found one call earlier may be gone."""
    drawn = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#workflow-graph g.node')]"
        ".map(g => [g.dataset.step, g.getAttribute('class') || '']));")
    return {step: set(classes.split()) for step, classes in drawn.items()}


def graph_parts(driver: Any) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(edges as (source, target), each step's label text), in one script call."""
    edges, labels = driver.execute_script(
        "const g = document.getElementById('workflow-graph');"
        "return [[...g.querySelectorAll('path.edge')].map(e => [e.dataset.source, e.dataset.target]),"
        " Object.fromEntries([...g.querySelectorAll('g.node')].map(n => [n.dataset.step,"
        " n.textContent]))];")
    return [tuple(e) for e in edges], labels


def _until_drawn(driver: Any, wait: Any, step: str, state: str) -> None:
    """Wait until the graph draws ``step`` in ``state``; if it never does, say what it
    drew instead (and what the API served the page last)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    selector = f'#workflow-graph g.node[data-step="{step}"].state-{state}'
    try:
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    except TimeoutException:
        drawn = {k: sorted(v) for k, v in node_classes(driver).items()}
        title = driver.find_element(By.ID, "wf-title").text
        raise AssertionError(f"{step} never drawn as {state}; drawn: {drawn}; title: {title!r}; "
                             f"page error: {driver.find_element(By.ID, 'error').text!r}"
                             ) from None


def drive_workflow(base_url: str, waiting_seen: Any, loop: asyncio.AbstractEventLoop,
                   ) -> dict[str, Any]:
    """Start a workflow from the form; open the waiting run, read its graph, approve it from
    its button, then read the graph again once it has failed."""
    from selenium.webdriver.common.by import By

    with signed_in(base_url) as (driver, wait):
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=nav-workflows]"
                                            ).is_displayed(), "the Workflows tab")
        driver.find_element(By.CSS_SELECTOR, "[data-testid=nav-workflows]").click()
        for field, text in (("wf-start-workflow", "desk"), ("wf-start-input", "from the form")):
            driver.find_element(By.ID, field).send_keys(text)
        driver.find_element(By.ID, "wf-start-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "wf-start-result").text,
                   "the start form's result")
        started = driver.find_element(By.ID, "wf-start-result").text
        # The page opens the run it has just started; only then open the other one, or
        # that late open replaces it.
        wait.until(lambda d: started.removeprefix("started ") in d.find_element(
            By.ID, "wf-title").text, "the started run opened")
        row = f'tr[data-workflow-run="{WORKFLOW_RUN}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row), f"the row of {WORKFLOW_RUN}")
        wait.until(lambda d: d.execute_script(
            f"document.querySelector('{row}').click(); return true;"), "opening the run")
        _until_drawn(driver, wait, "sign-off", "awaiting_approval")
        _until_drawn(driver, wait, "draft", "retrying")  # the last event before the approval
        waiting = node_classes(driver)
        approve = driver.find_element(By.CSS_SELECTOR, "[data-testid=workflow-approve]")
        wait.until(lambda d: approve.is_displayed(), "the Approve button")
        approve_label = approve.text
        approve.click()
        loop.call_soon_threadsafe(waiting_seen.set)
        _until_drawn(driver, wait, "publish", "failed")
        # The step's failure and the run's are two events: the buttons follow the run's.
        wait.until(lambda d: d.find_element(By.ID, "wf-detail").get_attribute("data-status")
                   == "failed", "the run shown failed")
        ended = node_classes(driver)
        buttons_after = [driver.find_element(By.CSS_SELECTOR, f"[data-testid=workflow-{b}]"
                                             ).is_displayed() for b in ("approve", "cancel")]
        edges, labels = graph_parts(driver)
        title = driver.find_element(By.ID, "wf-title").text
        WORKFLOW_ARTIFACT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(WORKFLOW_ARTIFACT))
        return {"waiting": waiting, "ended": ended, "edges": edges, "labels": labels,
                "title": title, "started": started, "approve_label": approve_label,
                "buttons_after": buttons_after}


@needs_chromium
async def test_dashboard_draws_a_workflow_run_as_its_graph_and_follows_it(
    topics: KafkaSettings, mongo_settings: MongoSettings,
) -> None:
    pytest.importorskip("selenium")
    async with running_control_plane(topics, mongo_settings) as cp:
        publisher, t0 = cp.plane.runtime.publisher, datetime.now(UTC)
        await publisher.publish(WORKFLOWS, DASH_WORKFLOW, message_id="wf-desk@1")
        await eventually(lambda: cp.db.workflow_definitions_view.find_one({"_id": "desk@1"}),
                         what="definition desk@1 seen")  # the form's start needs it

        async def publish(events: list[tuple[Any, ...]], first_seq: int) -> None:
            for seq, (kind, ms, step, step_type, extra) in enumerate(events, first_seq):
                await publisher.publish(WORKFLOWS_EVENTS, WorkflowEvent(
                    workflow_run_id=WORKFLOW_RUN, workflow_id="desk@1", seq=seq, kind=kind,
                    at=t0 + timedelta(milliseconds=ms), step=step, step_type=step_type,
                    **extra), message_id=f"{WORKFLOW_RUN}-{seq}")

        await publish(WAITING, 0)
        waiting_seen = asyncio.Event()
        browser = asyncio.create_task(asyncio.to_thread(
            drive_workflow, f"http://127.0.0.1:{cp.plane.server.port}/", waiting_seen,
            asyncio.get_running_loop()))
        await _seen_or_failed(waiting_seen, browser, "the waiting run approved in the browser")
        (approved,) = await cp.wait_audit(1, by_action("workflow.approve",
                                                       target_id=WORKFLOW_RUN))
        await publish(ENDING, len(WAITING))
        seen = await asyncio.wait_for(browser, 200)
        started_id = seen["started"].removeprefix("started ")
        from_form = await cp.db.workflow_runs_view.find_one({"_id": started_id})
        (submitted,) = await cp.audit_records(by_action("workflow.submit"))

    assert (approved["event"]["outcome"], approved["event"]["details"]["step"]) == (
        "success", "sign-off")
    assert seen["approve_label"] == "Approve sign-off"
    assert seen["buttons_after"] == [False, False]
    assert started_id.startswith("wr-") and from_form is not None
    assert (from_form["status"], from_form["input"], from_form["user_id"]) == (
        "requested", "from the form", "dashboard")
    assert (submitted["target_id"], submitted["event"]["outcome"]) == (started_id, "success")

    def states(classes: dict[str, set[str]]) -> dict[str, str]:
        found = {step: [c for c in cs if c.startswith("state-")] for step, cs in classes.items()}
        assert all(len(c) == 1 and "node" in classes[s] for s, c in found.items()), classes
        return {step: c[0].removeprefix("state-") for step, c in found.items()}

    assert states(seen["waiting"]) == {
        "triage": "completed", "pay": "skipped", "fix": "running", "draft": "retrying",
        "sign-off": "awaiting_approval", "publish": "pending"}
    assert states(seen["ended"]) == {
        "triage": "completed", "pay": "skipped", "fix": "completed", "draft": "completed",
        "sign-off": "completed", "publish": "failed"}
    assert sorted(seen["edges"]) == sorted([
        ("triage", "pay"), ("triage", "fix"), ("fix", "draft"), ("fix", "sign-off"),
        ("draft", "publish"), ("sign-off", "publish")])
    assert seen["labels"]["triage"].startswith("triage") and "390 ms" in seen["labels"]["triage"]
    assert "router" in seen["labels"]["triage"]
    assert WORKFLOW_RUN in seen["title"] and "failed" in seen["title"]
    assert WORKFLOW_ARTIFACT.stat().st_size > 10_000
