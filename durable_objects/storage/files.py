"""Shard files on disk: where one lives, finding them all, their size, reading one.

One file per object, ``<root>/<app_label>/<ClassName>/<id[:2]>/<id>.sqlite3``.
"""

import sqlite3
from contextlib import suppress
from typing import NamedTuple
from urllib.parse import quote


class ShardFile(NamedTuple):
    """One shard file found under the storage root."""

    label: str
    hex_id: str
    path: object  # pathlib.Path


def shard_path(root, label, hex_id):
    """The path of the shard of the object (label, hex_id) under root."""
    app_label, class_name = label.split(".")
    return root / app_label / class_name / hex_id[:2] / f"{hex_id}.sqlite3"


def shard_files(root, label=None):
    """Yield a ShardFile for each shard under root (of the class label only, if given)."""
    if label is None:
        pattern = "*/*/*/*.sqlite3"
    else:
        app_label, class_name = label.split(".")
        pattern = f"{app_label}/{class_name}/*/*.sqlite3"
    for path in root.glob(pattern):
        yield ShardFile(f"{path.parts[-4]}.{path.parts[-3]}", path.stem, path)


def open_read_only(path, *, timeout=5.0):
    """A connection to the shard file at path that SQLite refuses to write through.

    ``?mode=ro`` also refuses to create a missing file (``sqlite3.OperationalError``).
    """
    return sqlite3.connect(
        f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None, timeout=timeout
    )


def file_size(path):
    """Bytes on disk of a shard: the database file plus its write-ahead log."""
    total = 0
    for suffix in ("", "-wal"):
        with suppress(FileNotFoundError):
            total += path.with_name(path.name + suffix).stat().st_size
    return total
