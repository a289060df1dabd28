"""``manage.py restore_object <label> <name-or-id> --to TIME | --bookmark B``: point in time."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from durable_objects.backups import restore_object
from durable_objects.exceptions import UNREACHABLE, StorageLocked

from ..targets import EMBEDDED_SERVER_HINT, add_object_arguments, object_of


def parse_time(text):
    """An ISO 8601 time as an aware datetime (UTC if it names no zone); CommandError."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"--to {text!r} is not an ISO 8601 time: give one like 2026-12-02T18:30:00Z."
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Restore one object's database to an earlier point (a time, or a bookmark its "
        "code took), from its replica, as an event of its live instance wherever it "
        "lives. Needs REPLICATION; the instance is reset."
    )

    def add_arguments(self, parser):
        add_object_arguments(parser)
        point = parser.add_mutually_exclusive_group(required=True)
        point.add_argument(
            "--to", dest="when", help="An ISO 8601 time (UTC unless it names a zone)."
        )
        point.add_argument("--bookmark", help="A bookmark from ctx.storage.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Say what the restore would bring back; change nothing.",
        )

    def handle(self, *args, label, object, as_name=False, when, bookmark, dry_run, **options):
        cls, object_id = object_of(label, object, as_name=as_name)
        moment = parse_time(when) if when is not None else None
        try:
            result = restore_object(
                cls, object_id, bookmark=bookmark, when=moment, dry_run=dry_run
            )
        except StorageLocked as exc:
            raise CommandError(f"{exc} {EMBEDDED_SERVER_HINT}") from None
        except (*UNREACHABLE, OSError, LookupError, ValueError) as exc:
            raise CommandError(
                f"Restore of {label} {object} refused: {exc} Its database is unchanged."
            ) from None
        alarm = result.alarm and result.alarm.get("scheduled_at")
        held = (
            f"{result.summary()}"
            + (f", alarm at {alarm}" if alarm is not None else ", no alarm")
            + f" (generation {result.generation}, transaction {result.txid})"
        )
        if dry_run:
            self.stdout.write(f"Dry run: restoring {label} {object_id} would bring back {held}.")
        else:
            self.stdout.write(f"Restored {label} {object_id}: {held}. Bookmark: {result.bookmark}")
