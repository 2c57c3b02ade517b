"""Sans-IO protocol state, h11-style: plain objects that take packets (and job
outcomes) and return the bytes to send. No sockets, no asyncio: the code in
connection.py and worker.py moves the bytes; these decide what they are.

The embedded server (a later issue) will need the server's side of the same
conversations; it belongs here too.
"""

from __future__ import annotations

# -- the worker's side of one server connection -------------------------------


# -- replies matched to requests, in order ------------------------------------
