"""Cron expressions for ``ctx.schedule()``: parsing, time zones and the next run.

Cron strings are read by cronsim (https://github.com/cuu508/cronsim), chosen over croniter
because it is small and pure Python with no dependencies, follows Debian cron's rules
(day-of-month OR day-of-week, daylight-saving gaps and repeats), and refuses a bad field
with an error that names it ("Bad minute"). Five fields, as cron has; a sixth in front
is read as seconds (``"*/10 * * * * *"``: every ten seconds), as cronsim allows.

The missed-run rule (docs/topics/schedules.md): the next run of a cron schedule is the
first time the expression matches after the later of its last scheduled time and now, so
runs missed while nothing could deliver them (the process down, the object's host lost)
collapse into one run on recovery.
"""

import zoneinfo
from datetime import UTC, datetime, tzinfo

FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")


def cron_library():
    from cronsim import CronSim, CronSimError

    return CronSim, CronSimError


def time_zone(tz):
    """A tzinfo for tz: None (Django's TIME_ZONE), a zone name, or a tzinfo."""
    if tz is None:
        from django.conf import settings

        tz = getattr(settings, "TIME_ZONE", None) or "UTC"
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise TypeError(f"tz must be a time zone name or a tzinfo, not {type(tz).__name__}.")
    if tz.upper() == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"Unknown time zone {tz!r}; use an IANA name such as 'Europe/Paris' or 'UTC'."
        ) from None


def zone_name(tz):
    """The name stored for a tzinfo (its IANA key), so a schedule can be read back."""
    if tz is UTC:
        return "UTC"
    key = getattr(tz, "key", None)
    if key is None:
        raise ValueError(
            f"The time zone {tz!r} has no IANA name to store; pass a zoneinfo.ZoneInfo or a "
            "name such as 'Europe/Paris'."
        )
    return key


def check_cron(expression):
    """Refuse an expression cronsim cannot read, with a ValueError naming the field."""
    CronSim, CronSimError = cron_library()
    if not isinstance(expression, str):
        raise TypeError(f"A cron expression is a str, not {type(expression).__name__}.")
    parts = expression.split()
    if len(parts) not in (5, 6):
        raise ValueError(
            f"Cron expression {expression!r} has {len(parts)} fields; it needs five "
            "(minute hour day-of-month month day-of-week), or six with seconds first."
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        names = FIELDS if len(parts) == 6 else FIELDS[1:]
        field = str(exc).removeprefix("Bad ").strip()
        position = next((n for n, name in enumerate(names) if name.startswith(field)), None)
        value = f" ({parts[position]!r})" if position is not None else ""
        raise ValueError(
            f"Cron expression {expression!r}: bad {field} field{value}. Fields are "
            f"{' '.join(names)}."
        ) from None


def next_run(expression, tz, after):
    """The first time (UNIX seconds) after ``after`` (UNIX seconds) the expression matches."""
    CronSim, _ = cron_library()
    zone = time_zone(tz)
    start = datetime.fromtimestamp(after, zone)
    try:
        return next(iter(CronSim(expression, start))).timestamp()
    except StopIteration:  # cronsim stops after about fifty years without a match
        return None
