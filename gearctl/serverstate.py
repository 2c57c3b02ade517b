"""The embedded server's protocol state, sans-IO: plain objects that take
packets from connections and say which bytes go to which connection. No
sockets, no asyncio, no clock: the caller passes `now` (time.time() seconds,
the clock SUBMIT_JOB_EPOCH speaks) and moves the bytes (server.py).

    state = ServerState("myhost")
    state.connect(1, "127.0.0.1", fd=7)
    sends = state.receive(1, packet, now)      # [(connection id, bytes), ...]
    sends = state.tick(now)                    # due jobs, passed CAN_DO_TIMEOUTs
    state.next_wakeup()                        # when tick() has something to do

What follows gearmand 1.1.20 (libgearman-server/job.cc, gearmand_con.cc,
server.cc), and where it deliberately does not:

- Each function has one queue per priority, HIGH, NORMAL, LOW; a grab takes
  the oldest job of the highest priority that has one due, looking at the
  worker's functions most recently registered first (gearmand adds each CAN_DO
  at the head of the connection's list). gearmand 1.1.20 stops at the first
  non-empty priority even when all its jobs are due later, so a NORMAL list
  holding only SUBMIT_JOB_EPOCH jobs blocks the LOW jobs; here jobs due later
  wait apart (`scheduled`, a heap) and join the tail of their queue when due,
  so they block nothing.
- A job whose worker disconnects goes back to the TAIL of its priority queue
  with its retry count raised, as gearmand_server_job_queue() does.
- Unique keys coalesce per function: a submit whose unique matches a queued,
  scheduled or running job gets that job's handle, and a foreground submit
  attaches to it (it gets every WORK_* from then on). The unique "-" means
  "the data is the unique key", as in gearmand.
- A client that disconnects leaves its foreground jobs to run (gearmand drops
  a queued foreground job that lost all its clients: a job is never silently
  dropped here).
- CAN_DO_TIMEOUT counts seconds and fails the job (WORK_FAIL to its clients)
  when they pass; gearmand counts milliseconds (at least 1000) and re-queues.
- Jobs due later wake sleeping workers when they come due (next_wakeup() and
  tick()); gearmand 1.1.20 leaves them to the worker's next grab.
- WORK_EXCEPTION goes to clients that sent OPTION_REQ "exceptions", WORK_FAIL
  to the others, and ends the job, as in gearmand.
- Past `max_queue` jobs (queued plus running) for a function, a new job is
  refused with ERROR QUEUE_ERROR "Job queue is full", as gearmand does with its
  admin `maxqueue`; 0 or None means no limit.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from .protocol import Magic, Packet, PacketType, encode
from .serverjobs import SUBMITS, Conn, Function, Job, JobStore, Priority, StoreFailed

P = PacketType
RES = Magic.RES
MAX_UNIQUE = 64  # bytes, as gearmand's GEARMAN_UNIQUE_SIZE

Sends = list[tuple[int, bytes]]  # (connection id, bytes to write), in order


# The ERROR packets, codes and texts as gearmand 1.1.20 words them.
NOT_FOUND = {
    P.WORK_DATA: b"Job does not exist on server",
    P.WORK_WARNING: b"Job does not exist on server",
    P.WORK_EXCEPTION: b"An exception was received for a job that does not exist",
}
NOT_FOUND_TEXT = b"Job given in work result not found"


def error(code: str, text: bytes) -> bytes:
    return encode(P.ERROR, code, text, magic=RES)


Handler = Callable[["ServerState", Conn, Packet, float], None]


class ServerState:
    """Every function, job and connection of one server."""

    def __init__(self, host: str = "localhost", max_queue: int | None = None) -> None:
        if max_queue is not None and max_queue < 0:
            raise ValueError(f"max_queue is a number of jobs (0 or None: no limit), not {max_queue}")
        self.prefix = f"H:{host}:".encode()
        self.max_queue = max_queue or 0
        self.functions: dict[bytes, Function] = {}
        self.jobs: dict[bytes, Job] = {}  # by handle, in creation order
        self.conns: dict[int, Conn] = {}
        self.draining = False  # graceful shutdown: no new jobs, none handed out
        self.counter = 0
        self.uniques: dict[tuple[bytes, bytes], Job] = {}
        self.scheduled: list[tuple[float, int, Job]] = []  # heap: (when, sequence, job)
        self.timeouts: list[tuple[float, int, Job]] = []  # heap: (deadline, sequence, job)
        self.out: Sends = []
        self.store: JobStore | None = None
        self.warnings: list[str] = []  # for the I/O layer to log (a stored job that could not be deleted)

    # -- connections ------------------------------------------------------------
    def connect(self, conn_id: int, host: str, fd: int = -1) -> None:
        self.conns[conn_id] = Conn(conn_id, host, fd)

    def disconnect(self, conn_id: int, now: float) -> Sends:
        """The connection is gone: its jobs go back to their queues, its
        foreground jobs run on without it."""
        conn = self.conns.pop(conn_id, None)
        if conn is None:
            return []
        for name in conn.abilities:
            self.functions[name].workers.remove(conn)
        for job in conn.waiting.values():
            job.clients = [c for c in job.clients if c is not conn]
        for job in list(conn.held.values()):
            self.requeue(job)
        return self.flush()

    def receive(self, conn_id: int, packet: Packet, now: float) -> Sends:
        """One packet from a connection: what to send, to whom."""
        conn = self.conns[conn_id]
        if packet.magic is not Magic.REQ:
            self.send(conn, error("INVALID_MAGIC", b"Request magic expected"))
        else:
            handler = HANDLERS.get(packet.type)
            if handler is None:
                self.send(conn, error("INVALID_COMMAND", b"Command not expected"))
            else:
                handler(self, conn, packet, now)
        return self.flush()

    def send(self, conn: Conn, data: bytes) -> None:
        self.out.append((conn.id, data))

    def flush(self) -> Sends:
        out, self.out = self.out, []
        return out

    # -- time -------------------------------------------------------------------
    def next_wakeup(self) -> float | None:
        """When tick() next has something to do: a scheduled job comes due or a
        job's CAN_DO_TIMEOUT passes (time.time() seconds), or None."""
        times = [heap[0][0] for heap in (self.scheduled, self.timeouts) if heap]
        return min(times) if times else None

    def tick(self, now: float) -> Sends:
        """Due jobs join their queues (and wake sleeping workers); jobs past
        their CAN_DO_TIMEOUT fail."""
        self.promote(now)
        while self.timeouts and self.timeouts[0][0] <= now:
            deadline, _, job = heapq.heappop(self.timeouts)
            if not job.ended and job.worker is not None and job.deadline == deadline:
                for client in job.clients:
                    self.send(client, encode(P.WORK_FAIL, job.handle, magic=RES))
                self.end(job)
        return self.flush()

    def promote(self, now: float) -> None:
        while self.scheduled and self.scheduled[0][0] <= now:
            _, _, job = heapq.heappop(self.scheduled)
            if not job.ended:
                job.function.scheduled -= 1
                self.enqueue(job)

    # -- jobs -------------------------------------------------------------------
    def function(self, name: bytes) -> Function:
        found = self.functions.get(name)
        if found is None:
            found = self.functions[name] = Function(name)
        return found

    def enqueue(self, job: Job) -> None:
        """Onto the tail of its queue, and a NOOP to each sleeping worker that can run it."""
        job.function.queues[job.priority].append(job)
        for worker in job.function.workers:
            if worker.sleeping and not worker.noop_sent:
                worker.noop_sent = True
                self.send(worker, encode(P.NOOP, magic=RES))

    def requeue(self, job: Job) -> None:
        """Its worker left (or let it go): back to the tail of its queue."""
        worker = job.worker
        if worker is not None:
            worker.held.pop(job.handle, None)
            job.function.running -= 1
        job.worker = None
        job.retries += 1
        job.numerator = job.denominator = b"0"
        job.deadline = 0.0
        self.enqueue(job)

    def end(self, job: Job) -> None:
        """The job is over (complete, failed, timed out, cancelled): forget it."""
        job.ended = True
        self.jobs.pop(job.handle, None)
        if job.key and self.uniques.get((job.function.name, job.key)) is job:
            del self.uniques[(job.function.name, job.key)]
        if job.worker is not None:
            job.worker.held.pop(job.handle, None)
            job.function.running -= 1
        else:
            queue = job.function.queues[job.priority]
            if job in queue:
                queue.remove(job)
            elif job.when:
                job.function.scheduled -= 1
        for client in job.clients:
            client.waiting.pop(job.handle, None)
        job.clients.clear()
        if job.stored and self.store is not None:
            try:
                self.store.remove(job)
            except StoreFailed as e:
                self.warnings.append(f"{e} (it will run again after a restart)")

    def submit(self, conn: Conn, packet: Packet, now: float) -> None:
        priority, background = SUBMITS[packet.type]
        name, unique = packet.args[0], packet.args[1]
        data = packet.args[-1]
        when = 0.0
        if packet.type is P.SUBMIT_JOB_EPOCH:
            if (epoch := whole_seconds(packet.args[2])) is None:
                self.send(conn, error("INVALID_ARGUMENT", b"epoch is not a number"))
                return
            when = epoch
        if len(unique) > MAX_UNIQUE:
            self.send(conn, error("ARGUMENT_TOO_LARGE", b"Unique value too large"))
            return
        if self.draining:
            self.send(conn, error("QUEUE_ERROR", b"Server is shutting down"))
            return
        function = self.function(name)
        key = data if unique == b"-" else unique
        job = self.uniques.get((name, key)) if key else None
        if job is None:
            limit = self.limit(function, priority)
            if limit and function.total >= limit:
                self.send(conn, error("QUEUE_ERROR", b"Job queue is full"))
                return
            try:
                job = self.create(function, unique, data, priority, background, when, now)
            except StoreFailed as e:
                self.send(conn, error("QUEUE_ERROR", str(e).encode()))
                return
        if not background:
            job.clients.append(conn)
            conn.waiting[job.handle] = job
        self.send(conn, encode(P.JOB_CREATED, job.handle, magic=RES))

    def limit(self, function: Function, priority: Priority) -> int:
        if function.max_queue is not None:
            return function.max_queue[priority]
        return self.max_queue

    def create(self, function: Function, unique: bytes, data: bytes, priority: Priority,
               background: bool, when: float, now: float, stored: int = 0) -> Job:
        """A new job, stored first when it is a background job and there is a
        store (StoreFailed: nothing was created)."""
        self.counter += 1
        job = Job(self.prefix + str(self.counter).encode(), function, unique, data, priority, background, when,
                  stored=stored)
        if background and not stored and self.store is not None:
            self.store.add(job)
        self.jobs[job.handle] = job
        if job.key:
            self.uniques[(function.name, job.key)] = job
        if when > now:
            function.scheduled += 1
            heapq.heappush(self.scheduled, (when, self.counter, job))
        else:
            self.enqueue(job)
        return job

    def restore(self, function: bytes, unique: bytes, data: bytes, priority: Priority, when: float,
                stored: int, now: float) -> None:
        """A background job loaded from the store at start (a duplicate unique key
        coalesces, as a submit would; its row is then deleted)."""
        key = data if unique == b"-" else unique
        existing = self.uniques.get((function, key)) if key else None
        if existing is not None:
            if self.store is not None:
                self.store.remove(Job(b"", existing.function, unique, data, priority, True, stored=stored))
            return
        self.create(self.function(function), unique, data, priority, True, when, now, stored)

    def runnable(self, conn: Conn) -> Iterator[Job]:
        """The jobs this worker could take now, best first, each function's
        best one (functions most recently registered first)."""
        for name in reversed(conn.abilities):
            for queue in self.functions[name].queues:
                if queue:
                    yield queue[0]
                    break

    def take(self, conn: Conn, now: float) -> Job | None:
        self.promote(now)
        if self.draining:
            return None
        job = next(self.runnable(conn), None)
        if job is None:
            return None
        job.function.queues[job.priority].popleft()
        job.worker = conn
        job.function.running += 1
        conn.held[job.handle] = job
        timeout = conn.abilities.get(job.function.name, 0.0)
        if timeout > 0:
            self.counter += 1
            job.deadline = now + timeout
            heapq.heappush(self.timeouts, (job.deadline, self.counter, job))
        return job

    def held_job(self, conn: Conn, handle: bytes) -> Job | None:
        """The job `handle` if this connection runs it (gearmand answers other
        connections' WORK_* about it with ERROR JOB_NOT_FOUND too)."""
        job = conn.held.get(handle)
        return job if job is not None and not job.ended else None

    # -- admin actions (answers in serveradmin.py) ------------------------------
    def cancel(self, handle: bytes) -> bool:
        """End a job now: WORK_FAIL to its clients. False: no such job."""
        job = self.jobs.get(handle)
        if job is None:
            return False
        for client in job.clients:
            self.send(client, encode(P.WORK_FAIL, job.handle, magic=RES))
        self.end(job)
        return True

    def drop_function(self, name: bytes) -> bool | None:
        """Forget a function (matched as gearmand does, ASCII case-insensitive):
        None when unknown, False while it has workers or jobs. (gearmand drops a
        function with queued jobs and keeps them where no worker can get them.)"""
        function = next((f for f in self.functions.values() if f.name.lower() == name.lower()), None)
        if function is None:
            return None
        if function.workers or function.total:
            return False
        del self.functions[function.name]
        return True

    def set_max_queue(self, name: bytes, limits: tuple[int, int, int]) -> None:
        function = self.functions.get(name)
        if function is not None:
            function.max_queue = limits

    @property
    def running(self) -> int:
        return sum(f.running for f in self.functions.values())


# -- packet handlers -------------------------------------------------------------

def on_echo(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    state.send(conn, encode(P.ECHO_RES, packet.args[0], magic=RES))


def on_submit(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    state.submit(conn, packet, now)


def on_status(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    handle = packet.args[0]
    job = state.jobs.get(handle)
    if job is None:
        state.send(conn, encode(P.STATUS_RES, handle, b"0", b"0", b"0", b"0", magic=RES))
        return
    running = b"1" if job.worker is not None else b"0"
    state.send(conn, encode(P.STATUS_RES, handle, b"1", running, job.numerator, job.denominator, magic=RES))


def on_status_unique(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    unique = packet.args[0]
    # Like gearmand: the first job with this unique, whatever its function.
    job = next((j for (_, key), j in state.uniques.items() if key == unique), None)
    if job is None:
        state.send(conn, encode(P.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0", b"0", magic=RES))
        return
    running = b"1" if job.worker is not None else b"0"
    waiting = str(len(job.clients)).encode()
    state.send(conn, encode(P.STATUS_RES_UNIQUE, unique, b"1", running, job.numerator, job.denominator, waiting,
                            magic=RES))


def on_option(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    option = packet.args[0]
    if option.lower() != b"exceptions":
        state.send(conn, error("UNKNOWN_OPTION", b"Server does not recognize given option"))
        return
    conn.exceptions = True
    state.send(conn, encode(P.OPTION_RES, option, magic=RES))


def whole_seconds(value: bytes) -> float | None:
    """A packet's decimal seconds (an epoch, a timeout); None when it is not a number."""
    try:
        return float(int(value))
    except ValueError:
        return None


def on_can_do(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    timeout = 0.0
    if packet.type is P.CAN_DO_TIMEOUT:
        if (seconds := whole_seconds(packet.args[1])) is None:
            state.send(conn, error("INVALID_ARGUMENT", b"CAN_DO_TIMEOUT: the timeout is not a number"))
            return
        timeout = seconds
    name = packet.args[0]
    if name not in conn.abilities:
        state.function(name).workers.append(conn)
    conn.abilities.pop(name, None)  # registered again: most recent again
    conn.abilities[name] = max(timeout, 0.0)


def on_cant_do(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    name = packet.args[0]
    if conn.abilities.pop(name, None) is not None:
        state.functions[name].workers.remove(conn)


def on_reset(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    for name in conn.abilities:
        state.functions[name].workers.remove(conn)
    conn.abilities.clear()


def on_pre_sleep(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    state.promote(now)
    if next(state.runnable(conn), None) is not None and not state.draining:
        state.send(conn, encode(P.NOOP, magic=RES))  # work came meanwhile
        return
    conn.sleeping = True


def on_grab(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    conn.sleeping = conn.noop_sent = False
    job = state.take(conn, now)
    if job is None:
        state.send(conn, encode(P.NO_JOB, magic=RES))
    elif packet.type is P.GRAB_JOB:
        state.send(conn, encode(P.JOB_ASSIGN, job.handle, job.function.name, job.data, magic=RES))
    else:  # GRAB_JOB_UNIQ, and GRAB_JOB_ALL for a job without a reducer (as gearmand)
        state.send(conn, encode(P.JOB_ASSIGN_UNIQ, job.handle, job.function.name, job.unique, job.data,
                                magic=RES))


def on_work(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    """WORK_DATA, WARNING, STATUS: forwarded to every client attached."""
    job = state.held_job(conn, packet.args[0])
    if job is None:
        state.send(conn, error("JOB_NOT_FOUND", NOT_FOUND.get(packet.type, NOT_FOUND_TEXT)))
        return
    if packet.type is P.WORK_STATUS:
        job.numerator, job.denominator = packet.args[1], packet.args[2]
    forward = encode(packet.type, *packet.args, magic=RES)
    for client in job.clients:
        state.send(client, forward)


def on_work_end(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    """WORK_COMPLETE, FAIL, EXCEPTION: forwarded, and the job is over."""
    job = state.held_job(conn, packet.args[0])
    if job is None:
        state.send(conn, error("JOB_NOT_FOUND", NOT_FOUND.get(packet.type, NOT_FOUND_TEXT)))
        return
    forward = encode(packet.type, *packet.args, magic=RES)
    fail = encode(P.WORK_FAIL, job.handle, magic=RES)
    for client in job.clients:
        exception_refused = packet.type is P.WORK_EXCEPTION and not client.exceptions
        state.send(client, fail if exception_refused else forward)
    state.end(job)


def on_client_id(state: ServerState, conn: Conn, packet: Packet, now: float) -> None:
    conn.client_id = packet.args[0][:127] or b"-"


HANDLERS: dict[PacketType, Handler] = {
    P.ECHO_REQ: on_echo,
    **{t: on_submit for t in SUBMITS},
    P.GET_STATUS: on_status,
    P.GET_STATUS_UNIQUE: on_status_unique,
    P.OPTION_REQ: on_option,
    P.CAN_DO: on_can_do,
    P.CAN_DO_TIMEOUT: on_can_do,
    P.CANT_DO: on_cant_do,
    P.RESET_ABILITIES: on_reset,
    P.PRE_SLEEP: on_pre_sleep,
    P.GRAB_JOB: on_grab,
    P.GRAB_JOB_UNIQ: on_grab,
    P.GRAB_JOB_ALL: on_grab,
    P.WORK_DATA: on_work,
    P.WORK_WARNING: on_work,
    P.WORK_STATUS: on_work,
    P.WORK_COMPLETE: on_work_end,
    P.WORK_FAIL: on_work_end,
    P.WORK_EXCEPTION: on_work_end,
    P.SET_CLIENT_ID: on_client_id,
}
