"""The messages a worker process sends its supervisor (gearctl/supervision.py),
without processes: every kind through encode() and decode() and back, fed whole
and byte by byte, lines torn by a full pipe, and garbage, which decodes to None
and never raises in the parent. Then the counts the live table sums, and the
exit code a worker's stop reason becomes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearctl.child import exit_code
from gearctl.connection import ServerAddress
from gearctl.plugins import JobFunction
from gearctl.supervision import (
    ChildExit,
    ChildReport,
    ChildState,
    FunctionReport,
    LogLine,
    Message,
    MessageReader,
    Refusal,
    decode,
    encode,
)
from gearctl.worker import ExitReason, Worker

REPORT = ChildReport(ChildState.BUSY, "resize H:web1:42", done=12, failed=3, memory_mb=41.5, functions={
    "resize": FunctionReport(done=10, failed=3, running=1, last_error="ValueError: bad image",
                             last_error_at=1764583200.25),
    "thumbnails\tv2": FunctionReport(done=2),  # a tab, as gearmand allows in a name
})

MESSAGES: list[Message] = [
    REPORT,
    ChildReport(ChildState.STARTING),
    ChildReport(ChildState.IDLE, functions={"a": FunctionReport()}),
    ChildReport(ChildState.STOPPING, done=1, memory_mb=0.0),
    LogLine("2026-12-01 09:30:00 INFO resize H:web1:42 done in 0.01s"),
    LogLine(""),
    LogLine("Zoë \u2603 \udcff"),  # a plugin's print() of bytes decoded with surrogateescape
    Refusal("/srv/app/gearman/a.py: cannot import: SyntaxError: invalid syntax (it would stop serving resize)"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_as_one_line(message: Message) -> None:
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == message
    assert decode(line.rstrip(b"\n")) == message


def test_a_reader_gives_the_same_messages_fed_whole_or_byte_by_byte() -> None:
    stream = b"".join(encode(m) for m in MESSAGES)
    whole = MessageReader().feed(stream)
    reader = MessageReader()
    by_byte = [m for i in range(len(stream)) for m in reader.feed(stream[i:i + 1])]
    assert whole == by_byte == MESSAGES


def test_a_reader_keeps_a_partial_line_until_its_end_comes() -> None:
    reader = MessageReader()
    line = encode(REPORT)
    assert reader.feed(line[:-10]) == []
    assert reader.feed(line[-10:] + encode(LogLine("x"))[:5]) == [REPORT]
    assert reader.feed(encode(LogLine("x"))[5:]) == [LogLine("x")]


def test_a_torn_line_is_skipped_and_the_next_message_still_read() -> None:
    # A full pipe took only part of a write; the child starts its next message on
    # a new line (child.StatusReporter), so the torn part is a line of its own.
    line = encode(REPORT)
    after = encode(LogLine("after"))
    for cut in range(len(line) - 1):  # every proper prefix of the JSON, down to nothing
        assert MessageReader().feed(line[:cut] + b"\n" + after) == [LogLine("after")], cut


def report_record(**changes: object) -> bytes:
    record = json.loads(encode(REPORT))
    record.update(changes)
    return json.dumps(record).encode()


def function_record(**changes: object) -> bytes:
    record = json.loads(encode(REPORT))
    record["functions"]["resize"].update(changes)
    return json.dumps(record).encode()


GARBAGE = [
    b"", b"\n", b"not json", b"{", b"null", b"42", b'"a string"', b"[1, 2, 3]", b"{}",
    b"\xff\xfe\x00garbage", b"[" * 100_000, b'{"kind": "report"}', b'{"kind": "unknown", "text": "x"}',
    b'{"kind": ["log"], "text": "x"}',
    b'{"log": "the old, untagged form"}', b'{"state": "idle", "done": 1}',
    b'{"kind": "log"}', b'{"kind": "log", "text": 3}', b'{"kind": "refused", "reason": null}',
    report_record(state="sleeping"), report_record(state=None), report_record(done="3"), report_record(done=True),
    report_record(done=-1), report_record(failed=1.5), report_record(memory_mb="41"), report_record(memory_mb=False),
    report_record(current=None), report_record(functions=[]), report_record(functions={"f": [1, 0, 0, "", 0.0]}),
    function_record(done="1"), function_record(running=-2), function_record(last_error=None),
    function_record(last_error_at="now"),
]


@pytest.mark.parametrize("line", GARBAGE, ids=lambda b: repr(b[:40]))
def test_garbage_decodes_to_nothing(line: bytes) -> None:
    assert decode(line) is None
    assert MessageReader().feed(line + b"\n" + encode(LogLine("next"))) == [LogLine("next")]


def test_a_report_missing_a_field_decodes_to_nothing() -> None:
    record = json.loads(encode(REPORT))
    for key in record:
        partial = {k: v for k, v in record.items() if k != key}
        assert decode(json.dumps(partial).encode()) is None, key
    for key in record["functions"]["resize"]:
        partial = json.loads(encode(REPORT))
        del partial["functions"]["resize"][key]
        assert decode(json.dumps(partial).encode()) is None, key


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_message_or_to_nothing(line: bytes) -> None:
    assert decode(line) is None or isinstance(decode(line), (ChildReport, LogLine, Refusal))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["kind", "state", "current", "done", "failed", "memory_mb", "functions",
                                        "text", "reason"]), json_values),
       st.sampled_from(["report", "log", "refused"]))
def test_any_json_object_decodes_to_a_message_or_to_nothing(record: dict, kind: str) -> None:
    record.setdefault("kind", kind)
    line = json.dumps(record).encode()
    assert decode(line) is None or isinstance(decode(line), (ChildReport, LogLine, Refusal))


def test_merged_adds_the_counts_and_keeps_the_later_error() -> None:
    early = FunctionReport(done=1, failed=1, running=1, last_error="early", last_error_at=100.0)
    late = FunctionReport(done=2, failed=1, running=0, last_error="late", last_error_at=200.0)
    none = FunctionReport(done=5)
    assert early.merged(late) == late.merged(early) == FunctionReport(3, 2, 1, "late", 200.0)
    assert late.merged(none) == none.merged(late) == FunctionReport(7, 1, 0, "late", 200.0)
    assert FunctionReport().merged(FunctionReport()) == FunctionReport()


def test_the_exit_codes_the_supervisor_reads() -> None:
    # The values are part of how a child and its parent of the same release talk;
    # 2 and 3 are gearctl's own usage and no-server codes, which --burst passes on.
    assert {code.name: int(code) for code in ChildExit} == {
        "RECYCLED": 0, "USAGE": 2, "NO_SERVER": 3, "CRASHED": 70, "BURST_DONE": 75, "PLUGINS_BROKEN": 78}
    assert [state.value for state in ChildState] == ["starting", "idle", "busy", "stopping"]


@pytest.mark.parametrize(("reason", "code"), [
    (ExitReason.BURST_DONE, ChildExit.BURST_DONE), (ExitReason.NO_SERVER, ChildExit.NO_SERVER),
    (ExitReason.RECYCLE, ChildExit.RECYCLED), (ExitReason.STOPPED, ChildExit.RECYCLED),
    (ExitReason.PARENT_GONE, ChildExit.RECYCLED), (None, ChildExit.RECYCLED),
])
def test_why_the_worker_stopped_decides_the_processs_exit_code(reason: ExitReason | None, code: ChildExit) -> None:
    assert exit_code(reason) is code


def test_a_workers_first_stop_reason_is_the_one_it_keeps() -> None:
    worker = Worker([JobFunction("f", function=lambda job: b"")], [ServerAddress("127.0.0.1", 1)])
    assert worker.exit_reason is None and not worker.stopping
    worker.stop(ExitReason.RECYCLE, "ran 5 jobs (--max-jobs)")
    worker.stop()  # the SIGTERM that follows does not rewrite why
    assert (worker.exit_reason, worker.exit_detail, worker.stopping) == (
        ExitReason.RECYCLE, "ran 5 jobs (--max-jobs)", True)
