"""A process that hosts objects from a storage root, for the subprocess tests.

Usage: python tests/object_process.py ROOT MODE
  write: increment the "crash" counter forever, printing each acknowledged value
  read:  print the counter's value and exit
  hold:  increment once, print "ready" and sleep (keeps the root's lock)
  try:   call once; print "ok VALUE" or "error TYPE MESSAGE"
"""

import asyncio
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main():
    root, mode = sys.argv[1], sys.argv[2]
    sys.path.insert(0, str(REPO))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.support.settings"
    os.environ["DO_TEST_STORAGE_ROOT"] = root
    import django

    django.setup()
    from tests.support.objects import Counter

    stub = Counter.objects.get_by_name("crash")

    async def run():
        if mode == "write":
            while True:
                print(await stub.increment(), flush=True)
        elif mode == "read":
            print(await stub.value(), flush=True)
        elif mode == "hold":
            await stub.increment()
            print("ready", flush=True)
            await asyncio.sleep(3600)
        elif mode == "try":
            try:
                value = await stub.value()
            except Exception as exc:
                print("error", type(exc).__name__, exc, flush=True)
            else:
                print("ok", value, flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
