"""Hypothesis on the parsers that read outside input: signed notes, checkpoints and
the configuration file. Each either returns a value or raises its one documented
error (VerificationError, ConfigurationError); nothing else escapes, and what a
parser accepts round-trips. (The SSE splitter's properties live beside its unit
tests in tests/unit/gateway/test_sse.py.)"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.audit.checkpoint import (
    Checkpoint,
    NoteSigner,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_note,
)
from appliance.config import load_settings
from appliance.errors import ConfigurationError, VerificationError

# No per-example deadline: the machine is shared and a slow example is not a failure.
NO_DEADLINE = settings(deadline=None)

SIGNER = NoteSigner.generate("appliance.example/log")
OTHER = NoteSigner.generate("appliance.example/log")
ORIGIN = "appliance.example/log"

note_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
line_ish = st.text(alphabet=string.printable + "—é\u2028", max_size=300)


@NO_DEADLINE
@given(note_text)
def test_parse_note_raises_only_verification_error(text: str) -> None:
    try:
        parse_note(text)
    except VerificationError:
        pass


@NO_DEADLINE
@given(line_ish)
def test_parse_checkpoint_raises_only_verification_error(text: str) -> None:
    try:
        parse_checkpoint(text)
    except VerificationError:
        pass


@NO_DEADLINE
@given(st.integers(min_value=0, max_value=2**63 - 1), st.binary(min_size=32, max_size=32))
def test_signed_checkpoint_round_trips(size: int, root: bytes) -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=size, root_hash=root)
    message = sign_checkpoint(checkpoint, SIGNER)
    assert verify_checkpoint(message, SIGNER.verifier(), origin=ORIGIN) == checkpoint
    with pytest.raises(VerificationError):
        verify_checkpoint(message, OTHER.verifier(), origin=ORIGIN)


@NO_DEADLINE
@given(st.integers(min_value=0, max_value=10**6), st.binary(min_size=32, max_size=32),
       st.integers(min_value=0), st.data())  # fmt: skip
def test_any_single_byte_change_to_a_signed_checkpoint_is_refused(
    size: int, root: bytes, _seed: int, data: st.DataObject
) -> None:
    message = sign_checkpoint(Checkpoint(origin=ORIGIN, size=size, root_hash=root), SIGNER)
    index = data.draw(st.integers(min_value=0, max_value=len(message) - 1))
    replacement = data.draw(st.sampled_from(string.ascii_letters + string.digits + "+/=\n "))
    mutated = message[:index] + replacement + message[index + 1 :]
    if mutated == message:
        return
    try:
        verified = verify_checkpoint(mutated, SIGNER.verifier(), origin=ORIGIN)
    except VerificationError:
        return
    # base64 padding bits aside, an accepted mutation must not change the statement
    assert verified == Checkpoint(origin=ORIGIN, size=size, root_hash=root)


@NO_DEADLINE
@given(st.text(alphabet=string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", ""),
               min_size=1, max_size=100))  # fmt: skip
def test_signed_note_round_trips_or_is_refused_on_signing(text: str) -> None:
    try:
        message = sign_note(text, SIGNER)
    except VerificationError:
        return  # text the format cannot carry is refused up front
    assert verify_note(message, SIGNER.verifier()) == text


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
sections = st.sampled_from(
    ["gateway", "database", "engine", "audit", "auth", "oidc", "policy", "limits", "data_dir",
     "port", "upstreams", "url", "host"]
)  # fmt: skip


@settings(
    max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(st.dictionaries(sections, yaml_values, max_size=4) | yaml_values)
def test_config_loading_raises_only_configuration_error(tmp_path: Path, data: object) -> None:
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_settings(path)
    except ConfigurationError:
        pass


@settings(
    max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(st.binary(max_size=200))
def test_config_bytes_raise_only_configuration_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "appliance.yaml"
    path.write_bytes(raw)
    try:
        load_settings(path)
    except ConfigurationError:
        pass
