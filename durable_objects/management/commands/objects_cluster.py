"""``manage.py objects_cluster``: the cluster's processes, and the leases each holds."""

import asyncio
import json
import time

from django.core.management.base import BaseCommand, CommandError

from durable_objects.conf import get_config, placement_class


class Command(BaseCommand):
    help = "Show the cluster's live processes (PLACEMENT 'redis'), their leases and role."

    def add_arguments(self, parser):
        parser.add_argument("--leases", action="store_true", help="list every lease too")

    def handle(self, *args, **options):
        config = get_config()
        if not placement_class(config).distributed:
            raise CommandError(
                f"PLACEMENT is {config['PLACEMENT']!r}: there is no cluster to show."
            )
        asyncio.run(self._show(config, options["leases"]))

    async def _show(self, config, list_leases):
        import redis.asyncio

        from durable_objects.placement.leases import BOOT, HOSTS, host_key
        from durable_objects.placement.redis import redis_url

        client = redis.asyncio.Redis.from_url(redis_url(config))
        try:
            now = time.time()
            beats = dict(await client.zrange(HOSTS, 0, -1, withscores=True))
            leases = {}
            async for key in client.scan_iter(match="do:lease:*", count=1000):
                holder = await client.get(key)
                if holder is not None:
                    leases.setdefault(holder.decode(), []).append(key.decode()[9:])
            boot = await client.get(BOOT)
            self.stdout.write(
                f"Redis lease data since: {time.ctime(float(boot)) if boot else 'unknown'}"
            )
            self.stdout.write(f"{'process':<24} {'pid':>8} {'role':<6} {'seen':>8} {'leases':>7}")
            for token, beat in sorted(beats.items(), key=lambda item: -item[1]):
                token = token.decode()
                info = await client.get(host_key(token))
                if info is None:
                    continue  # its heartbeat key expired: gone
                info = json.loads(info)
                role = "host" if info["hosts"] else "client"
                held = leases.get(token, [])
                self.stdout.write(
                    f"{token:<24} {info['pid']:>8} {role:<6} {now - beat:>7.1f}s {len(held):>7}"
                )
                if list_leases:
                    for hex_id in sorted(held):
                        self.stdout.write(f"    {hex_id}")
        finally:
            await client.aclose()
