"""Point-in-time recovery in a cluster of machines (issue 15, part 2).

Three daphne hosts, each with its own storage root and Litestream daemon, one Redis and
one SeaweedFS (the rig of tests/test_replication_machines.py). A restore runs in the
object's live instance wherever it lives; a bookmark names its replica generation, so
one taken before a failover restores after it.
"""

import time
from urllib.parse import urlencode

from tests import test_replication_machines as rig
from tests.test_cluster import get_json

machines = rig.machines  # the rig's fixture
until_ok = rig.until_ok

pytest_plugins = ["tests.support.replication"]


def ok(url):
    status, body = get_json(url, timeout=60)
    assert status == 200, body
    return body


def test_a_restore_to_a_time_between_two_writes_holds_the_earlier_state_everywhere(machines):
    first, second, third = machines(3)
    ok(f"{first.url}/archive/spot/add/?body=first&colour=blue")
    time.sleep(0.05)
    moment = time.time()
    time.sleep(0.05)
    state = ok(f"{second.url}/archive/spot/add/?body=second&colour=red")
    assert state["notes"] == ["first", "second"] and state["pid"] == first.process.pid

    restored = ok(f"{third.url}/archive/spot/restore/?when={moment!r}")  # from elsewhere

    assert restored["notes"] == ["first"] and restored["entries"] == {"colour": "blue"}
    assert restored["pid"] == first.process.pid  # restored in the live instance
    for machine in (first, second, third):
        state = ok(f"{machine.url}/archive/spot/")
        assert (state["notes"], state["entries"]) == (["first"], {"colour": "blue"})


def test_a_bookmark_taken_before_a_failover_restores_after_it(machines):
    first, second, _ = machines(3)
    ok(f"{first.url}/archive/moved/add/?body=kept&colour=blue")
    bookmark = ok(f"{first.url}/archive/moved/bookmark/")["bookmark"]
    ok(f"{first.url}/archive/moved/add/?body=lost&colour=red")
    first.kill(wipe=True)  # the machine and its disk are gone: generation 2 begins
    state, _ = until_ok(f"{second.url}/archive/moved/add/?body=after")
    assert state["notes"] == ["kept", "lost", "after"] and state["pid"] == second.process.pid

    query = urlencode({"bookmark": bookmark, "inside": "1"})
    state = ok(f"{second.url}/archive/moved/restore/?{query}")  # from inside the object

    assert (state["notes"], state["entries"]) == (["kept"], {"colour": "blue"})
    ok(f"{second.url}/archive/moved/add/?body=again")
    assert ok(f"{second.url}/archive/moved/")["notes"] == ["kept", "again"]


def test_the_restored_state_survives_the_next_failover(machines):
    first, second, third = machines(3)
    ok(f"{first.url}/archive/twice/add/?body=one")
    bookmark = ok(f"{first.url}/archive/twice/bookmark/")["bookmark"]
    ok(f"{first.url}/archive/twice/add/?body=two")
    ok(f"{second.url}/archive/twice/restore/?{urlencode({'bookmark': bookmark})}")
    # No write after the restore: the new generation's replica must hold it already.
    first.kill(wipe=True)
    state, _ = until_ok(f"{third.url}/archive/twice/")
    assert state["notes"] == ["one"] and state["pid"] != first.process.pid


def test_another_objects_bookmark_is_refused_in_the_cluster(machines):
    first, second, _ = machines(3)
    ok(f"{first.url}/archive/theirs/add/?body=theirs")
    theirs = ok(f"{first.url}/archive/theirs/bookmark/")["bookmark"]
    ok(f"{second.url}/archive/mine/add/?body=mine")
    status, body = get_json(
        f"{first.url}/archive/mine/restore/?{urlencode({'bookmark': theirs})}", timeout=60
    )
    assert status == 400 and "another object" in body["message"], body
    assert ok(f"{second.url}/archive/mine/")["notes"] == ["mine"]
