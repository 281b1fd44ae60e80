"""The locust entry point of livecart's show rehearsal: viewers, chatters, flash-sale buyers and a host, one shape.

Run it from the repository root (locust puts the working directory on sys.path, so `loadtests.*`
and `server.*` import); from elsewhere, put the repository on PYTHONPATH:

    locust -f loadtests/show/locustfile.py --host http://127.0.0.1:8000 --host-token "$TOKEN"       # web UI
    locust -f loadtests/show/locustfile.py --headless -u 500 -r 50 -t 5m --host … --host-token … \\
        --csv results/show --html results/show.html --report-json results/show.json

See docs/loadtests.md for the options, the show's timeline, distributed runs and the invariant report.
"""

from __future__ import annotations

from locust import events

from loadtests.show import options, report
from loadtests.show.shape import ShowShape
from loadtests.show.users import BuyerUser, ChatterUser, HostUser, ViewerUser

__all__ = ["BuyerUser", "ChatterUser", "HostUser", "ShowShape", "ViewerUser"]

events.init_command_line_parser.add_listener(options.add_arguments)
report.install(events)
