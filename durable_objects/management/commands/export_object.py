"""``manage.py export_object <label> <name-or-id> -o FILE``: one object's database to a file."""

from django.core.management.base import BaseCommand, CommandError

from durable_objects.backups import export_object
from durable_objects.exceptions import UNREACHABLE, StorageLocked

from ..targets import EMBEDDED_SERVER_HINT, add_object_arguments, has_storage, object_of


class Command(BaseCommand):
    help = (
        "Write a consistent copy of one object's database to a SQLite file, taken as an "
        "event of its live instance wherever it lives (SQLite's backup API)."
    )

    def add_arguments(self, parser):
        add_object_arguments(parser)
        parser.add_argument(
            "-o", "--output", required=True, help="The file to write (replaced if it exists)."
        )

    def handle(self, *args, label, object, as_name=False, output, **options):
        cls, object_id = object_of(label, object, as_name=as_name)
        if not has_storage(cls, object_id):
            raise CommandError(
                f"{label} {object} has no storage (it is not in the catalog and has no shard "
                "here); there is nothing to export."
            )
        try:
            result = export_object(cls, object_id, output)
        except StorageLocked as exc:
            raise CommandError(f"{exc} {EMBEDDED_SERVER_HINT}") from None
        except (*UNREACHABLE, OSError, LookupError, ValueError) as exc:
            raise CommandError(f"Export of {label} {object} failed: {exc}") from None
        self.stdout.write(f"Exported {label} {object_id} ({result.size} bytes) to {result.path}.")
