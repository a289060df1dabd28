"""``manage.py runobjects``: a process that only hosts objects, for a cluster."""

import asyncio
import signal

from django.core.management.base import BaseCommand, CommandError

from durable_objects.conf import placement_class


class Command(BaseCommand):
    help = (
        "Host durable objects in this process, in a cluster (PLACEMENT 'redis'): it "
        "heartbeats, takes calls routed to it over the channel layer, and stops on "
        "SIGTERM or SIGINT, giving its leases back."
    )

    def handle(self, *args, **options):
        if not placement_class().distributed:
            raise CommandError(
                "runobjects is for a cluster: set DURABLE_OBJECTS['PLACEMENT'] = 'redis'. "
                "In the embedded mode the server process hosts the objects itself."
            )
        asyncio.run(self._serve())

    async def _serve(self):
        from durable_objects.runtime.lifecycle import get_host

        host = get_host()
        await host.placement.ready()
        self.stdout.write(f"Hosting objects as {host.placement.token}.")
        self.stdout.flush()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        host.stop_objects()
        await host.placement.leave()
        host.shutdown()
