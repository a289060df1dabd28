"""Run the demo site as a cluster on this machine: ``python -m demo_site.cluster``.

Two daphne processes serve the site (ports 8001 and 8002 by default), a ``runobjects``
process hosts objects and ``rqworker --with-scheduler`` delivers alarms. All share one
Redis (REDIS_URL, or a private redis-server started here) and one storage root. Ctrl-C
stops everything.
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
    options = parser.parse_args()
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


def _stop(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
