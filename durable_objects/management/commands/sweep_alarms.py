"""``manage.py sweep_alarms``: find every pending alarm and make sure it will be delivered."""

from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string

from durable_objects.conf import alarm_backend_path


class Command(BaseCommand):
    help = (
        "Find every pending alarm (the catalog, and the shards written since it was flushed; "
        "--all-shards reads every shard), correct the catalog's alarm times, and with a backend "
        "that supports sweeps (RQ) re-create the job of each alarm that has none (after Redis "
        "lost its data, or a worker died mid-job). With the local backend the server re-arms "
        "them at start."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--all-shards", action="store_true", help="read the alarm row of every shard"
        )
        parser.add_argument(
            "--list", action="store_true", help="print each pending alarm (label, ID, due)"
        )

    def handle(self, *args, **options):
        from datetime import UTC, datetime

        from durable_objects.alarms.sweep import pending_alarms

        alarms = pending_alarms(
            scan="all" if options["all_shards"] else "changed", fix_catalog=True
        )
        if options["list"]:
            for (label, hex_id), due in sorted(alarms.items(), key=lambda item: item[1]):
                when = datetime.fromtimestamp(due, UTC).isoformat(timespec="milliseconds")
                self.stdout.write(f"{label} {hex_id} {when}")
        backend = import_string(alarm_backend_path())  # a BaseAlarmBackend: check E016
        if backend.supports_sweep:
            created = backend.sweep(alarms)
            self.stdout.write(
                f"{len(alarms)} pending alarms; {created} jobs re-created, the rest were live."
            )
        else:
            self.stdout.write(
                f"{len(alarms)} pending alarms; {backend.__name__} re-arms them when the "
                "server starts."
            )
