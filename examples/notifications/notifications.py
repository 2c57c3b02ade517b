"""An example plugin directory, the Python form of Drupal's hook_gearman_drush_function():

    gearctl worker -p examples/notifications
    gearctl client notifications_send_users --wait --data '{"users": [3, 5, 8], "message": "hello"}'

The job's workload is JSON (or PHP serialize(), as Drupal sends it: `job.data`
decodes either); the answer goes back in the same encoding.
"""

from __future__ import annotations

from typing import Any


def send_users(job: Any) -> dict[str, Any]:
    """'Send' a message to some users: here, count them and say so."""
    data = job.data
    users = data.get("users", []) if isinstance(data, dict) else []
    message = data.get("message", "") if isinstance(data, dict) else ""
    if not isinstance(users, list):
        raise ValueError(f"users must be a list, not {type(users).__name__}")
    job.send_status(len(users), len(users))
    return {"sent": len(users), "message": message}


def gearman_functions() -> list[dict[str, Any]]:
    return [{"function_name": "notifications_send_users", "function": send_users, "timeout": 60}]
