"""Test plugin in the hook form (Drupal's hook_gearman_drush_function())."""


def send_users(job):
    # Echo what the workload decoded to, so tests can compare structures.
    job.context["calls"] += 1
    return {"data": job.data, "calls": job.context["calls"]}  # answered in the workload's encoding


def gearman_functions():
    return [
        {"function_name": "notifications_send_users", "function": send_users, "context": {"calls": 0},
         "timeout": 30, "encoding": "auto"},
        {"function_name": "bytes_cat", "command": ["cat"]},
        {"function_name": "failing_cmd", "command": ["sh", "-c", "echo 'disk full' >&2; exit 3"]},
    ]
