"""gearctl.testing, the pytest plugin for users' job functions: a user's project
run with pytester (in this process, `-p gearctl.testing`, as from a checkout;
and in a subprocess through the pytest11 entry point as an install declares
it), and the fixtures and helpers used directly. No gearmand anywhere."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gearctl.errors import JobException, NoWorker, PayloadError, UsageError

if TYPE_CHECKING:
    from gearctl.testing import GearmanServer, RunningWorker

# gearctl.testing is loaded as a plugin here, not imported first (pytest could not
# rewrite its asserts then, and says so); the tests import it once it is loaded.
pytest_plugins = ["pytester", "gearctl.testing"]

ROOT = Path(__file__).resolve().parent.parent
LOAD = ("-p", "gearctl.testing")  # the in-process runs load the plugin by name

PLUGIN = '''
def shout(job):
    return {"text": job.data["text"].upper()}

def explode(job):
    raise ValueError("boom: bad payload " + str(job.data["n"]))

def gearman_functions():
    return [{"function_name": "shout", "function": shout},
            {"function_name": "explode", "function": explode}]
'''


def user_project(pytester: pytest.Pytester, tests: str) -> None:
    """A user's project: a plugin directory `gearman/` and a test file."""
    (pytester.path / "gearman").mkdir()
    (pytester.path / "gearman" / "app.py").write_text(PLUGIN)
    pytester.makepyfile(test_user=tests)


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def plugin_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gearctl-testing")]


def test_the_fixtures_serve_a_plugin_directory_and_stop_after_the_test(pytester: pytest.Pytester) -> None:
    user_project(pytester, '''
        from pathlib import Path

        def test_shout(gearman_server, gearctl_worker):
            Path("port").write_text(str(gearman_server.port))
            worker = gearctl_worker(plugin_dir="gearman")
            assert gearman_server.address == f"127.0.0.1:{gearman_server.port}"
            assert gearman_server.host == "127.0.0.1"
            assert gearman_server.status()["shout"].workers == 1
            assert gearman_server.run_job("shout", {"text": "hi"}) == {"text": "HI"}
            assert worker.stats.functions["shout"].done == 1
            assert sorted(worker.functions) == ["explode", "shout"]

        def test_functions(gearman_server, gearctl_worker):
            def echo(job):
                return job.workload()
            gearctl_worker(functions=[echo])
            assert gearman_server.run_job("echo", b"abc", encoding="raw") == b"abc"
    ''')
    result = pytester.runpytest(*LOAD)
    result.assert_outcomes(passed=2)
    port = int((pytester.path / "port").read_text())
    assert port_closed(port)
    assert plugin_threads() == []


def test_a_failing_job_fails_the_users_test_with_its_message(pytester: pytest.Pytester) -> None:
    user_project(pytester, '''
        def test_explode(gearman_server, gearctl_worker):
            gearctl_worker(plugin_dir="gearman")
            assert gearman_server.run_job("explode", {"n": 42}) == {}
    ''')
    result = pytester.runpytest(*LOAD)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*JobException*boom: bad payload 42*"])


def test_a_broken_plugin_file_is_an_error_naming_it(pytester: pytest.Pytester) -> None:
    user_project(pytester, '''
        from pathlib import Path

        def test_broken(gearman_server, gearctl_worker):
            Path("gearman", "broken.py").write_text("import not_a_module_anywhere\\n")
            gearctl_worker(plugin_dir="gearman")
    ''')
    result = pytester.runpytest(*LOAD)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*UsageError: plugin errors: *broken.py: cannot import*not_a_module_anywhere*"])


def test_the_server_starts_and_stops_fast_enough_to_be_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user='''
        import pytest

        @pytest.mark.parametrize("n", range(20))
        def test_one(gearman_server, n):
            assert gearman_server.port
    ''')
    reprec = pytester.inline_run(*LOAD)
    reprec.assertoutcome(passed=20)
    reports = [r for r in reprec.getreports("pytest_runtest_logreport") if r.when in ("setup", "teardown")]
    assert len(reports) == 40
    per_test = sum(r.duration for r in reports) / 20
    # About 2 ms on the 2-core development machine; 0.5 s is the generous bound.
    assert per_test < 0.5, f"start+stop took {per_test:.3f}s a test"


def test_the_entry_point_loads_the_plugin_as_an_install_does(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10: pytest itself depends on tomli there
        import tomli as tomllib
    # What `pip install` writes for pyproject's entry point, on a path of its own.
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    site = pytester.path / "site"
    info = site / "gearctl_testing_probe-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gearctl-testing-probe\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{name} = {module}\n" for name, module in entry_points.items()))
    monkeypatch.setenv("PYTHONPATH", f"{site}:{ROOT}")
    user_project(pytester, '''
        def test_shout(gearman_server, gearctl_worker):
            gearctl_worker(plugin_dir="gearman")
            assert gearman_server.run_job("shout", {"text": "ok"}) == {"text": "OK"}
    ''')
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    # Named as the module: -p with the entry point installed is the same plugin, not a second one.
    pytester.runpytest_subprocess("-p", "gearctl.testing").assert_outcomes(passed=1)
    pytester.runpytest_subprocess("-p", "no:gearctl.testing").assert_outcomes(errors=1)


# -- the fixtures and helpers used directly ----------------------------------------

def test_status_and_workers_come_from_the_admin_protocol(gearman_server: GearmanServer,
                                                         gearctl_worker: Callable[..., RunningWorker],
                                                         tmp_path: Path) -> None:
    from gearctl import testing

    def held(job: object) -> str:  # runs until the test creates the file
        testing.wait_for((tmp_path / "release").exists, 30, "release")
        return "done"

    assert gearman_server.status() == {}
    worker = gearctl_worker(functions=[held])
    assert [w.functions for w in gearman_server.workers() if w.client_id.startswith("gearctl-testing-")] == [("held",)]
    from gearctl import Client

    with Client(gearman_server.address) as client:
        client.submit("held", b"x")
    testing.wait_for(lambda: gearman_server.status()["held"].running == 1, 10, "the job to run")
    assert gearman_server.status()["held"].workers == 1
    (tmp_path / "release").touch()
    gearman_server.wait_until_idle()
    assert worker.stats.functions["held"].done == 1


def test_run_job_without_a_worker_says_so_at_once(gearman_server: GearmanServer) -> None:
    from gearctl import testing

    with pytest.raises(NoWorker, match="no worker has registered 'nobody'"):
        testing.run_job(gearman_server, "nobody", {"a": 1})
    with pytest.raises(NoWorker):
        testing.run_job(gearman_server.address, "nobody", {"a": 1})  # by address, from this thread


def test_run_job_encodings(gearman_server: GearmanServer,
                           gearctl_worker: Callable[..., RunningWorker]) -> None:
    def same(job: object) -> object:
        return job.data  # type: ignore[attr-defined]

    def nothing(job: object) -> None:
        return None

    def boom(job: object) -> None:
        raise RuntimeError("it broke")

    gearctl_worker(functions=[same, nothing, boom])
    assert gearman_server.run_job("same", {"k": [1, 2]}) == {"k": [1, 2]}
    assert gearman_server.run_job("same", {"k": "v"}, encoding="php") == {"k": "v"}
    assert gearman_server.run_job("same", b"bytes", encoding="raw") == b"bytes"
    assert gearman_server.run_job("nothing", {}) is None
    assert gearman_server.run_job("nothing", b"", encoding="raw") == b""
    with pytest.raises(JobException, match="RuntimeError: it broke"):
        gearman_server.run_job("boom", {})


def test_run_job_refuses_an_unknown_encoding_before_any_connection() -> None:
    from gearctl import testing

    with pytest.raises(PayloadError, match="unknown encoding 'yaml'"):
        testing.run_job("127.0.0.1:1", "f", {}, encoding="yaml")


def test_a_plugin_error_is_raised_not_served_around(gearman_server: GearmanServer, tmp_path: Path) -> None:
    from gearctl import testing

    (tmp_path / "bad.py").write_text("raise SystemExit(3)\n")
    with pytest.raises(UsageError, match=r"bad\.py: cannot import"):
        testing.serve(gearman_server, tmp_path)
    assert [name for name in plugin_threads() if "worker" in name] == []  # stopped, not left serving


def test_wait_for_returns_the_value_or_times_out_naming_what() -> None:
    from gearctl import testing

    assert testing.wait_for(lambda: 7, 1, "seven") == 7
    with pytest.raises(TimeoutError, match="waiting for the moon"):
        testing.wait_for(lambda: None, 0.01, "the moon")


def test_loading_the_plugin_imports_no_server_worker_or_plugins() -> None:
    # pytest imports it at the start of every run in a project where gearctl is installed.
    heavy = ["gearctl.plugins", "gearctl.server", "gearctl.serverstate", "gearctl.worker"]
    code = f"import sys, gearctl.testing; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_server_shut_down_by_admin_stops_cleanly_and_refuses_calls() -> None:
    from gearctl.testing import GearmanServer

    server = GearmanServer().start()
    assert server.admin("shutdown") == ["OK"]
    server.thread.join(10)
    assert not server.thread.is_alive()
    assert port_closed(server.port)
    server.stop()  # nothing left to stop: no error
    with pytest.raises(RuntimeError, match="is not running"):
        server.status()


def test_readmes_example_is_the_example_test_file() -> None:
    section = (ROOT / "README.md").read_text().split("\n## Testing your job functions\n", 1)[1].split("\n## ", 1)[0]
    shown = section.split("```python\n", 1)[1].split("```", 1)[0]
    example = (ROOT / "examples" / "notifications" / "tests" / "test_notifications.py").read_text()
    for block in shown.split("\n\n\n"):
        assert block.strip() in example, block
