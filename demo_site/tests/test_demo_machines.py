"""``./scripts/cluster --machines 3``: the demo site as three machines with their own disks."""

import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from demo_site.tests.demo_server import REPO, recv_json


@pytest.fixture(scope="module")
def machines_launcher():
    """``python -m demo_site.cluster --machines 3``, running: (process, its output so far)."""
    launcher = subprocess.Popen(
        [sys.executable, "-m", "demo_site.cluster", "--machines", "3"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        while not lines or "The demo cluster is up" not in lines[-1]:
            line = launcher.stdout.readline()
            assert line, f"the launcher exited: {''.join(lines)}"
            lines.append(line)
        yield launcher, "".join(lines)
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
            launcher.wait(60)


def machine_urls(output):
    return re.findall(r"^m\d: (http://[\d.]+:\d+)/ \(disk (\S+)\)$", output, re.MULTILINE)


async def test_three_machines_serve_the_demos_and_share_each_object(machines_launcher):
    import websockets

    _, output = machines_launcher
    machines = machine_urls(output)
    assert len(machines) == 3
    assert len({url for url, _ in machines}) == 3  # three addresses
    assert len({disk for _, disk in machines}) == 3  # three disks
    assert "SeaweedFS S3: http://" in output and "Redis: redis://" in output
    for url, _ in machines:
        with urllib.request.urlopen(f"{url}/", timeout=10) as response:
            assert response.status == 200
    (ann_base, _), _, (bob_base, _) = machines
    ann_url = ann_base.replace("http", "ws") + "/ws/chat/machines/?user=ann"
    bob_url = bob_base.replace("http", "ws") + "/ws/chat/machines/?user=bob"
    async with (
        websockets.connect(ann_url, origin=ann_base) as ann,
        websockets.connect(bob_url, origin=bob_base) as bob,
    ):
        assert (await recv_json(ann))["type"] == "history"
        assert (await recv_json(bob))["type"] == "history"
        await ann.send(json.dumps({"type": "message", "text": "from the first machine"}))
        got = await recv_json(bob)  # through the object, wherever it is held
        assert got["type"] == "message" and got["text"] == "from the first machine"
        assert got["user"] == "ann"


def test_stopping_the_launcher_removes_the_machines(machines_launcher):
    launcher, output = machines_launcher
    disks = [disk for _, disk in machine_urls(output)]
    namespaces = re.findall(r"^Network: (\w+)", output, re.MULTILINE)
    launcher.send_signal(signal.SIGTERM)
    rest, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, rest
    assert "Stopped: the machines, their namespaces and their disks are gone." in rest
    from pathlib import Path

    assert not any(Path(disk).exists() for disk in disks)
    if namespaces == ["netns"]:
        rig_id = re.search(r"do-rig-(\w{6})-", output).group(1)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        assert f"do{rig_id}m" not in listed.stdout
