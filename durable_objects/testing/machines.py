"""A rig of machines on one host, for tests, benchmarks and ``./scripts/cluster --machines``.

A ``Rig`` starts Redis and SeaweedFS (an S3 API for the replicas) on its bridge's address
and up to ``MAX_MACHINES`` machines. A ``Machine`` is a network namespace with a veth link
to that bridge (durable_objects/testing/network.py), its own directory (the machine's
disk: its ``STORAGE_ROOT``, its database, its Litestream socket), and its processes:
``manage.py litestream`` (when the rig replicates), daphne and ``manage.py runobjects``
(and ``rqworker`` if asked), each started with ``ip netns exec``. Where namespaces cannot
be made, machines are loopback addresses 127.0.0.x with their own directories, and a log
line says so.

Faults: ``kill()`` (SIGKILL every process of the machine), ``wipe()`` (delete its disk),
``link_down()``/``link_up()``, ``pause()``/``resume()`` (SIGSTOP/SIGCONT), ``restart()``.
``Rig.close()`` removes everything it made, and a rig whose process died is swept by the
next one. docs/ref/testing.md#the-machines-rig.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .network import logger, new_rig_id, open_network, sweep_stale_rigs
from .replication import SeaweedServer
from .servers import RedisServer, free_port, wait_for_port

MAX_MACHINES = 8
START_TIMEOUT = 60.0  # seconds one process of a machine may take to be ready
KILL_TIMEOUT = 10.0  # seconds for the processes of a killed machine to be gone
NAMESPACE_PORT = 8000  # daphne's port in a machine's own namespace


class Machine:
    """One machine of a rig: an address, a disk of its own, its processes."""

    def __init__(self, rig, index, address):
        self.rig = rig
        self.index = index
        self.name = f"m{index}"
        self.address = address
        self.port = NAMESPACE_PORT if rig.network.kind == "netns" else free_port(address)
        self.directory = rig.directory / self.name
        self.storage_root = self.directory / "objects"
        self.database = self.directory / "db.sqlite3"
        self.litestream_socket = self.directory / "litestream.sock"
        self.env = {}  # added to every process's environment, after the rig's
        self.processes = {}  # role -> Popen
        self.paused = False
        self._log_starts = {}  # role -> where this start's output begins in its log

    def __repr__(self):
        return f"<Machine {self.name} {self.url} {'up' if self.running else 'down'}>"

    @property
    def url(self):
        """The base URL of the machine's daphne, http://<address>:<port>."""
        return f"http://{self.address}:{self.port}"

    @property
    def running(self):
        """True while a process of the machine is alive."""
        return any(process.poll() is None for process in self.processes.values())

    def pid(self, role):
        """The process id of one role: "daphne", "runobjects", "litestream", "rqworker"."""
        return self.processes[role].pid

    def environment(self):
        """The environment of the machine's processes."""
        return {
            **os.environ,
            "PYTHONPATH": str(self.rig.project_dir),
            "DJANGO_SETTINGS_MODULE": self.rig.settings,
            **(self.rig.seaweed.env if self.rig.seaweed else {}),
            **self.rig.environment(self),
            **self.rig.env,
            **self.env,
        }

    def start(self):
        """Start the machine's processes and wait until each is ready."""
        if self.running:
            raise RuntimeError(f"{self.name} is running: kill() it before start().")
        self.storage_root.mkdir(parents=True, exist_ok=True)
        self.paused = False
        self.processes = {}
        self._log_starts = {}
        env = self.environment()
        self.rig.prepare_database(self, env)
        try:
            if self.rig.replication:
                self._start_litestream(env)
            self._spawn(
                "daphne",
                ["-m", "daphne", "-b", self.address, "-p", str(self.port), self.rig.application],
                env,
            )
            self._spawn("runobjects", ["manage.py", "runobjects"], env)
            if self.rig.rqworker:
                from durable_objects.alarms.rq import WORKER_COMMAND

                self._spawn("rqworker", ["manage.py", *WORKER_COMMAND], env)
            wait_for_port(self.port, self.processes["daphne"], START_TIMEOUT, host=self.address)
            self._wait_for_log("runobjects", "Hosting objects")
        except Exception as error:
            self.kill()
            raise RuntimeError(f"{self.name} did not start: {error}\n{self.logs()}") from None
        return self

    def kill(self):
        """SIGKILL every process of the machine; return once none is left."""
        self._signal_all(signal.SIGKILL)
        for process in self.processes.values():
            try:
                process.wait(KILL_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{self.name}: pid {process.pid} outlived SIGKILL") from None
        deadline = time.monotonic() + KILL_TIMEOUT
        while self.rig.network.pids(self.index):
            if time.monotonic() > deadline:
                left = self.rig.network.pids(self.index)
                raise RuntimeError(f"{self.name}: processes {left} outlived SIGKILL")
            self._signal_all(signal.SIGKILL)
            time.sleep(0.05)
        self.paused = False

    def wipe(self):
        """Delete the machine's disk (storage root, database, Litestream files)."""
        if self.running:
            raise RuntimeError(f"{self.name} is running: kill() it before wipe().")
        shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self):
        """Kill the machine's processes and start them again (on what is left of its disk)."""
        self.kill()
        return self.start()

    def pause(self):
        """SIGSTOP every process of the machine."""
        self._signal_all(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        """SIGCONT every process of the machine."""
        self._signal_all(signal.SIGCONT)
        self.paused = False

    def link_down(self):
        """Cut the machine off the network (its veth link down): a partition."""
        self.rig.network.link_down(self.index)

    def link_up(self):
        """Join the machine to the network again."""
        self.rig.network.link_up(self.index)

    def run(self, argv, *, timeout=30.0):
        """Run argv on the machine (in its namespace) with its environment; the
        CompletedProcess, output as text."""
        return subprocess.run(
            self.rig.network.command(self.index, list(argv)),
            cwd=self.rig.project_dir,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pids(self):
        """The ids of the machine's live processes (every one in its namespace)."""
        found = self.rig.network.pids(self.index)
        if found is None:
            found = [p.pid for p in self.processes.values() if p.poll() is None]
        return sorted(found)

    def log_path(self, role):
        return self.rig.directory / "logs" / f"{self.name}-{role}.log"

    def logs(self, size=1500):
        """The end of each process's log, for error messages."""
        parts = []
        for role in self.processes:
            try:
                text = self.log_path(role).read_text(errors="replace")[-size:]
            except OSError:
                text = ""
            parts.append(f"--- {self.name} {role} ---\n{text}")
        return "\n".join(parts)

    def _spawn(self, role, arguments, env):
        if self.rig._aborting.is_set():
            raise RuntimeError("the rig is giving up starting its machines")
        self.log_path(role).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(role), "ab") as log:
            self._log_starts[role] = log.tell()
            self.processes[role] = subprocess.Popen(
                self.rig.network.command(self.index, [sys.executable, *arguments]),
                cwd=self.rig.project_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own group: kill() reaches its children too
            )
        return self.processes[role]

    def _start_litestream(self, env):
        from durable_objects.storage.replication import LitestreamClient

        process = self._spawn("litestream", ["manage.py", "litestream"], env)
        client = LitestreamClient(self.litestream_socket)
        try:
            client.wait_ready(START_TIMEOUT, process=process)
        finally:
            client.close()

    def _wait_for_log(self, role, text):
        deadline = time.monotonic() + START_TIMEOUT
        process = self.processes[role]
        while text not in self._output(role):
            if process.poll() is not None:
                raise RuntimeError(f"{role} exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{role} did not print {text!r} in {START_TIMEOUT:g} s")
            time.sleep(0.05)

    def _output(self, role):
        """What role printed since this start (its log holds earlier starts too)."""
        with open(self.log_path(role), "rb") as log:
            log.seek(self._log_starts.get(role, 0))
            return log.read().decode(errors="replace")

    def _signal_all(self, signum):
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signum)
        for pid in self.rig.network.pids(self.index) or ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


class Rig:
    """Redis, SeaweedFS and machines on one host; ``close()`` removes all of it.

    environment(machine) returns the variables the settings module reads (storage root,
    database, Redis URL, replica URL, Litestream socket); env is added for every machine.
    """

    def __init__(
        self,
        *,
        project_dir,
        settings,
        application,
        environment,
        machines=0,
        replication=True,
        rqworker=False,
        namespaces=True,
        env=None,
    ):
        if shutil.which("ip"):
            sweep_stale_rigs()
        self.id = new_rig_id()
        self.project_dir = Path(project_dir)
        self.settings = settings
        self.application = application
        self.environment = environment
        self.replication = replication
        self.rqworker = rqworker
        self.env = dict(env or {})
        # Short: a Unix socket path (the Litestream socket) holds at most ~100 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix=f"do-rig-{self.id}-"))
        self.machines = []
        self.redis = self.seaweed = None
        self.generation = 0
        self._template = self.directory / "template.sqlite3"
        self._template_lock = threading.Lock()
        self._aborting = threading.Event()  # set while starts are given up
        self._closed = False
        try:
            self.network = open_network(self.id, prefer_namespaces=namespaces)
            host = self.network.host_address
            (self.directory / "redis").mkdir()
            self.redis = RedisServer(self.directory / "redis", host=host)
            self._mark_redis_old()
            if replication:
                self.seaweed = SeaweedServer(self.directory / "seaweed", host=host)
            self.add_machines(machines)
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def redis_url(self):
        return self.redis.url

    @property
    def replica_url(self):
        """The replica URL prefix every machine of this generation shares (None: off)."""
        if self.seaweed is None:
            return None
        return self.seaweed.url(f"rig-{self.id}-{self.generation}")

    def add_machines(self, count):
        """Add count machines and start them side by side; return them."""
        if len(self.machines) + count > MAX_MACHINES:
            raise ValueError(
                f"A rig runs at most {MAX_MACHINES} machines; it has {len(self.machines)} "
                f"and {count} more were asked for."
            )
        added = [self.add_machine(start=False) for _ in range(count)]
        pool = ThreadPoolExecutor(max(count, 1))
        try:
            list(pool.map(Machine.start, added))
        except BaseException:  # Ctrl-C too: the starts still going stop at once
            self._aborting.set()
            for machine in added:
                with contextlib.suppress(Exception):
                    machine.kill()
            raise
        finally:
            pool.shutdown()
            self._aborting.clear()
        return added

    def add_machine(self, start=True):
        """Add one machine (its namespace and link), started unless start is False."""
        if len(self.machines) >= MAX_MACHINES:
            raise ValueError(f"A rig runs at most {MAX_MACHINES} machines.")
        used = {machine.index for machine in self.machines}
        index = min(set(range(1, MAX_MACHINES + 1)) - used)
        machine = Machine(self, index, self.network.add_machine(index))
        self.machines.append(machine)
        return machine.start() if start else machine

    def machine_with_pid(self, pid):
        """The machine one of whose processes has this id (a pid an object reported), or
        None."""
        for machine in self.machines:
            if pid in machine.pids():
                return machine
        return None

    def remove_machine(self, machine):
        """Kill the machine, remove its namespace and link, and delete its disk."""
        try:
            machine.resume()
            machine.kill()
        finally:
            self.network.remove_machine(machine.index)
            shutil.rmtree(machine.directory, ignore_errors=True)
            self.machines.remove(machine)

    def clear(self):
        """Remove every machine, empty Redis, and give later machines a fresh replica
        prefix: what a test leaves, the next one does not see."""
        errors = []
        for machine in list(self.machines):
            try:
                self.remove_machine(machine)
            except Exception as error:  # remove the others all the same
                errors.append(error)
        self.generation += 1
        if self.redis is not None:
            import redis

            redis.Redis.from_url(self.redis.url).flushall()
            self._mark_redis_old()
        if errors:
            raise errors[0]

    def close(self):
        """Stop everything and remove the namespaces, links and directory; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for machine in list(self.machines):
                try:
                    self.remove_machine(machine)
                except Exception:  # remove the others, and the servers, all the same
                    logger.exception("Rig %s: removing %s failed", self.id, machine.name)
        finally:
            for server in (self.seaweed, self.redis):
                if server is not None:
                    server.stop()
            network = getattr(self, "network", None)
            if network is not None:
                network.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self):
        """Lines saying what runs where, for a terminal."""
        lines = [
            f"Network: {self.network.kind}"
            + (f" ({self.network.reason})" if self.network.kind == "loopback" else ""),
            f"Redis: {self.redis_url}",
        ]
        if self.seaweed is not None:
            lines.append(f"SeaweedFS S3: {self.seaweed.endpoint}, replicas in {self.replica_url}")
        for machine in self.machines:
            lines.append(f"{machine.name}: {machine.url}/ (disk {machine.directory})")
        return lines

    def prepare_database(self, machine, env):
        """Give machine a migrated database: a copy of the rig's, migrated once."""
        if machine.database.exists():
            return
        with self._template_lock:
            if not self._template.exists():
                result = subprocess.run(
                    [sys.executable, "manage.py", "migrate", "-v0"],
                    cwd=self.project_dir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=START_TIMEOUT,
                )
                if result.returncode != 0:
                    raise RuntimeError(f"migrate failed on {machine.name}: {result.stderr}")
                shutil.copyfile(machine.database, self._template)
                return
        machine.database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._template, machine.database)

    def _mark_redis_old(self):
        # A Redis of the rig's own holds no lease of an earlier process: no boot grace.
        import redis

        redis.Redis.from_url(self.redis.url).set("do:boot", repr(time.time() - 3600))
