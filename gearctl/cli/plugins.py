"""The plugin commands that need no server: `functions` lists what the plugin
directories define, `run` runs one function in-process (the way to debug a
plugin)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Annotated

import typer

from .. import codecs, render
from ..errors import ExitCode, JobException, JobFailed, Timeout
from .app import (
    HELP_DECODE,
    HELP_ENCODING,
    DecodeChoice,
    EncodingChoice,
    app,
)
from .completion import complete_plugin_functions
from .helptext import examples
from .plugin_options import AllowInsecurePlugins, PluginDirs, load_registry
from .streams import Out, read_payload, write_decoded, write_stderr


@app.command("functions", epilog=examples("gearctl functions -p plugins",
                                          "gearctl functions -p plugins --json"))
def functions_command(
    plugin_dir: PluginDirs = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON document instead of a table.")] = False,
    allow_insecure_plugins: AllowInsecurePlugins = False,
) -> int:
    """List the job functions the plugin directories define. Exit 2 if a plugin has errors."""
    registry = load_registry(plugin_dir, allow_insecure=allow_insecure_plugins)
    rows = [{"name": f.name, "kind": f.kind, "where": f.where, "file": f.source, "line": f.line,
             "timeout": f.timeout, "encoding": f.encoding, "command": f.command, "processes": f.processes}
            for f in sorted(registry.functions.values(), key=lambda f: f.name)]
    for name, places in sorted(registry.conflicts.items()):
        sys.stderr.write(f"gearctl: plugin error: {name!r} is defined more than once: {' and '.join(places)}\n")
    if as_json:
        print(json.dumps({"functions": rows, "errors": registry.errors,
                          "conflicts": registry.conflicts}, indent=2))
    elif rows:
        render.print_table("job functions", ["name", "kind", "where", "timeout", "encoding"],
                           [[f.name, f.kind, f.where, f"{f.timeout:g}s" if f.timeout else "-", f.encoding]
                            for f in sorted(registry.functions.values(), key=lambda f: f.name)])
    else:
        sys.stderr.write("gearctl: no job functions found\n")
    return ExitCode.USAGE if registry.errors or registry.conflicts else ExitCode.OK


@app.command("run", no_args_is_help=True, epilog=examples(
    "gearctl run -p plugins reverse --data hello",
    "gearctl run -p plugins notifications_send_users payload.json --json"))
def run_command(
    function: Annotated[str, typer.Argument(help="Function to run.", show_default=False,
                                            autocompletion=complete_plugin_functions)],
    payload: Annotated[str | None, typer.Argument(
        metavar="[PAYLOAD]", help="File holding the workload, or - for stdin. None: an empty workload.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", metavar="TEXT", help="The workload, inline.")] = None,
    encoding: Annotated[EncodingChoice, typer.Option("--encoding", "-e", help=HELP_ENCODING)] = EncodingChoice.raw,
    plugin_dir: PluginDirs = None,
    decode: Annotated[DecodeChoice | None, typer.Option("--decode", help=HELP_DECODE)] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object with result, data, warnings, status.")] = False,
    allow_insecure_plugins: AllowInsecurePlugins = False,
) -> int:
    """Run one job function in-process, with no server: the way to debug a plugin."""
    from ..clientjob import result_fields
    from ..execution import WorkerJob, execute

    registry = load_registry(plugin_dir, allow_insecure=allow_insecure_plugins)
    fn = registry.select([function])[0]
    body = codecs.prepare_payload(read_payload(payload, data), encoding.value)
    out = Out()  # the real stdout, taken before the job's print()s are sent to stderr
    output = RunOutput(out, live=not as_json, data_to_stderr=decode is not None)
    job = WorkerJob(fn.name, "local:1", "", body, context=fn.context, encoding=fn.encoding, updates=output)
    with contextlib.redirect_stdout(sys.stderr):  # the job's print()s are not its result
        outcome = asyncio.run(execute(fn, job))
    record: dict[str, object] | None = None
    if as_json:
        fields = result_fields(outcome.result, output.chunks)
        record = {"function": fn.name, "status": outcome.state, "result": fields.pop("result"),
                  "error": outcome.message or None, **fields, "encoding": job.encoding, "warnings": output.warnings,
                  "progress": output.progress, "seconds": round(outcome.seconds, 6)}
    if decode is not None and outcome.state == "complete":
        write_decoded(out, record, outcome.result, decode.value)
    elif record is not None:
        out.line(json.dumps(record))
    elif outcome.state == "complete":
        out.write(output.end.seen(outcome.result) + output.end.missing())  # a terminal: the line ended
    if outcome.traceback and not as_json:
        sys.stderr.write(outcome.traceback)
    if outcome.state == "exception":
        raise JobException(f"{fn.name} raised: {outcome.message}")
    if outcome.state == "timeout":
        raise Timeout(f"{fn.name} {outcome.message}")
    if outcome.state == "failed":  # JobFailed: WORK_FAIL, exit 1, as `client --wait` says it
        raise JobFailed(f"{fn.name} failed: {outcome.message}")
    return ExitCode.OK


class RunOutput:
    """What a job under `gearctl run` sends as it runs (WORK_DATA, warnings, status):
    kept for --json, and with `live` shown as it comes, the data on stdout (on
    stderr with --decode, whose stdout is one JSON document), the rest on stderr.
    The WorkerJob reports to it (it is an execution.Updates)."""

    def __init__(self, out: Out, live: bool, data_to_stderr: bool = False) -> None:
        self.out = out
        self.live = live
        self.data_to_stderr = data_to_stderr
        self.chunks: list[bytes] = []
        self.warnings: list[str] = []
        self.progress: list[list[int]] = []
        self.end = render.LineEnd()  # what stdout shows last (WORK_DATA, then the result)

    def data(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        if self.live and self.data_to_stderr:
            write_stderr(chunk)
        elif self.live:
            self.out.write(self.end.seen(chunk))

    def warning(self, text: bytes) -> None:
        self.warnings.append(text.decode("utf-8", "replace"))
        if self.live:
            sys.stderr.write(f"warning: {self.warnings[-1]}\n")

    def status(self, numerator: int, denominator: int) -> None:
        self.progress.append([numerator, denominator])
        if self.live:
            sys.stderr.write(f"status: {numerator}/{denominator}\n")
