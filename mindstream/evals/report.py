"""An eval report as text for the terminal, as JSON, and as records for the control plane."""

from __future__ import annotations

from typing import Any, TextIO

from mindstream.evals.runner import EvalReport
from schemas.agents import split_agent_ref
from services.control_plane.evals import EvalCaseRecord, EvalRunRecord

__all__ = ["as_json", "print_report", "records_of"]


def records_of(report: EvalReport) -> tuple[EvalRunRecord, list[EvalCaseRecord]]:
    v = report.verdict
    run = EvalRunRecord(
        eval_id=report.eval_id, suite=report.suite.suite, agent=report.agent_id,
        agent_ref=report.agent, agent_version=report.agent_version, at=report.started_at,
        finished_at=report.finished_at, cases=v.cases, passed=v.passed, pass_rate=v.pass_rate,
        p95_latency_ms=v.p95_latency_ms, tokens=v.tokens, ok=v.ok, threshold_failures=v.failures)
    cases = []
    for r in report.results:
        obs = r.observation
        version = split_agent_ref(obs.agent_ref)[1] if obs.agent_ref else None
        cases.append(EvalCaseRecord(
            case=r.case_id, run_id=obs.run_id, passed=r.passed, status=obs.status,
            agent_version=version if version is not None else report.agent_version,
            reasons=r.reasons, notes=r.notes, latency_ms=round(obs.latency_ms, 1),
            tokens=obs.tokens))
    return run, cases


def as_json(report: EvalReport) -> dict[str, Any]:
    v = report.verdict
    return {
        "eval_id": report.eval_id, "suite": report.suite.suite, "agent": report.agent,
        "agent_version": report.agent_version, "ok": v.ok, "cases": v.cases, "passed": v.passed,
        "pass_rate": v.pass_rate, "p95_latency_ms": v.p95_latency_ms, "tokens": v.tokens,
        "thresholds": [{"name": t.name, "ok": t.ok, "detail": t.detail} for t in v.thresholds],
        "results": [{"case": r.case_id, "run_id": r.observation.run_id, "passed": r.passed,
                     "status": r.observation.status, "agent": r.observation.agent_ref,
                     "latency_ms": round(r.observation.latency_ms, 1),
                     "tokens": r.observation.tokens, "reasons": r.reasons, "notes": r.notes}
                    for r in report.results],
        "notes": report.notes,
        "started_at": report.started_at.isoformat(), "finished_at": report.finished_at.isoformat(),
    }


def print_report(report: EvalReport, out: TextIO) -> None:
    v = report.verdict
    versions = report.versions()
    answered = ", ".join(f"@{ver}×{n}" for ver, n in sorted(versions.items())) or "-"
    out.write(f"\nsuite {report.suite.suite}  agent {report.agent} (answered by {answered})  "
              f"eval {report.eval_id}\n")
    failing = report.failing
    if failing:
        out.write(f"\nfailing cases ({len(failing)}):\n")
        for r in failing:
            out.write(f"  ✗ {r.case_id}  run {r.observation.run_id}\n")
            for reason in r.reasons:
                out.write(f"      - {reason}\n")
    skipped = [r for r in report.results if r.notes]
    if skipped:
        out.write(f"\n{len(skipped)} case(s) with skipped checks "
                  f"(e.g. {skipped[0].case_id}: {skipped[0].notes[0]})\n")
    p95 = "-" if v.p95_latency_ms is None else f"{v.p95_latency_ms:.0f} ms"
    out.write(f"\npassed {v.passed}/{v.cases} ({v.pass_rate:.0%})  p95 latency {p95}  "
              f"tokens {v.tokens}\n")
    for t in v.thresholds:
        out.write(f"  {'✓' if t.ok else '✗'} {t.name}: {t.detail}\n")
    for note in report.notes:
        out.write(f"note: {note}\n")
    out.write(("PASS" if v.ok else "FAIL") + "\n")
