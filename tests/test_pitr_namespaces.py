"""Point-in-time recovery across a machine loss, each machine a network namespace with its
own disk (the rig of tests/test_machines_failures.py; issue 15, part 2).

A bookmark taken on the machine that is then lost, with its disk, restores on the
machine that took the object over; a restore to a time goes through any machine.
"""

import time
from urllib.parse import urlencode

from tests.test_machines_failures import holder_of, until_ok

pytest_plugins = ["tests.support.machines"]


def test_a_bookmark_from_a_lost_machine_restores_on_its_successor(rig, machines):
    first, second, third = machines(3)
    until_ok(f"{first.url}/archive/netpitr/add/?body=kept&colour=blue")
    bookmark = until_ok(f"{first.url}/archive/netpitr/bookmark/")["bookmark"]
    time.sleep(0.05)
    moment = time.time()
    time.sleep(0.05)
    until_ok(f"{first.url}/archive/netpitr/add/?body=lost&colour=red")
    holder, _ = holder_of(rig, f"{first.url}/archive/netpitr/")
    holder.kill()
    holder.wipe()  # the machine and its disk are gone: the next holder starts a generation
    survivor, other = [m for m in (first, second, third) if m is not holder]
    state = until_ok(f"{survivor.url}/archive/netpitr/add/?body=after")
    assert state["notes"] == ["kept", "lost", "after"]
    assert rig.machine_with_pid(state["pid"]) is not holder

    state = until_ok(f"{other.url}/archive/netpitr/restore/?{urlencode({'bookmark': bookmark})}")
    assert (state["notes"], state["entries"]) == (["kept"], {"colour": "blue"})

    until_ok(f"{survivor.url}/archive/netpitr/add/?body=again")
    state = until_ok(f"{other.url}/archive/netpitr/restore/?when={moment!r}")
    assert (state["notes"], state["entries"]) == (["kept"], {"colour": "blue"})
