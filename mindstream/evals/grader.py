"""Model-graded rubrics through any OpenAI-compatible endpoint.

The grader is asked for a JSON verdict ``{"pass": bool, "reason": str}`` at
temperature 0. A reply that is not such a verdict counts as a failed check with
the reply quoted, never as a pass: an eval must not go green because the grader
rambled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mindstream.evals.checks import Grade

__all__ = ["GRADER_INSTRUCTIONS", "OpenAIGrader", "parse_grade"]

GRADER_INSTRUCTIONS = (
    "You grade an AI assistant's answer against a rubric. Judge only what the rubric "
    'asks. Reply with one JSON object and nothing else: {"pass": true or false, '
    '"reason": "one short sentence"}.'
)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_grade(text: str) -> Grade:
    match = _OBJECT.search(text or "")
    if match is None:
        return Grade(False, f"grader reply is not a JSON verdict: {text[:200]!r}")
    try:
        doc: Any = json.loads(match.group(0))
    except json.JSONDecodeError:
        return Grade(False, f"grader reply is not a JSON verdict: {text[:200]!r}")
    verdict = doc.get("pass") if isinstance(doc, dict) else None
    if not isinstance(verdict, bool):
        return Grade(False, f"grader verdict has no boolean 'pass': {text[:200]!r}")
    return Grade(verdict, str(doc.get("reason") or ""))


@dataclass
class OpenAIGrader:
    base_url: str
    model: str
    api_key: str = "unused"
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        import openai

        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key,
                                          timeout=self.timeout_s, max_retries=2)

    async def __call__(self, rubric: str, user_input: str, answer: str) -> Grade:
        completions: Any = self._client.chat.completions
        reply = await completions.create(
            model=self.model, temperature=0,
            messages=[
                {"role": "system", "content": GRADER_INSTRUCTIONS},
                {"role": "user", "content": f"Rubric:\n{rubric}\n\nUser input:\n{user_input}\n\n"
                                            f"Assistant's answer:\n{answer}"},
            ],
        )
        return parse_grade(reply.choices[0].message.content or "")

    async def aclose(self) -> None:
        await self._client.close()
