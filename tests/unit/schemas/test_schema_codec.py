from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.base import Message
from schemas.codec import MAX_BODY_BYTES, ContractError, decode, encode
from schemas.envelope import Envelope
from schemas.runs import RunEvent, RunRequested
from schemas.topics import TOPICS
from tests.unit.schemas.samples import T0, sample_messages, sample_request

pytestmark = pytest.mark.unit


def _envelope_for(message_type: type[Message], version: int | None = None) -> Envelope:
    return Envelope(
        id="msg-1",
        type=message_type.ce_type,
        source="test",
        time=T0,
        schema_version=version or message_type.schema_version,
    )


def test_every_sample_round_trips() -> None:
    for message in sample_messages():
        body = encode(message)
        assert body == message.model_dump_json().encode()  # compact, no indentation
        envelope = Envelope.new(message, source="test")
        assert decode(type(message), body, envelope) == message


def _request_dict() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(sample_request()))
    return data


def _decode_request(body: bytes, version: int = 1) -> RunRequested:
    return decode(RunRequested, body, _envelope_for(RunRequested, version))


def test_invalid_json_is_readable() -> None:
    with pytest.raises(ContractError, match=r"^mindstream\.runs\.requested: invalid JSON"):
        _decode_request(b'{"run_id": ')


def test_missing_field_is_named() -> None:
    data = _request_dict()
    del data["session_id"]
    with pytest.raises(ContractError, match="session_id: Field required"):
        _decode_request(json.dumps(data).encode())


def test_huge_string_is_refused_without_echoing_it() -> None:
    data = _request_dict() | {"input": "secret " * 10_000}
    with pytest.raises(ContractError, match="input: String should have at most 32000") as caught:
        _decode_request(json.dumps(data).encode())
    assert "secret" not in str(caught.value)


def test_body_above_limit_is_refused() -> None:
    with pytest.raises(ContractError, match="above"):
        _decode_request(b" " * (MAX_BODY_BYTES + 1))


def test_newer_schema_version_is_refused() -> None:
    with pytest.raises(ContractError, match="schema_version 2 is newer than 1"):
        _decode_request(encode(sample_request()), version=2)


def test_wrong_type_is_refused() -> None:
    with pytest.raises(ContractError, match=r"ce_type is 'mindstream\.runs\.requested'"):
        decode(RunEvent, encode(sample_request()), _envelope_for(RunRequested))


def test_non_object_and_many_errors() -> None:
    with pytest.raises(ContractError, match="body: Input should be an object"):
        _decode_request(b"[1, 2]")
    with pytest.raises(ContractError, match="more errors"):
        _decode_request(b'{"priority": "urgent"}')


def test_encode_refuses_oversized_message() -> None:
    data = sample_messages()[3].model_dump() | {"output": "x" * 200_000}
    big = type(sample_messages()[3]).model_validate(
        data | {"messages": [{"role": "user", "content": "y" * 200_000}] * 6}
    )
    with pytest.raises(ContractError, match="encoded body"):
        encode(big)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec_index=st.integers(0, len(TOPICS) - 1),
    body=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(["run_id", "session_id", "input", "kind", "ok", "id", "x"]),
            json_values,
            max_size=6,
        ).map(lambda d: json.dumps(d).encode()),
    ),
    version=st.integers(1, 3),
)
def test_decode_raises_only_contract_error(spec_index: int, body: bytes, version: int) -> None:
    message_type = TOPICS[spec_index].message
    with contextlib.suppress(ContractError):
        decode(message_type, body, _envelope_for(message_type, version))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mutated_valid_messages_raise_only_contract_error(data: st.DataObject) -> None:
    message = data.draw(st.sampled_from(sample_messages()))
    payload = json.loads(encode(message))
    field = data.draw(st.sampled_from(sorted(payload)))
    payload[field] = data.draw(json_values)
    try:
        decoded = decode(
            type(message), json.dumps(payload).encode(), Envelope.new(message, source="t")
        )
    except ContractError:
        return
    assert isinstance(decoded, type(message))
