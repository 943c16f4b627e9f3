"""A worked example of evolving a contract with an upcaster.

``RunRequestedV2`` replaces the plain ``input`` string with structured
content parts. Messages already on the topic (schema_version 1) are read
through the registered upcaster, so handlers only see the new shape. The
compatibility check shows why this change still needs a new topic version
for producers: a v1 reader cannot read v2 bodies (``input`` was removed).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import pytest
from pydantic import Field

from schemas.base import ContractModel, Message, Text
from schemas.codec import ContractError, decode, encode
from schemas.compat import check_compatible
from schemas.envelope import Envelope
from schemas.runs import RunRequested
from schemas.upcast import register_upcaster, registered_upcasters, upcast
from tests.unit.schemas.samples import T0, sample_request

pytestmark = pytest.mark.unit


class TextPart(ContractModel):
    type: Literal["text"] = Field(default="text", description="Kind of part.")
    text: Text = Field(description="The text.")


class RunRequestedV2(Message):
    ce_type: ClassVar[str] = "mindstream.runs.requested"
    schema_version: ClassVar[int] = 2

    run_id: str = Field(description="Run id.")
    session_id: str = Field(description="Session id.")
    content: list[TextPart] = Field(min_length=1, description="Structured input.")


def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    out = {k: payload[k] for k in ("run_id", "session_id")}
    out["content"] = [{"type": "text", "text": payload["input"]}]
    return out


register_upcaster(RunRequestedV2, 1, _v1_to_v2)


def _envelope(version: int) -> Envelope:
    return Envelope(
        id="m", type="mindstream.runs.requested", source="t", time=T0, schema_version=version
    )


def test_v1_payload_is_upcast_to_v2() -> None:
    decoded = decode(RunRequestedV2, encode(sample_request()), _envelope(1))
    assert decoded.content == [TextPart(text="Where is my order?")]
    assert decoded.run_id == "run-1"


def test_v2_payload_is_read_directly() -> None:
    body = encode(RunRequestedV2(run_id="r", session_id="s", content=[TextPart(text="hi")]))
    assert decode(RunRequestedV2, body, _envelope(2)).content[0].text == "hi"


def test_upcaster_failures_become_contract_errors() -> None:
    with pytest.raises(ContractError, match="upcasting from schema_version 1 failed: KeyError"):
        decode(RunRequestedV2, b'{"run_id": "r"}', _envelope(1))
    with pytest.raises(ContractError, match="invalid JSON"):
        decode(RunRequestedV2, b"{", _envelope(1))
    with pytest.raises(ContractError, match="must be a JSON object"):
        decode(RunRequestedV2, b"[]", _envelope(1))


def test_upcast_does_not_mutate_input() -> None:
    payload = json.loads(encode(sample_request()))
    before = json.dumps(payload)
    upcast(RunRequestedV2, payload, 1)
    assert json.dumps(payload) == before


def test_registry_rules() -> None:
    assert registered_upcasters(RunRequestedV2) == {1: _v1_to_v2}
    register_upcaster(RunRequestedV2, 1, _v1_to_v2)  # same function again: harmless
    with pytest.raises(ValueError, match="already exists"):
        register_upcaster(RunRequestedV2, 1, lambda p: p)
    with pytest.raises(ValueError, match="cannot upcast from version 2"):
        register_upcaster(RunRequestedV2, 2, lambda p: p)
    with pytest.raises(ValueError, match="cannot upcast from version 1"):
        register_upcaster(RunRequested, 1, lambda p: p)


def test_missing_upcaster_is_a_contract_error() -> None:
    class Orphan(RunRequestedV2):
        schema_version: ClassVar[int] = 3

    with pytest.raises(ContractError, match="no upcaster from schema_version 1 to 2"):
        decode(Orphan, encode(sample_request()), _envelope(1))


def test_this_change_is_breaking_for_the_v1_topic() -> None:
    problems = check_compatible(
        RunRequested.model_json_schema(), RunRequestedV2.model_json_schema()
    )
    assert "input: field removed" in problems
    assert "content: new required field" in problems
