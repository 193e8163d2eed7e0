"""Property-based: no input makes the verifier (or the SDK) fail with anything but a
clean rejection. Hypothesis generates bytes, JSON and mutations of real requests."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.sdk import PortalSigner, ResultRejected, verify_result
from wire import AgentKeys, Rejected, SecretPart, Status, make_result, sign_result
from wire.canonical import canonical_json
from wire.sealing import seal
from wire.signing import Domain, sign

from .conftest import NEW_PW, NOW, World

WORLD = World(PortalSigner.generate(), [AgentKeys.generate()])
REQUEST = WORLD.request(op="change")
REQUEST_DOC: dict[str, Any] = json.loads(REQUEST.to_bytes())
VERIFIER = WORLD.verifier()

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutated(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    """A copy of `doc` with the item at `path` deleted or replaced by `value`."""
    doc = copy.deepcopy(doc)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


PATHS = [p for p in _paths(REQUEST_DOC) if p]


def _resign(doc: dict[str, Any]) -> bytes:
    """Sign whatever the mutation left, so checks after the signature are reached."""
    if isinstance(doc, dict):
        payload = {"header": doc.get("header"), "sealed": doc.get("sealed")}
        # Not canonicalisable (e.g. a float): left unsigned, the verifier must still refuse it.
        with contextlib.suppress(ValueError):
            doc["sig"] = sign(WORLD.signer._key, Domain.REQUEST, payload).model_dump()
    return json.dumps(doc).encode()


def _must_be_clean(raw: bytes) -> None:
    try:
        verified = VERIFIER.verify(raw)
        verified.open()
    except Rejected as exc:
        assert exc.reason.value
        assert NEW_PW not in str(exc) and NEW_PW not in repr(exc)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(raw: bytes) -> None:
    _must_be_clean(raw)


@FUZZ
@given(json_values)
def test_random_json(value: Any) -> None:
    _must_be_clean(json.dumps(value).encode())


@FUZZ
@given(st.sampled_from(PATHS), json_values, st.booleans(), st.booleans())
def test_mutated_request(path: tuple[Any, ...], value: Any, delete: bool, resign: bool) -> None:
    doc = _mutated(REQUEST_DOC, path, value, delete)
    raw = _resign(doc) if resign else json.dumps(doc).encode()
    _must_be_clean(raw)


@FUZZ
@given(st.sampled_from(PATHS), st.sampled_from(["", "x", "\x00", "\ud800", "é" * 300]))
def test_wrong_strings(path: tuple[Any, ...], value: str) -> None:
    doc = copy.deepcopy(REQUEST_DOC)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    _must_be_clean(_resign(doc))


@FUZZ
@given(json_values)
def test_any_sealed_plaintext_is_a_clean_rejection(value: Any) -> None:
    """Even a validly signed and sealed request with a nonsense secret part."""
    header = REQUEST.header
    try:
        plaintext = canonical_json(value)
    except ValueError:
        plaintext = json.dumps(value).encode()
    sealed = seal(header, plaintext, [WORLD.agents[0].public()])
    doc = {"header": header.model_dump(mode="json"), "sealed": sealed}
    _must_be_clean(_resign(doc))


def test_well_formed_secret_part_still_opens() -> None:
    """Control for the test above: the same construction with a real secret opens."""
    secret = SecretPart.model_validate({"new_password": "a-Passw0rd", "old_password": "b-Passw0rd"})
    sealed = seal(REQUEST.header, secret.plaintext(), [WORLD.agents[0].public()])
    doc = {"header": REQUEST.header.model_dump(mode="json"), "sealed": sealed}
    VERIFIER.verify(_resign(doc)).open()


RESULT_RAW = sign_result(
    make_result(
        request_id=REQUEST.id,
        request_hash=REQUEST.request_hash,
        agent_id="agent-0",
        tenant="acme",
        status=Status.SUCCEEDED,
        received_at=NOW,
        completed_at=NOW,
    ),
    WORLD.agents[0],
)
RESULT_DOC = json.loads(RESULT_RAW)
RESULT_PATHS = [p for p in _paths(RESULT_DOC) if p]


@FUZZ
@given(st.sampled_from(RESULT_PATHS), json_values, st.booleans())
def test_mutated_result_in_sdk(path: tuple[Any, ...], value: Any, delete: bool) -> None:
    doc = _mutated(RESULT_DOC, path, value, delete)
    try:
        verify_result(
            json.dumps(doc).encode(),
            request=REQUEST,
            trusted_agents=[WORLD.agents[0].public("agent-0")],
        )
    except ResultRejected as exc:
        assert exc.reason
