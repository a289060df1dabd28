"""The network of a machines rig: a namespace per machine on a bridge, or loopback addresses.

``NamespaceNetwork`` gives each machine a network namespace (``ip netns``) joined to a
bridge on the host by a veth pair, with an address 10.x.y.(10 + index)/24; the bridge
holds 10.x.y.1, where the rig's Redis and SeaweedFS listen. Setting the host's end of a
machine's veth pair down cuts the machine off (a partition). It needs root and iproute2.

``LoopbackNetwork`` is the fallback: machines are addresses 127.0.0.(10 + index) on the
host's loopback, with no partitions. ``open_network()`` picks the first that works.

Every name a rig creates carries its id, and a manifest in
``<tempdir>/durable-objects-rigs/<id>.json`` names them, so ``sweep_stale_rigs()`` can
remove what a rig whose process died (SIGKILL, a crash) left behind.
"""

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import tempfile
from ipaddress import IPv4Network
from pathlib import Path

logger = logging.getLogger("durable_objects.testing.machines")

MANIFESTS = Path(tempfile.gettempdir()) / "durable-objects-rigs"
ROUTE_TYPES = ("local", "broadcast", "unicast", "multicast", "anycast", "blackhole", "throw")
COMMAND_TIMEOUT = 10  # seconds for one `ip` command; it never takes more than a fraction


class NetworkUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no iproute2, no CAP_SYS_ADMIN)."""


def ip(*arguments, check=True):
    """Run ``ip arguments``; the completed process (RuntimeError naming it if check fails)."""
    result = subprocess.run(
        ["ip", *arguments], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(arguments)}` failed: {result.stderr.strip()}")
    return result


def netns_unavailable_reason():
    """Why ``ip netns`` cannot be used here, or None if it can (a namespace is made and
    removed to find out)."""
    if shutil.which("ip") is None:
        return "no `ip` command (install iproute2)"
    if os.geteuid() != 0:
        return "not root (ip netns needs CAP_SYS_ADMIN)"
    probe = f"doprobe{os.getpid()}"
    result = ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    result = ip("link", "add", f"{probe}b", "type", "bridge", check=False)
    if result.returncode != 0:
        return f"`ip link add ... type bridge` failed: {result.stderr.strip()}"
    ip("link", "del", f"{probe}b", check=False)
    return None


def open_network(rig_id, *, prefer_namespaces=True):
    """A NamespaceNetwork if namespaces can be made, else a LoopbackNetwork (logged)."""
    reason = netns_unavailable_reason() if prefer_namespaces else "namespaces not asked for"
    if reason is None:
        return NamespaceNetwork(rig_id)
    logger.warning(
        "Machines rig %s: no network namespaces (%s); each machine gets its own storage root "
        "and a loopback address 127.0.0.x instead, and link_down()/link_up() are not "
        "available.",
        rig_id,
        reason,
    )
    return LoopbackNetwork(rig_id, reason)


class LoopbackNetwork:
    """Machines on loopback addresses 127.0.0.(10 + index) of the host, no namespaces."""

    kind = "loopback"
    supports_partitions = False

    def __init__(self, rig_id, reason=""):
        self.rig_id = rig_id
        self.reason = reason
        self.host_address = "127.0.0.1"

    def add_machine(self, index):
        """Return the address of machine index."""
        return f"127.0.0.{10 + index}"

    def command(self, index, argv):
        """argv as run on machine index: as it is, on the host."""
        return list(argv)

    def pids(self, index):
        """None: the processes of a loopback machine are those its Machine started."""
        return None

    def link_down(self, index):
        raise NotImplementedError(
            f"link_down() needs network namespaces, which are unavailable here: {self.reason}."
        )

    link_up = link_down

    def remove_machine(self, index):
        pass

    def close(self):
        pass


class NamespaceNetwork:
    """A bridge on the host, and one network namespace per machine joined to it."""

    kind = "netns"
    supports_partitions = True

    def __init__(self, rig_id):
        self.rig_id = rig_id
        self.bridge = f"dob{rig_id}"
        self.machines = {}  # index -> namespace name
        self.subnet = _free_subnet()
        hosts = list(self.subnet.hosts())
        self.host_address = str(hosts[0])
        self._addresses = hosts
        self._write_manifest()
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.host_address}/{self.subnet.prefixlen}", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
        except Exception:
            self.close()
            raise

    def namespace(self, index):
        return f"do{self.rig_id}m{index}"

    def host_link(self, index):
        """The host's end of machine index's veth pair (what link_down() sets down)."""
        return f"do{self.rig_id}h{index}"

    def add_machine(self, index):
        """Create machine index's namespace and link; return its address."""
        namespace, host_link, peer = self.namespace(index), self.host_link(index), f"eth{index}"
        address = str(self._addresses[9 + index])
        self.machines[index] = namespace
        self._write_manifest()
        ip("netns", "add", namespace)
        ip("link", "add", host_link, "type", "veth", "peer", "name", f"do{self.rig_id}p{index}")
        ip("link", "set", f"do{self.rig_id}p{index}", "netns", namespace, "name", peer)
        ip("link", "set", host_link, "master", self.bridge, "up")
        ip("-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", peer)
        ip("-n", namespace, "link", "set", peer, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        return address

    def command(self, index, argv):
        """argv as run inside machine index's namespace."""
        return ["ip", "netns", "exec", self.namespace(index), *argv]

    def pids(self, index):
        """The ids of every process in machine index's namespace."""
        result = ip("netns", "pids", self.namespace(index), check=False)
        return [int(line) for line in result.stdout.split()] if result.returncode == 0 else []

    def link_down(self, index):
        ip("link", "set", self.host_link(index), "down")

    def link_up(self, index):
        ip("link", "set", self.host_link(index), "up")

    def remove_machine(self, index):
        """Kill what runs in machine index's namespace, then remove it and its link."""
        namespace = self.machines.pop(index, None)
        if namespace is None:
            return
        _remove_namespace(namespace)
        ip("link", "del", self.host_link(index), check=False)
        self._write_manifest()

    def close(self):
        """Remove every namespace, link and the bridge; forget the manifest."""
        for index in list(self.machines):
            self.remove_machine(index)
        ip("link", "del", self.bridge, check=False)
        _manifest_path(self.rig_id).unlink(missing_ok=True)

    def _write_manifest(self):
        MANIFESTS.mkdir(parents=True, exist_ok=True)
        manifest = {
            "pid": os.getpid(),
            "bridge": self.bridge,
            "namespaces": sorted(self.machines.values()),
        }
        _manifest_path(self.rig_id).write_text(json.dumps(manifest))


def sweep_stale_rigs():
    """Remove the namespaces and bridges of rigs whose process is gone; return their ids."""
    swept = []
    for path in sorted(MANIFESTS.glob("*.json")) if MANIFESTS.is_dir() else []:
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _alive(manifest.get("pid")):
            continue
        for namespace in manifest.get("namespaces", []):
            _remove_namespace(namespace)
        if manifest.get("bridge"):
            ip("link", "del", manifest["bridge"], check=False)
        path.unlink(missing_ok=True)
        swept.append(path.stem)
    if swept:
        logger.warning("Removed what dead machines rigs left behind: %s.", ", ".join(swept))
    return swept


def new_rig_id():
    """Six hex digits: short enough for interface names (15 bytes at most)."""
    return os.urandom(3).hex()


def _remove_namespace(namespace):
    result = ip("netns", "pids", namespace, check=False)
    for pid in result.stdout.split() if result.returncode == 0 else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "del", namespace, check=False)


def _manifest_path(rig_id):
    return MANIFESTS / f"{rig_id}.json"


def _alive(pid):
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_subnet():
    """A 10.x.y.0/24 that no address or route of the host overlaps."""
    taken = []
    for line in ip("-4", "route", "show", "table", "all", check=False).stdout.splitlines():
        words = line.split()
        if words and words[0] in ROUTE_TYPES:
            words = words[1:]
        if not words or not words[0][:1].isdigit():  # "default" overlaps all: not a subnet
            continue
        try:
            taken.append(IPv4Network(words[0] if "/" in words[0] else f"{words[0]}/32", False))
        except ValueError:
            continue
    for _ in range(200):
        candidate = IPv4Network(f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(network) for network in taken):
            return candidate
    raise NetworkUnavailable("no free 10.x.y.0/24 subnet for the rig's bridge")
