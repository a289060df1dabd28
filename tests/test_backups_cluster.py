"""Export, import and copy in a cluster: the commands in one process, the object in another.

A ``runobjects`` process holds the objects; the commands and the calls that fill and
read them run in processes with ``CLUSTER_ROLE`` "client", so every step crosses to
the holder over Redis as ``backup`` events.
"""

import json
import subprocess
import sys
import time

import pytest

from tests.support.servers import REPO
from tests.test_cluster import make_cluster

LABEL = "tests.Archive"


@pytest.fixture
def cluster(tmp_path, redis_url):
    yield from make_cluster(tmp_path, redis_url)


def client_run(cluster, *args, check=True):
    env = {**cluster.env, "DO_TEST_ROLE": "client"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def in_client(cluster, code):
    """Run code in a client process (stub calls cross to the holder); its JSON output."""
    script = (
        "import json, time\n"
        "from asgiref.sync import async_to_sync\n"
        "from tests.support.objects_backup import Archive\n"
        "def call(name, method, *args, **kwargs):\n"
        "    stub = Archive.objects.get_by_name(name)\n"
        "    return async_to_sync(getattr(stub, method))(*args, **kwargs)\n"
        f"{code}\n"
    )
    output = client_run(cluster, "shell", "-c", script).stdout
    return json.loads(output.strip().splitlines()[-1])


def test_export_and_import_cross_to_the_holding_process(cluster, tmp_path):
    holder = cluster.runobjects()
    when = time.time() + 3600
    # 5 MiB of notes: the file crosses in two chunks of at most 4 MiB, both ways.
    filled = in_client(
        cluster,
        "for i in range(5):\n"
        "    call('c-source', 'add', 'x' * (1024 * 1024) + str(i), tag='t')\n"
        f"call('c-source', 'arm', {when!r})\n"
        "print(json.dumps(call('c-source', 'pid')))",
    )
    assert filled == holder.pid

    out = tmp_path / "exported.sqlite3"
    done = client_run(cluster, "export_object", LABEL, "c-source", "-o", str(out))
    assert "Exported tests.Archive" in done.stdout
    assert out.stat().st_size > 5 * 1024 * 1024

    in_client(cluster, "call('c-target', 'add', 'old'); print(json.dumps(None))")
    client_run(cluster, "import_object", LABEL, "c-target", str(out))
    after = in_client(
        cluster,
        "print(json.dumps([[n[-1] for n in call('c-target', 'notes')], "
        "call('c-target', 'entries'), call('c-target', 'alarm_time'), "
        "call('c-target', 'pid')]))",
    )
    assert after == [["0", "1", "2", "3", "4"], {"tag": "t"}, when, holder.pid]


def test_bad_import_in_a_cluster_is_refused_and_changes_nothing(cluster, tmp_path):
    cluster.runobjects()
    in_client(cluster, "call('c-victim', 'add', 'keep'); print(json.dumps(None))")
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x13" * 8192)  # the header, then garbage
    refused = client_run(cluster, "import_object", LABEL, "c-victim", str(bad), check=False)
    assert refused.returncode == 1
    assert "refused" in refused.stderr and "unchanged" in refused.stderr
    assert in_client(cluster, "print(json.dumps(call('c-victim', 'notes')))") == ["keep"]


def test_copy_between_objects_in_a_cluster(cluster):
    holder = cluster.runobjects()
    result = in_client(
        cluster,
        "call('c-a', 'add', 'copied', k=1)\n"
        "Archive.objects.copy(Archive.objects.id_from_name('c-a'), "
        "Archive.objects.id_from_name('c-b'))\n"
        "print(json.dumps([call('c-b', 'notes'), call('c-b', 'entries'), call('c-b', 'pid')]))",
    )
    assert result == [["copied"], {"k": 1}, holder.pid]
