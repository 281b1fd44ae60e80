"""DATA_DIR kept private: what the server keeps there (secret key, Redis, PostgreSQL, metrics) is its user's alone.

Folders are 0700 and files 0600: `python -m server` runs with UMASK (its children inherit it),
the modules that create files there give them these modes explicitly, and `make_private` takes the
group's and others' bits off whatever an older install left. One exception: when the server runs
as root, the embedded PostgreSQL runs as `postgres`, and the folders above its cluster keep a
search bit for it (never read or write: server.ledger.embedded).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

UMASK = 0o077  # new files 0600, new folders 0700
FOLDER_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077  # the group's and others' bits


def private_opener(path: str, flags: int) -> int:
    """An `opener` for open(): a file it creates is 0600, whatever the umask."""
    return os.open(path, flags, FILE_MODE)


def make_private(root: Path) -> None:
    """Make `root` if missing, and take the group's and others' bits off it and everything in it (not through links)."""
    root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    _tighten(root)
    for folder, folders, files in os.walk(root):
        for name in (*folders, *files):
            _tighten(Path(folder, name))


def _tighten(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & _OTHERS:
            path.chmod(stat.S_IMODE(mode) & ~_OTHERS)
    except OSError as problem:
        raise SystemExit(f"cannot make {path} private to this user (chmod go-rwx): {problem}") from None
