"""What a machine knows on its own disk: its identity, and each shard's replica generation.

A machine is a storage root: ``<root>/.machine-id`` holds a random name made the first
time a host uses the root, so a machine whose disk was wiped comes back as a new one.
Beside each shard, ``.<id>.sqlite3-generation`` holds the replica generation its copy
belongs to; the lineage in the placement says which generation is the newest, and a
local copy is current only if the two agree (and the lineage names this machine).
"""

import os
import secrets
import shutil
from pathlib import Path

MACHINE_FILE = ".machine-id"


def machine_id(root):
    """This storage root's machine name, made (atomically) on first use."""
    root = Path(root)
    path = root / MACHINE_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    candidate = root / f".machine-id.{os.getpid()}.{secrets.token_hex(4)}"
    candidate.write_text(secrets.token_hex(8) + "\n")
    try:
        os.link(candidate, path)  # fails if another process made one first
    except FileExistsError:
        pass
    finally:
        candidate.unlink(missing_ok=True)
    return path.read_text().strip()


def generation_path(path):
    path = Path(path)
    return path.with_name(f".{path.name}-generation")


def litestream_dir(path):
    """Litestream's own state for the database at path (it writes it beside the file)."""
    path = Path(path)
    return path.with_name(f".{path.name}-litestream")


def local_generation(path):
    """The replica generation the local copy at path belongs to, or None."""
    try:
        return int(generation_path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


def set_local_generation(path, generation):
    """Record (durably) that the local copy at path belongs to generation."""
    target = generation_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "w") as file:
        file.write(f"{generation}\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remove_local_copy(path):
    """Delete the shard at path with its WAL, its generation and Litestream's state."""
    path = Path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    generation_path(path).unlink(missing_ok=True)
    shutil.rmtree(litestream_dir(path), ignore_errors=True)
