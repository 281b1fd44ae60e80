"""The locust entry point of livecart's show rehearsal: viewers, chatters, flash-sale buyers and a host, one shape.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --host-token "$TOKEN"       # web UI
    locust -f loadtests/locustfile.py --headless -u 500 -r 50 -t 5m --host … --host-token … \\
        --csv results/show --html results/show.html --report-json results/show.json

See docs/loadtests.md for the options, the show's timeline, distributed runs and the invariant report.
"""

from __future__ import annotations

import sys
from pathlib import Path

# locust imports this file by path: make the repository root importable for `loadtests.*` and `server.*`
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from locust import events  # noqa: E402

from loadtests import show_options, show_report  # noqa: E402
from loadtests.show_shape import ShowShape  # noqa: E402
from loadtests.show_users import BuyerUser, ChatterUser, HostUser, ViewerUser  # noqa: E402

__all__ = ["BuyerUser", "ChatterUser", "HostUser", "ShowShape", "ViewerUser"]

events.init_command_line_parser.add_listener(show_options.add_arguments)
show_report.install(events)
