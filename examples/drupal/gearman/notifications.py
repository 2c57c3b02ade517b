"""notifications_send_users, the seed job of Drupal's gearman module, as a gearctl plugin.

Drupal submits `serialize(['uids' => [...], 'subject' => ..., 'body' => ...])`
(see ../gearman_client.php and ../src/Queue/GearmanQueue.php); gearctl decodes it
(PHP arrays become lists and dicts, objects PhpObject) and answers in PHP
serialize(), because the workload came as PHP.

Run it:  gearctl worker -p examples/drupal/gearman --functions notifications_send_users

"Sending" appends one JSON line per user to the file named by NOTIFICATIONS_OUTBOX
(stderr when unset): put your mailer here.
"""

from __future__ import annotations

import json
import os
import sys


def send_users(job):
    item = job.data
    uids = item["uids"]
    # A PHP array with gaps (after array_filter) arrives as a dict: its values are
    # the uids, as PHP's foreach sees them.
    if isinstance(uids, dict):
        uids = list(uids.values())
    account = item.get("account")  # a PHP object (PhpObject) when Drupal sends one
    sender = account["name"] if account is not None else "system"
    outbox = os.environ.get("NOTIFICATIONS_OUTBOX")
    lines = [json.dumps({"uid": uid, "subject": item["subject"], "from": sender}) for uid in uids]
    if outbox:
        with open(outbox, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    else:
        print("\n".join(lines), file=sys.stderr)
    job.context["sent"] += len(uids)
    for i, _ in enumerate(uids, 1):
        job.send_status(i, len(uids))
    return {"sent": len(uids), "uids": uids}


def gearman_functions():
    # The Python form of hook_gearman_drush_function().
    return [
        {"function_name": "notifications_send_users", "function": send_users, "context": {"sent": 0}, "timeout": 60},
    ]
