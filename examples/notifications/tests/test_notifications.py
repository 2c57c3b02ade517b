"""Tests of the notifications plugin, as a user's project writes them: the
gearctl.testing fixtures run an embedded Gearman server and a worker serving
the plugin directory, so no gearmand is needed.

    python3 -m pytest examples/notifications/tests     # gearctl installed
    python3 -m pytest -p gearctl.testing examples/notifications/tests   # from a checkout
"""

from pathlib import Path

import pytest

from gearctl.errors import JobException

PLUGINS = Path(__file__).resolve().parent.parent  # the plugin directory


def test_sends_to_every_user(gearman_server, gearctl_worker):
    gearctl_worker(plugin_dir=PLUGINS)

    result = gearman_server.run_job("notifications_send_users", {"users": [3, 5, 8], "message": "hello"})

    assert result == {"sent": 3, "message": "hello"}


def test_a_php_payload_gets_a_php_answer(gearman_server, gearctl_worker):
    gearctl_worker(plugin_dir=PLUGINS)

    result = gearman_server.run_job("notifications_send_users", {"users": [1], "message": "hi"}, encoding="php")

    assert result == {"sent": 1, "message": "hi"}


def test_bad_users_fail_the_job_with_its_message(gearman_server, gearctl_worker):
    worker = gearctl_worker(plugin_dir=PLUGINS)

    with pytest.raises(JobException, match="users must be a list, not str"):
        gearman_server.run_job("notifications_send_users", {"users": "everyone"})

    assert worker.stats.functions["notifications_send_users"].failed == 1


def test_background_jobs_are_all_done(gearman_server, gearctl_worker):
    from gearctl import Client

    worker = gearctl_worker(plugin_dir=PLUGINS)
    with Client(gearman_server.address) as client:
        for n in range(5):
            client.submit("notifications_send_users", b'{"users": [%d]}' % n)

    gearman_server.wait_until_idle("notifications_send_users")

    assert worker.stats.functions["notifications_send_users"].done == 5
