"""Uncooperative job functions that run until the test creates $GEARCTL_TEST_RELEASE
(at most 120 s), so a reply within the test's wait can only be their timeout."""

import os
import time

from gearctl import job


def _released() -> bool:
    return os.path.exists(os.environ.get("GEARCTL_TEST_RELEASE", ""))


@job(timeout=1)
def swallows_until_released(j):
    deadline = time.monotonic() + 120
    while not _released() and time.monotonic() < deadline:  # swallowing every error must still time out
        try:  # noqa: SIM105
            time.sleep(0.05)
        except Exception:
            pass
    return b"should not get here"


def gearman_functions():
    wait = 'i=0; while [ ! -e "$GEARCTL_TEST_RELEASE" ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; echo done'
    return [{"function_name": "grandchild_until_released", "command": ["sh", "-c", wait], "timeout": 1}]
