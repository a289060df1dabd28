"""``manage.py import_object <label> <name-or-id> FILE``: replace one object's database."""

from django.core.management.base import BaseCommand, CommandError

from durable_objects.backups import import_object
from durable_objects.exceptions import UNREACHABLE, StorageLocked

from ..targets import EMBEDDED_SERVER_HINT, add_object_arguments, object_of


class Command(BaseCommand):
    help = (
        "Replace one object's database by a SQLite file (one export_object wrote), as an "
        "event of its live instance. The file is checked first; the instance is reset."
    )

    def add_arguments(self, parser):
        add_object_arguments(parser)
        parser.add_argument("file", help="The database file to import.")

    def handle(self, *args, label, object, as_name=False, file, **options):
        cls, object_id = object_of(label, object, as_name=as_name)
        try:
            result = import_object(cls, object_id, file)
        except StorageLocked as exc:
            raise CommandError(f"{exc} {EMBEDDED_SERVER_HINT}") from None
        except (*UNREACHABLE, OSError, LookupError, ValueError) as exc:
            raise CommandError(
                f"Import into {label} {object} refused: {exc} Its database is unchanged."
            ) from None
        alarm = result.alarm and result.alarm.get("scheduled_at")
        self.stdout.write(
            f"Imported {file} into {label} {object_id}: {result.summary()}"
            + (f", alarm at {alarm}" if alarm is not None else ", no alarm")
            + f" (from the database of {result.source_id})."
        )
