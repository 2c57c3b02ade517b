"""examples/drupal, run for real: Drupal's side in PHP (the queue backend, the
gearman_drush_client() function, a PHP worker) against gearmand and gearctl."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PHP_DIR, Gearmand, Procs, clean_env, gearctl, wait_until

from gearctl.php import loads

EXAMPLE = Path(__file__).parent.parent / "examples" / "drupal"
GEARCTL = [sys.executable, "-m", "gearctl"]


def _php_gearman() -> bool:
    return shutil.which("php") is not None and "gearman" in subprocess.run(
        ["php", "-m"], capture_output=True, text=True).stdout.split()


pytestmark = [pytest.mark.skipif(not _php_gearman(), reason="php-cli with php-gearman is not installed"),
              pytest.mark.conformance, pytest.mark.interop]  # PHP, against gearmand and gearctl server


def php(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["php", *args], capture_output=True, text=True, timeout=60)


def example_worker(procs: Procs, server: Gearmand, outbox: Path, *args: str) -> subprocess.Popen:
    env = clean_env(NOTIFICATIONS_OUTBOX=str(outbox))
    return procs.start([*GEARCTL, "worker", "-p", str(EXAMPLE / "gearman"), "-s", server.address,
                        "--functions", "notifications_send_users", *args], env=env)


def test_a_drupal_queue_item_reaches_the_gearctl_plugin(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    item = {"uids": [3, 5, 8], "subject": "Weekly digest", "account": {"name": "admin", "uid": 1}}
    done = php(str(PHP_DIR / "drupal_queue.php"), gearmand.address, "notifications_send_users", json.dumps(item))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("H:")
    assert gearmand.queued("notifications_send_users") == 1

    outbox = tmp_path / "outbox"
    worker = example_worker(procs, gearmand, outbox, "--burst")
    assert worker.wait(60) == 0
    sent = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert sent == [{"uid": uid, "subject": "Weekly digest", "from": "admin"} for uid in (3, 5, 8)]


def test_createitem_returns_false_when_no_server_queues_it(tmp_path: Path) -> None:
    from conftest import free_port

    done = php(str(PHP_DIR / "drupal_queue.php"), f"127.0.0.1:{free_port()}", "q", json.dumps({"uids": []}))
    assert done.returncode == 1 and done.stdout.strip() == "FALSE"


def test_gearman_drush_client_gets_the_answer_as_php(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    example_worker(procs, gearmand, tmp_path / "outbox")
    wait_until(lambda: gearmand.status().get("notifications_send_users", (0, 0, 0))[2] >= 1, 15, what="worker")
    # A sparse array, as array_filter() leaves it: the plugin reads its values.
    data = {"uids": {"3": 7, "7": 9}, "subject": "x"}
    done = php(str(EXAMPLE / "gearman_client.php"), gearmand.address, "notifications_send_users", json.dumps(data),
               "--wait")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sent": 2, "uids": [7, 9]}  # unserialize() worked on the answer

    done = php(str(EXAMPLE / "gearman_client.php"), gearmand.address, "notifications_send_users", json.dumps(data))
    assert done.returncode == 0 and done.stdout.startswith("H:")


def test_the_php_worker_serves_a_gearctl_client(gearmand: Gearmand, procs: Procs) -> None:
    procs.start(["php", str(EXAMPLE / "php_worker.php"), gearmand.address])
    wait_until(lambda: gearmand.status().get("report_build", (0, 0, 0))[2] >= 1, 15, what="PHP worker")
    payload = {"rows": 2, "by": "cron", "account": {"__php_class__": "stdClass", "name": "x"}}
    done = gearctl("client", "report_build", "-e", "php", "--wait", "--data", json.dumps(payload),
                   "-s", gearmand.address)
    assert done.returncode == 0, done.stderr
    assert loads(done.stdout) == {"rows": [{"n": 1, "by": "cron"}, {"n": 2, "by": "cron"}], "count": 2,
                                  "class": "stdClass"}
    # The same answer for a shell script: JSON on stdout, for jq.
    decoded = gearctl("client", "report_build", "-e", "php", "--wait", "--decode", "php", "--data",
                      json.dumps(payload), "-s", gearmand.address)
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout) == {"rows": [{"n": 1, "by": "cron"}, {"n": 2, "by": "cron"}], "count": 2,
                                          "class": "stdClass"}
