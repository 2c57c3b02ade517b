"""What a terminal shows once it has applied the escape sequences: the live tables
redraw in place, and every line printed while one is drawn stays on the screen,
above it. (conftest.Terminal keeps the bytes; pyte plays them on a VT100 screen.)"""

from __future__ import annotations

import pyte
from conftest import Embedded, Terminal, table_cells


def screen_of(seen: bytes, columns: int = 120, rows: int = 60) -> list[str]:
    """The screen's non-empty lines after `seen` (a pty turns \\n into \\r\\n)."""
    screen = pyte.Screen(columns, rows)
    pyte.ByteStream(screen).feed(seen.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return [line.rstrip() for line in screen.display if line.strip()]


def _submitted(term: Terminal) -> str:
    rows = table_cells(term.frame("gearctl client f"))
    return rows[-1][0] if rows and rows[-1] and rows[-1][0].isdigit() else ""


def test_each_line_results_and_reports_stay_above_the_live_table(embedded: Embedded) -> None:
    # Each third line is not JSON: one report on stderr each; the others print a
    # handle on stdout. Both went out past the table's last line, so the table's
    # next redraw erased them and left pieces of the table behind. The input comes
    # in two halves, the second once the table has been redrawn with the first.
    lines = [b"not json %d\n" % i if i % 3 == 0 else b'{"n": %d}\n' % i for i in range(1, 13)]
    with Terminal(["client", "f", "-n", "-e", "json", "-s", embedded.address], stdout_too=True) as term:
        assert term.proc.stdin is not None
        term.proc.stdin.write(b"".join(lines[:6]))
        term.proc.stdin.flush()
        term.wait_for(lambda t: _submitted(t) == "4", what="the table redrawn after the first half")
        term.proc.stdin.write(b"".join(lines[6:]))
        term.proc.stdin.close()
        assert term.proc.wait(60) == 2  # invalid lines: exit 2
    shown = screen_of(term.seen)
    reports = [line.split(":")[1] for line in shown if line.startswith("gearctl: line ")]
    assert reports == [" line 3", " line 6", " line 9", " line 12"], "\n".join(shown)
    handles = [line for line in shown if line.startswith("H:")]
    assert len(handles) == 8 and len(set(handles)) == 8, "\n".join(shown)
    assert sum(line.startswith("gearctl client f") for line in shown) == 1, "\n".join(shown)  # redrawn in place
    assert shown[-1].startswith("gearctl: 8 submitted, 8 queued, 4 invalid"), "\n".join(shown)
    frame = term.frame("gearctl client f")  # in the summary's words: background jobs are queued
    header = next([c.strip() for c in line.split("┃")[1:-1]] for line in frame.splitlines() if "┃" in line)
    assert header == ["submitted", "queued", "failed", "jobs/s"] and table_cells(frame)[-1][:3] == ["8", "8", "4"]
