"""Shard files on disk: where one lives, finding them all, their size, making and reading one.

One file per object, ``<root>/<app_label>/<ClassName>/<id[:2]>/<id>.sqlite3``.
"""

import os
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


def create_file(path, data, *, sync_directory=True):
    """Write data as the new file at path, durably; False (nothing written) if it exists.

    The bytes go to a temporary name in the same directory (``.<name>.<pid>.new``, which
    ``shard_files`` does not see) and are synced, then linked to path, which never
    replaces a file there, so no crash leaves a partial file under a shard's name. The
    directory is synced after the link (unless sync_directory is False: the caller's next
    durable write syncs it), and so is the parent of each directory this call made, so
    the file's name is on disk too before anything is written through it.
    """
    made = _make_directories(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)  # a failed write (a full disk, say) leaves nothing behind
    directories = [made_dir.parent for made_dir in made]
    if sync_directory:
        directories.insert(0, path.parent)
    for directory in directories:
        fsync_directory(directory)
    return True


def _make_directories(directory):
    """Make directory and its missing parents; return the ones made, deepest first."""
    try:
        os.mkdir(directory)
    except FileExistsError:
        return []
    except FileNotFoundError:
        made = _make_directories(directory.parent)
        try:
            os.mkdir(directory)
        except FileExistsError:
            return made
        return [directory, *made]
    return [directory]


def fsync_directory(directory):
    """Make the entries of directory (a new file's name) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
