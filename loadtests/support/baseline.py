"""The code of an earlier commit, to measure beside this checkout in the same run (a benchmark's "before")."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtests.support.server import ROOT


@contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The tree of `ref` (`git archive` of this repository) in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="livecart-before-") as folder:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)
