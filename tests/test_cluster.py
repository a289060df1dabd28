"""The cluster: several processes, one live instance per ID (real Redis, real processes)."""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.servers import REPO, free_port, start_daphne, stop


@pytest.fixture
def cluster(tmp_path, redis_url):
    """Start daphne processes and runobjects hosts sharing one Redis and one storage root."""
    import redis

    redis.Redis.from_url(redis_url).flushall()
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.cluster_settings",
        "DO_TEST_REDIS_URL": redis_url,
        "DO_TEST_DB": str(tmp_path / "db.sqlite3"),
        "DO_TEST_STORAGE_ROOT": str(tmp_path / "objects"),
    }
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=full_env, check=True
    )
    processes = []

    class Cluster:
        def daphne(self):
            port = free_port()
            processes.append(start_daphne("tests.asgi:application", port, env))
            return f"http://127.0.0.1:{port}", processes[-1]

        def runobjects(self):
            process = subprocess.Popen(
                [sys.executable, "manage.py", "runobjects"],
                cwd=REPO,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            processes.append(process)
            assert "Hosting objects" in process.stdout.readline()
            return process

    yield Cluster()
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
        stop(process)


def get_json(url, timeout=15):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_500_increments_over_three_processes_count_500_in_one_instance(cluster):
    first, _ = cluster.daphne()
    second, _ = cluster.daphne()
    cluster.runobjects()
    bases = [first, second]

    def increment(i):
        return get_json(f"{bases[i % 2]}/tally/t500/increment/")

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(increment, range(500)))
    assert [status for status, _ in results] == [200] * 500
    values = sorted(body["value"] for _, body in results)
    assert values == list(range(1, 501))  # every increment acknowledged exactly once
    status, state = get_json(f"{second}/tally/t500/")
    assert status == 200 and state["value"] == 500
    assert len(state["constructed"]) == 1  # one activation, in one process
    assert len({body["pid"] for _, body in results}) == 1
