"""Server processes we start (the embedded Redis and PostgreSQL): they stop when we die, never orphaned."""

from __future__ import annotations

import ctypes
import signal
import sys


def stop_with_parent(sig: int = signal.SIGTERM) -> None:
    """In the child: ask Linux to send `sig` when the parent dies, so no orphan server outlives us."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
