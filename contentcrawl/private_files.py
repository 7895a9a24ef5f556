"""Owner-only files: what the project writes holds records, run history and token state.

New files and directories get their mode from the process umask (``PrivateFiles`` sets it
to ``077``), but a umask does nothing for a file that already exists: one a run before
this one left readable by all is appended to, or reopened, as it is. ``open_private`` and
``restrict`` take the group's and others' permissions off such a file.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700
# Group and other permission bits.
SHARED_BITS = 0o077


def restrict(path: str | Path) -> None:
    """Make an existing file or directory owner-only (0600 / 0700); a missing one is fine.

    A path another user owns cannot be changed: that is logged, not raised, as the data
    it holds is still readable to the one running the crawl.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & SHARED_BITS:
            os.chmod(path, mode & ~SHARED_BITS)
    except FileNotFoundError:
        return
    except PermissionError as error:
        logger.warning("Cannot make %s owner-only: %s", path, error.strerror)


def make_dir(path: str | Path) -> Path:
    """Create a directory and its missing parents owner-only (0700); return it.

    Directories that exist already are left as they are: a parent such as a home directory
    or ``/tmp`` is not the project's to change.
    """
    path = Path(path)
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it meanwhile
            continue
    return path


def _private_opener(name: str, flags: int) -> int:
    descriptor = os.open(name, flags, FILE_MODE)
    mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
    if mode & SHARED_BITS:
        os.fchmod(descriptor, mode & ~SHARED_BITS)
    return descriptor


def open_private(path: str | Path, mode: str = "r", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for a file created owner-only, or made so if it exists wider."""
    return open(path, mode, opener=_private_opener, **kwargs)
