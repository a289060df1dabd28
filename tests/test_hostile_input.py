"""Hostile and careless input (issue 13): each class of input is refused clearly."""

from pathlib import Path

import pytest
from django.db import connection

from durable_objects.models import ObjectRecord
from durable_objects.runtime import catalog as catalog_module
from durable_objects.runtime.catalog import MAX_ROW_FAILURES, CatalogWriter
from tests.support.objects import Counter


@pytest.mark.parametrize("name", ["a\x00b", "line\nbreak", "tab\there", "bell\x07", "\x7f"])
def test_names_with_control_characters_are_refused(name):
    with pytest.raises(ValueError, match="control characters") as info:
        Counter.objects.get_by_name(name)
    assert f"U+{ord(next(c for c in name if not c.isprintable())):04X}" in str(info.value)


@pytest.mark.parametrize("name", ["café", "漢字", "with space", "emoji 🎉"])
def test_printable_unicode_names_are_accepted(name):
    assert Counter.objects.get_by_name(name).id.name == name


def _record(object_id, name):
    return {
        "label": "tests.Counter",
        "object_id": object_id,
        "name": name,
        "path": Path("/nonexistent/shard.sqlite3"),
        "created_at": 0.0,
        "last_active_at": 0.0,
        "alarm_due": catalog_module.UNKNOWN,
        "socket_count": None,
    }


@pytest.mark.django_db(transaction=True)
def test_a_catalog_row_the_database_refuses_is_set_aside_without_blocking_others():
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON durable_objects_objectrecord "
            "WHEN NEW.name = 'refused' BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        )
    try:
        writer = CatalogWriter(host=None)
        bad, good = ("b" * 64, "refused"), ("a" * 64, "fine")
        writer.pending = {("tests.Counter", h): _record(h, n) for h, n in (bad, good)}
        writer._write(writer._take(), own_thread=False)
        # The good row is written at the first flush; the bad one waits for a retry.
        assert list(ObjectRecord.objects.values_list("name", flat=True)) == ["fine"]
        for _ in range(MAX_ROW_FAILURES - 1):
            assert ("tests.Counter", bad[0]) in writer.pending
            writer.pending[("tests.Counter", "c" * 64)] = _record("c" * 64, "later")
            writer._write(writer._take(), own_thread=False)
        assert writer.pending == {}
        assert list(writer.set_aside) == [("tests.Counter", bad[0])]
        assert sorted(ObjectRecord.objects.values_list("name", flat=True)) == ["fine", "later"]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_bad")


@pytest.mark.django_db(transaction=True)
def test_catalog_rows_are_kept_while_the_table_is_missing():
    writer = CatalogWriter(host=None)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE durable_objects_objectrecord RENAME TO moved_away")
    try:
        writer.pending = {("tests.Counter", "d" * 64): _record("d" * 64, "kept")}
        for _ in range(MAX_ROW_FAILURES + 1):
            writer._write(writer._take(), own_thread=False)
        assert list(writer.pending) == [("tests.Counter", "d" * 64)]
        assert writer.set_aside == {}
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE moved_away RENAME TO durable_objects_objectrecord")


def test_demo_patterns_refuse_a_trailing_newline():
    from demo_site.board.strokes import clean_stroke
    from demo_site.protocol import Refused, is_valid_name

    assert is_valid_name("general") and not is_valid_name("general\n")
    stroke = {"colour": "#00ff00\n", "width": 2, "points": [[0, 0], [1, 1]]}
    with pytest.raises(Refused, match="colour"):
        clean_stroke(stroke)
