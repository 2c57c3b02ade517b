"""The dead-letter envelope and the attempt unique keys, without a server."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearctl.deadletter import (
    MAX_UNIQUE,
    Attempt,
    Envelope,
    attempt_number,
    attempt_unique,
    dead_letter_function,
    dead_unique,
    is_dead_letter_function,
    original_function,
    parse_attempt,
)
from gearctl.errors import PayloadError

ENVELOPE = Envelope(function="notify", unique="job-7", workload=b"\xff{}", attempts=4, error="boom",
                    traceback="Traceback ...", host="web1", first_failure=1764590400.5, last_failure=1764594000.0,
                    handle="H:web1:42", state="exception")


def test_dead_letter_names() -> None:
    assert dead_letter_function("notify") == "notify.dead"
    assert dead_letter_function("notify", ".dlq") == "notify.dlq"
    assert is_dead_letter_function("notify.dead") and not is_dead_letter_function("notify")
    assert not is_dead_letter_function(".dead")
    assert original_function("notify.dead") == "notify" and original_function("notify") == "notify"


def test_an_original_key_is_attempt_one() -> None:
    assert parse_attempt("job-7") == Attempt("job-7", 1, 0)
    assert parse_attempt("") == Attempt("", 1, 0)
    assert parse_attempt("x~a1.5") == Attempt("x~a1.5", 1, 0)  # attempt 1 never has a suffix


def test_attempt_keys_round_trip() -> None:
    key = attempt_unique("job-7", 2, 1764590400)
    assert key == "job-7~a2.1764590400"
    assert parse_attempt(key) == Attempt("job-7", 2, 1764590400)
    assert parse_attempt(attempt_unique("job-7~a2.1", 3, 9)) == Attempt("job-7~a2.1", 3, 9)


@pytest.mark.parametrize("key", ["job-7", "", "x~a1.5", "job-7~a2.1764590400", "job-7~a2.1~a13.9", "a~a", "~a7.1",
                                 "u" * 40 + "~a99.1764590400", "job~a2.x"])
def test_attempt_number_is_parse_attempts_number(key: str) -> None:
    assert attempt_number(key) == parse_attempt(key).number


def test_a_long_key_is_hashed_to_fit_gearmand() -> None:
    key = attempt_unique("u" * 64, 12, 1764590400)
    assert len(key.encode()) <= MAX_UNIQUE
    assert parse_attempt(key).number == 12
    assert attempt_unique("u" * 64, 12, 1764590400) == key  # the same for every worker
    assert attempt_unique("v" * 64, 12, 1764590400) != key


def test_attempt_one_has_no_key_of_its_own() -> None:
    with pytest.raises(ValueError):
        attempt_unique("job-7", 1, 0)


@given(st.text(max_size=80), st.integers(2, 10_000), st.integers(0, 10**11))
def test_any_key_names_its_attempt(original: str, number: int, first: int) -> None:
    key = attempt_unique(original, number, first)
    assert len(key.encode("utf-8", "surrogateescape")) <= MAX_UNIQUE
    parsed = parse_attempt(key)
    assert (parsed.number, parsed.first_failure) == (number, first)


def test_the_envelope_round_trips_with_bytes() -> None:
    data = ENVELOPE.encode()
    doc = json.loads(data)
    assert doc["gearctl_dead_letter"] == 1 and doc["workload"] == "/3t9"
    assert Envelope.decode(data) == ENVELOPE


def test_the_envelope_carries_no_paths_or_environment() -> None:
    assert set(json.loads(ENVELOPE.encode())) == {
        "gearctl_dead_letter", "function", "unique", "workload", "attempts", "error", "traceback", "host",
        "first_failure", "last_failure", "handle", "state"}


def test_the_envelope_as_json_keeps_text_and_base64s_bytes() -> None:
    assert ENVELOPE.as_json()["workload_base64"] == "/3t9" and "workload" not in ENVELOPE.as_json()
    text = Envelope(**{**ENVELOPE.__dict__, "workload": b'{"a": 1}'})
    assert text.as_json()["workload"] == '{"a": 1}'


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"function": "f"}', b'{"gearctl_dead_letter": 2}',
                                  b'{"gearctl_dead_letter": 1, "function": "f"}',
                                  b'{"gearctl_dead_letter": 1, "function": "f", "unique": "", "workload": "!!",'
                                  b' "attempts": 1, "error": "", "first_failure": 0, "last_failure": 0}'])
def test_what_is_not_an_envelope_is_a_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError, match="envelope"):
        Envelope.decode(data)


def test_a_dead_job_key_differs_each_time_it_dies() -> None:
    assert dead_unique("job-7", 1764590400.123) == "job-7~dead.1764590400123"
    assert dead_unique("job-7", 1764590400.123) != dead_unique("job-7", 1764590401.0)
    assert len(dead_unique("u" * 64, 1764590400.5).encode()) <= MAX_UNIQUE
