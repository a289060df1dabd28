"""Run the demo site as a cluster on this machine: ``python -m demo_site.cluster``.

Two daphne processes serve the site (ports 8001 and 8002 by default), a ``runobjects``
process hosts objects and ``rqworker --with-scheduler`` delivers alarms. All share one
Redis (REDIS_URL, or a private redis-server started here) and one storage root. Ctrl-C
stops everything.

With ``--machines N`` the site runs as N machines instead (durable_objects/testing/
machines.py): each a network namespace (or, without root, a loopback address) with its
own storage root, database and Litestream daemon, and its daphne, runobjects and
rqworker, plus a Redis and a SeaweedFS of their own for all of them.
docs/howto/run-a-cluster.md.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from durable_objects.alarms.rq import WORKER_COMMAND
from durable_objects.testing.servers import RedisServer, start_daphne

REPO = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(prog="python -m demo_site.cluster")
    parser.add_argument("--ports", type=int, nargs=2, default=[8001, 8002])
    parser.add_argument(
        "--machines",
        type=int,
        help="run the site as this many machines, each with its own disk, replicated to "
        "a SeaweedFS of their own (network namespaces when run as root)",
    )
    parser.add_argument(
        "--durability",
        choices=["replicated", "local"],
        default="replicated",
        help="with --machines: acknowledge writes once in the replica (replicated, the "
        "default) or once on the machine's disk (local)",
    )
    options = parser.parse_args()
    if options.machines is not None:
        run_machines(parser, options.machines, options.durability)
        return
    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        server = RedisServer(Path(tempfile.mkdtemp(prefix="demo-redis-")))
        url = server.url
        # A Redis of our own holds no lease of any earlier process: no grace needed.
        import redis

        redis.Redis.from_url(url).set("do:boot", repr(time.time() - 3600))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_site.settings",
        "DEMO_CLUSTER_REDIS_URL": url,
        "PYTHONPATH": str(REPO),
    }
    processes = []
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True
        )
        for port in options.ports:
            processes.append(start_daphne("demo_site.asgi:application", port, env, cwd=REPO))
        processes.append(
            subprocess.Popen([sys.executable, "manage.py", "runobjects"], cwd=REPO, env=env)
        )
        processes.append(  # delivers the alarms (the trial demo's)
            subprocess.Popen(
                [sys.executable, "manage.py", *WORKER_COMMAND],
                cwd=REPO,
                env=env,
            )
        )
        sites = " and ".join(f"http://127.0.0.1:{port}/" for port in options.ports)
        print(
            f"The demo cluster is up: {sites}, one runobjects host, an rqworker for "
            f"alarms, Redis at {url}. Ctrl-C stops it.",
            flush=True,
        )
        signal.signal(signal.SIGTERM, _stop)
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        print("A process of the cluster exited; stopping the others.", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        if server is not None:
            server.stop()


def machine_environment(machine, durability="replicated"):
    """The variables demo_site/settings.py reads, for one machine of a rig."""
    rig = machine.rig
    env = {
        "DEMO_VAR_DIR": str(machine.directory),
        "DEMO_DATABASE": str(machine.database),
        "DEMO_STORAGE_ROOT": str(machine.storage_root),
        "DEMO_CLUSTER_REDIS_URL": rig.redis_url,
        "DEMO_ALLOWED_HOSTS": machine.address,
    }
    if rig.replica_url:
        env["DEMO_REPLICA_URL"] = rig.replica_url
        env["DEMO_LITESTREAM_SOCKET"] = str(machine.litestream_socket)
        env["DEMO_DURABILITY"] = durability
    return env


def run_machines(parser, count, durability):
    """Run the demo as count machines until Ctrl-C or SIGTERM; remove them after."""
    import functools
    import logging

    from durable_objects.testing.machines import MAX_MACHINES, Rig

    if not 1 <= count <= MAX_MACHINES:
        parser.error(f"--machines takes 1 to {MAX_MACHINES}, not {count}")
    logging.basicConfig(format="%(message)s", level=logging.INFO)
    if os.environ.get("REDIS_URL"):
        print("REDIS_URL is ignored with --machines: the machines share a Redis of their own.")
    print(f"Starting {count} machines, SeaweedFS and Redis...", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    rig = None
    try:
        rig = Rig(
            project_dir=REPO,
            settings="demo_site.settings",
            application="demo_site.asgi:application",
            environment=functools.partial(machine_environment, durability=durability),
            machines=count,
            rqworker=True,
        )
        print("\n".join(rig.describe()))
        sites = ", ".join(f"{machine.name} {machine.url}/" for machine in rig.machines)
        print(
            f"The demo cluster is up as {count} machines ({durability} durability): "
            f"{sites}. Logs in {rig.directory / 'logs'}. Ctrl-C stops it.",
            flush=True,
        )
        while not (exited := _exited(rig)):
            time.sleep(0.5)
        print(f"A process of {exited[0].name} exited; stopping the others.", flush=True)
        print(exited[0].logs(), flush=True)
    except KeyboardInterrupt:
        pass
    except RuntimeError as error:
        sys.exit(f"The machines did not start: {error}")
    finally:
        if rig is not None:
            rig.close()
    print("Stopped: the machines, their namespaces and their disks are gone.", flush=True)


def _exited(rig):
    """The machines with a process that exited."""
    return [
        machine
        for machine in rig.machines
        if any(process.poll() is not None for process in machine.processes.values())
    ]


def _stop(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
