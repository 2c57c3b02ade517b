"""One function per WORK_* packet a gearctl worker sends, for PHP clients to receive
(tests/test_php_interop.py)."""

import base64
import json
import os
import time

from gearctl import job
from gearctl.php import PhpEnum, PhpObject, PhpSerializable


@job
def wk_status(job):
    job.send_status(1, 2)
    job.send_status(2, 2)
    return "done"


@job
def wk_data(job):
    job.send_data(b"part1;")
    job.send_data("part2;")
    return "end"


@job
def wk_warning(job):
    job.send_warning("careful now")
    return "ok"


@job
def wk_exception(job):
    raise ValueError("boom: " + str(job.data))


@job(timeout=0.5)
def wk_timeout(job):
    time.sleep(60)  # interrupted by the timeout


@job
def wk_return(job):
    return {"got": job.data, "encoding": job.encoding}


@job
def wk_decode(job):
    return job.data  # a workload that does not decode fails the job here


def describe(value, _open=()):
    """A value with its Python type, in forms that survive serialize() and JSON:
    what tests/test_php_interop.py compares with the documented mapping."""
    if isinstance(value, PhpObject):
        if id(value) in _open:
            return {"cycle": value.php_class}
        inner = (*_open, id(value))
        props = {name: [value.visibility(name), describe(v, inner)] for name, v in value.items()}
        return {"object": value.php_class, "props": props,
                "shadowed": [[cls, name, describe(v, inner)] for (cls, name), v in value.shadowed.items()]}
    if isinstance(value, PhpEnum):
        return {"enum": f"{value.php_class}:{value.case}"}
    if isinstance(value, PhpSerializable):
        return {"serializable": value.php_class}
    if isinstance(value, dict):
        return {"dict": [[k, describe(v, _open)] for k, v in value.items()]}
    if isinstance(value, list):
        return {"list": [describe(v, _open) for v in value]}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode()}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, str):
        return {"str": value}
    return {"null": value is None}


@job
def wk_describe(job):
    return describe(job.data)


@job
def wk_record(job):
    with open(os.environ["GEARCTL_TEST_RECORD"], "a") as f:
        f.write(json.dumps({"name": job.unique, "described": describe(job.data)}) + "\n")
