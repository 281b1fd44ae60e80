"""WebRTC on 127.0.0.1 only: every ICE candidate a process gathers is the loopback address.

    python -m loadtests.support.loopback MODULE [ARGS...]     # run MODULE as __main__, loopback only

aioice would also offer the machine's other addresses; the benchmarks send media nowhere else.
"""

from __future__ import annotations

import runpy
import sys

import aioice.ice


def only() -> None:
    """From now on, this process gathers its ICE host candidates on 127.0.0.1 only."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


if __name__ == "__main__":
    only()
    module = sys.argv.pop(1)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
