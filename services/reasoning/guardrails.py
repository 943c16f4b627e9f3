"""Guardrail hooks: prompt-injection and PII checks before the model, PII after it.

Pure functions over text, so they are cheap to run on every message and easy to test
table-driven. Prompt-injection detection is heuristic: each pattern has a weight, the
weights of distinct patterns that fire add up to a score, and only a score at or
above the policy's threshold counts as an injection. Single weak signals ("you are
now", "system prompt") stay below the default threshold, so ordinary sentences pass;
the strong ones ("ignore all previous instructions") block on their own. Base64 blobs
are decoded and scored too, because hiding instructions in encodings is a known trick.

PII detectors favour precision: card numbers must pass Luhn, IBANs the mod-97 check,
phone numbers need 10-15 digits (8 with a ``+`` prefix), SSNs need their dashes.
Findings carry kind and span only, never the matched text, so logging a verdict does
not leak what it found.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Finding",
    "GuardrailAction",
    "GuardrailPolicy",
    "GuardrailVerdict",
    "PiiKind",
    "check_input",
    "check_output",
    "detect_pii",
    "injection_score",
    "luhn_valid",
]


class GuardrailAction(enum.StrEnum):
    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"


class PiiKind(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CREDIT_CARD = "credit_card"
    IBAN = "iban"
    SSN = "ssn"
    IPV4 = "ipv4"


class GuardrailPolicy(BaseModel):
    """What an agent's guardrails do. ``flag`` lets the text through but reports findings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    injection: Literal["off", "flag", "block"] = "block"
    injection_threshold: float = Field(default=1.0, gt=0)
    pii: Literal["off", "redact", "block"] = "redact"  # on input
    output_pii: Literal["off", "redact", "block"] = "redact"
    pii_kinds: frozenset[PiiKind] = frozenset(PiiKind)


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str  # "pii.email", "injection.ignore_previous", ...
    span: tuple[int, int]
    score: float = 0.0


class GuardrailVerdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: GuardrailAction
    text: str  # the text to use: redacted when action is redact
    findings: list[Finding] = Field(default_factory=list)
    reason: str | None = None


# --- prompt injection -----------------------------------------------------------------------

_W = r"[\s\W]*"  # words may be separated by spaces or punctuation ("ignore...previous")
_INJECTION: list[tuple[str, float, re.Pattern[str]]] = [
    (
        "ignore_previous",
        1.0,
        re.compile(
            rf"\b(ignore|disregard|forget|override|skip)\b{_W}(?:\w+{_W}){{0,3}}?"
            rf"(previous|prior|above|earlier|preceding|initial|original|your){_W}"
            rf"(instructions?|prompts?|rules|directions|guidelines|context|messages?)\b",
            re.I,
        ),
    ),
    (
        "reveal_system_prompt",
        1.0,
        re.compile(
            rf"\b(reveal|show|print|repeat|output|leak|display|tell\s+me|give\s+me)\b{_W}"
            rf"(?:\w+{_W}){{0,3}}?(system|hidden|initial|secret|original){_W}"
            rf"(prompt|instructions?|message)\b",
            re.I,
        ),
    ),
    ("system_prompt_mention", 0.4, re.compile(r"\bsystem\s+prompt\b", re.I)),
    (
        "developer_mode",
        0.6,
        re.compile(r"\b(developer|dan|god|debug|sudo)\s+mode\b|\bdo\s+anything\s+now\b", re.I),
    ),
    ("jailbreak_word", 0.5, re.compile(r"\bjail\s?break(ing|ed)?\b", re.I)),
    ("you_are_now", 0.5, re.compile(r"\byou\s+are\s+now\b|\bfrom\s+now\s+on,?\s+you\b", re.I)),
    (
        "no_restrictions",
        0.8,
        re.compile(
            r"\b(without|no|free\s+of|bypass|ignore)\s+(any\s+|all\s+|your\s+)?"
            r"(restrictions|filters|limitations|guardrails|safety\s+guidelines|content\s+polic(y|ies)|rules)\b",
            re.I,
        ),
    ),
    (
        "roleplay_persona",
        0.6,
        re.compile(
            r"\b(pretend|act|behave|roleplay|role-play)\s+(that\s+)?(you\s+are|to\s+be|as)\s+"
            r"(an?\s+)?(unrestricted|unfiltered|uncensored|evil|rogue|jailbroken|different\s+ai)\b",
            re.I,
        ),
    ),
    ("stay_in_character", 0.4, re.compile(r"\bstay\s+in\s+character\b", re.I)),
    (
        "fake_role_marker",
        0.8,
        re.compile(
            r"(^|\n)\s*(\[/?(system|inst)\]|<\|?(im_start|system)\|?>|###\s*(system|instruction)|"
            r"system\s*:)",
            re.I,
        ),
    ),
    ("new_instructions", 0.6, re.compile(r"\bnew\s+(instructions|rules|directives)\s*:", re.I)),
]
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")


def _decoded_base64(blob: str) -> str | None:
    try:
        raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    printable = sum(ch.isprintable() or ch.isspace() for ch in text)
    return text if text and printable / len(text) > 0.95 else None


def _injection_findings(text: str, depth: int = 0) -> list[Finding]:
    findings: list[Finding] = []
    for name, weight, pattern in _INJECTION:
        m = pattern.search(text)
        if m is not None:
            findings.append(Finding(kind=f"injection.{name}", span=m.span(), score=weight))
    if depth == 0:
        for m in _BASE64.finditer(text):
            decoded = _decoded_base64(m.group())
            inner = _injection_findings(decoded, depth + 1) if decoded else []
            if inner:
                # Encoding instructions is itself a signal of intent, hence the bonus.
                score = sum(f.score for f in inner) + 0.5
                findings.append(
                    Finding(kind="injection.base64_payload", span=m.span(), score=score)
                )
    return findings


def injection_score(text: str) -> tuple[float, list[Finding]]:
    """The summed weight of distinct injection signals in ``text``, and the signals."""
    findings = _injection_findings(text)
    stripped = _ZERO_WIDTH.sub("", text)
    if stripped != text:
        # Zero-width characters split trigger words; spans then refer to the whole text.
        seen = {f.kind for f in findings}
        findings += [
            Finding(kind=f.kind, span=(0, len(text)), score=f.score)
            for f in _injection_findings(stripped)
            if f.kind not in seen
        ]
    return round(sum(f.score for f in findings), 3), findings


# --- PII ------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum card numbers carry; random digit runs fail it 9 times in 10."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _digit_count(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _phone_ok(s: str) -> bool:
    n = _digit_count(s)
    return (8 if s.lstrip().startswith("+") else 10) <= n <= 15


_PII: list[tuple[PiiKind, re.Pattern[str], Callable[[str], bool]]] = [
    (
        PiiKind.EMAIL,
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
        lambda _s: True,
    ),
    (
        PiiKind.IBAN,
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
        _iban_valid,
    ),
    (
        PiiKind.CREDIT_CARD,
        re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
        lambda s: luhn_valid(re.sub(r"\D", "", s)),
    ),
    (
        PiiKind.SSN,
        re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
        lambda _s: True,
    ),
    (
        PiiKind.IPV4,
        re.compile(
            r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
            r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])"
        ),
        lambda _s: True,
    ),
    (
        PiiKind.PHONE,
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}"
            r"(?:[\s.-]?\d{2,4}){1,5}(?!\w)"
        ),
        _phone_ok,
    ),
]


def _overlaps(span: tuple[int, int], taken: Iterable[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


def detect_pii(text: str, kinds: Iterable[PiiKind] = tuple(PiiKind)) -> list[Finding]:
    """PII findings ordered by position; a span claimed by one kind is not claimed again."""
    wanted = set(kinds)
    taken: list[tuple[int, int]] = []
    findings: list[Finding] = []
    for kind, pattern, valid in _PII:
        for m in pattern.finditer(text):
            span = m.span()
            if _overlaps(span, taken):
                continue
            if kind is PiiKind.IBAN:
                taken.append(span)  # IBAN-shaped is not a phone number, checksum or not
            if not valid(m.group()):
                continue
            taken.append(span)  # claimed even if this kind is not wanted: it is not a phone
            if kind in wanted:
                findings.append(Finding(kind=f"pii.{kind}", span=span))
    return sorted(findings, key=lambda f: f.span)


def _redact(text: str, findings: list[Finding]) -> str:
    out = text
    for f in sorted(findings, key=lambda f: f.span[0], reverse=True):
        label = f.kind.removeprefix("pii.").upper()
        out = out[: f.span[0]] + f"[REDACTED_{label}]" + out[f.span[1] :]
    return out


def _pii_verdict(
    text: str, mode: str, kinds: Iterable[PiiKind], prior: list[Finding], where: str
) -> GuardrailVerdict:
    pii = [] if mode == "off" else detect_pii(text, kinds)
    findings = prior + pii
    if not pii:
        return GuardrailVerdict(action=GuardrailAction.ALLOW, text=text, findings=findings)
    kinds_found = ", ".join(sorted({f.kind.removeprefix("pii.") for f in pii}))
    if mode == "block":
        return GuardrailVerdict(
            action=GuardrailAction.BLOCK,
            text=text,
            findings=findings,
            reason=f"{where} contains PII ({kinds_found})",
        )
    return GuardrailVerdict(
        action=GuardrailAction.REDACT,
        text=_redact(text, pii),
        findings=findings,
        reason=f"{where} PII redacted ({kinds_found})",
    )


def check_input(text: str, policy: GuardrailPolicy) -> GuardrailVerdict:
    """Decide what to do with user input before it reaches the model."""
    injection: list[Finding] = []
    if policy.injection != "off":
        score, injection = injection_score(text)
        if score >= policy.injection_threshold and policy.injection == "block":
            signals = ", ".join(f.kind.removeprefix("injection.") for f in injection)
            return GuardrailVerdict(
                action=GuardrailAction.BLOCK,
                text=text,
                findings=injection,
                reason=f"prompt injection suspected (score {score:g} >= "
                f"{policy.injection_threshold:g}: {signals})",
            )
    return _pii_verdict(text, policy.pii, policy.pii_kinds, injection, "input")


def check_output(text: str, policy: GuardrailPolicy) -> GuardrailVerdict:
    """Decide what to do with model output before it leaves the service."""
    return _pii_verdict(text, policy.output_pii, policy.pii_kinds, [], "output")
