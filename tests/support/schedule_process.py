"""A server-like process for the restart test: ``schedule_process.py <root> set|check``.

``set`` makes a schedule due in four seconds, one due in an hour, a cron schedule every
second and a queue of 50 tasks held back by a task that sleeps, prints "set" and waits to be
killed. ``check`` starts a host (its loop in the main thread, as a server's), prints when it
started, and waits until the delayed schedule ran, the queue drained and the cron schedule
ran after the restart; then it prints what ran.
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

from durable_objects.testing import run_in_durable_object  # noqa: E402
from tests.support.objects_schedules import Scheduled  # noqa: E402


async def main(mode):
    from durable_objects.runtime.lifecycle import get_host

    get_host()  # a server's host: bound to this main-thread loop
    stub = Scheduled.objects.get_by_name("restarted")
    if mode == "set":
        # One event per commit here. With group commit, a cron run in the same batch as
        # fill() can pump the slow task into that batch, and the batch's replies (fill's
        # among them) wait for its 60 s sleep: a known limit of the output gate (a slow
        # event holds the replies of the events batched before it), not what this test is
        # about.
        from django.conf import settings

        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "GROUP_COMMIT_MAX_EVENTS": 1}
        await stub.configure(slow=60)
        await stub.plan(4.0, "record", "delayed")
        await stub.plan(3600, "record", "later", id="later")
        await stub.plan("* * * * * *", "record", "cron", id="cron")

        def fill(obj, ctx):
            ctx.enqueue("flaky", "slow")  # holds the queue until the process is killed
            for n in range(50):
                ctx.enqueue("record", f"t{n}")

        await run_in_durable_object(stub, fill)
        print("set", flush=True)
        await asyncio.sleep(3600)
        return
    started = time.time()
    await stub.configure(slow=0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cron = [row["scheduled"] for row in await stub.runs("cron")]
        queue = [row["tag"] for row in await stub.runs() if row["tag"].startswith("t")]
        if await stub.runs("delayed") and len(queue) == 50 and max(cron) > started + 1:
            break
        await asyncio.sleep(0.1)
    later = await stub.schedule_of("later")
    print("started", started)
    print("delayed", len(await stub.runs("delayed")))
    print("later", "pending" if later and not await stub.runs("later") else "wrong")
    print("queue", " ".join(queue))
    print("cron", " ".join(repr(t) for t in cron))


asyncio.run(main(sys.argv[2]))
