"""A server-like process for the restart test: ``alarm_process.py <root> set|check``.

``set`` arms three alarms due in a second and one in an hour, prints "armed" and waits
to be killed. ``check`` starts a host (its loop in the main thread, as a server's) and
waits for the three to fire, re-armed from the shards alone (the catalog was never written).
"""

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.support.settings"
os.environ["DO_TEST_STORAGE_ROOT"] = sys.argv[1]

import django

django.setup()

from tests.support.objects_alarms import Alarmed  # noqa: E402

NAMES = ["r1", "r2", "r3"]


async def main(mode):
    from durable_objects.runtime.lifecycle import get_host

    get_host()  # a server's host: bound to this main-thread loop
    if mode == "set":
        due = time.time() + 1.0
        for name in NAMES:
            await Alarmed.objects.get_by_name(name).arm(due)
        await Alarmed.objects.get_by_name("later").arm(time.time() + 3600)
        print("armed", flush=True)
        await asyncio.sleep(3600)
        return
    deadline = time.monotonic() + 30
    while True:
        fired = [len(await Alarmed.objects.get_by_name(n).fired()) for n in NAMES]
        if all(fired) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    later = Alarmed.objects.get_by_name("later")
    print(
        "fired",
        sum(fired),
        "not-yet",
        int(await later.alarm_time() is not None and not await later.fired()),
    )


asyncio.run(main(sys.argv[2]))
