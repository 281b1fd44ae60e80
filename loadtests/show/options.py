"""The load test's own command-line options (each with an environment fallback), and the settings they resolve to.

Locust sends custom options from the master to every worker with each spawn message, so users read
them from `environment.parsed_options` wherever they run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

DEFAULT_SHOW_SECONDS = 300.0
DEFAULT_BUYER_SHARE = 0.3
# The show's length as the master resolved it at the start of a run. Workers get no --run-time, but
# every attribute of the master's parsed options that is not one of locust's own travels to them.
RESOLVED_SECONDS = "livecart_show_seconds"


def add_arguments(parser: Any) -> None:
    """Listener of `events.init_command_line_parser`."""
    add = parser.add_argument
    add("--room", env_var="LIVECART_ROOM", default="demo", help="room to fill (LIVECART_ROOM, default demo)")
    add("--merchant", env_var="LIVECART_MERCHANT", default="demo", help="the room's merchant (LIVECART_MERCHANT)")
    add(
        "--host-token",
        env_var="LIVECART_HOST_TOKEN",
        default="",
        is_secret=True,
        help="a host token of the merchant: the host user pins products and runs the sale; the report reads the store",
    )
    add(
        "--admin-token",
        env_var="LIVECART_ADMIN_TOKEN",
        default="",
        is_secret=True,
        help="a merchant admin token, used when no --host-token is given (LIVECART_ADMIN_TOKEN)",
    )
    add("--product", env_var="LIVECART_PRODUCT", default="", help="product to sell (default: the shop's first)")
    add(
        "--shape",
        env_var="LIVECART_SHAPE",
        default="show",
        choices=["show", "flat"],
        help="show: viewers ramp in, a sale opens, a buyer spike, the sale ends; flat: --users all along",
    )
    add(
        "--show-seconds",
        env_var="LIVECART_SHOW_SECONDS",
        type=float,
        default=0.0,
        help="length of the show (default: --run-time, else 300); the schedule scales with it",
    )
    add(
        "--buyers",
        env_var="LIVECART_BUYERS",
        type=int,
        default=-1,
        help="buyers in the spike, out of --users (default 30%%)",
    )
    add("--sales", env_var="LIVECART_SALES", type=int, default=1, help="sales the host runs, one after the other")
    add("--sale-quantity", env_var="LIVECART_SALE_QUANTITY", type=int, default=100, help="units on sale (each sale)")
    add("--per-user-limit", env_var="LIVECART_PER_USER_LIMIT", type=int, default=2, help="units one buyer may have")
    add("--hold-seconds", env_var="LIVECART_HOLD_SECONDS", type=int, default=10, help="how long a hold waits")
    add("--sale-price", env_var="LIVECART_SALE_PRICE", type=int, default=900, help="sale price, minor units")
    add("--pay-ratio", env_var="LIVECART_PAY_RATIO", type=float, default=0.7, help="holds that buyers pay")
    add(
        "--cancel-ratio",
        env_var="LIVECART_CANCEL_RATIO",
        type=float,
        default=0.1,
        help="holds that buyers cancel; the rest are abandoned until they expire",
    )
    add(
        "--report-json",
        env_var="LIVECART_REPORT_JSON",
        default="",
        help="write the invariant report and a summary of the run to this JSON file",
    )
    add(
        "--tamper-invariant",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="TEST ONLY: add an acknowledged order the server never made before the report, so it must fail",
    )


@dataclass(frozen=True)
class Show:
    """The options, resolved: who we are, where, and the show's sizes and timing."""

    room: str
    merchant: str
    staff_token: str
    product: str
    shape: str
    seconds: float
    users: int
    spawn_rate: float
    buyers: int
    sales: int
    sale_quantity: int
    per_user_limit: int
    hold_seconds: int
    sale_price: int
    pay_ratio: float
    cancel_ratio: float
    report_json: str
    tamper: bool

    @classmethod
    def of(cls, options: Any) -> Show:
        """From locust's parsed options (None before locust parsed them: the defaults and environment)."""
        get = (lambda name, default: getattr(options, name, default)) if options is not None else _env
        users = int(get("num_users", None) or 1)
        buyers = int(get("buyers", -1))
        return cls(
            room=get("room", "demo"),
            merchant=get("merchant", "demo"),
            staff_token=get("host_token", "") or get("admin_token", ""),
            product=get("product", ""),
            shape=get("shape", "show"),
            seconds=float(
                get(RESOLVED_SECONDS, 0.0) or get("show_seconds", 0.0) or get("run_time", None) or DEFAULT_SHOW_SECONDS
            ),
            users=users,
            spawn_rate=float(get("spawn_rate", None) or 1.0),
            buyers=max(0, min(users - 1, round(users * DEFAULT_BUYER_SHARE) if buyers < 0 else buyers)),
            sales=max(1, int(get("sales", 1))),
            sale_quantity=int(get("sale_quantity", 100)),
            per_user_limit=int(get("per_user_limit", 2)),
            hold_seconds=int(get("hold_seconds", 10)),
            sale_price=int(get("sale_price", 900)),
            pay_ratio=float(get("pay_ratio", 0.7)),
            cancel_ratio=float(get("cancel_ratio", 0.1)),
            report_json=get("report_json", ""),
            tamper=bool(get("tamper_invariant", False)),
        )


def _env(name: str, default: Any) -> Any:
    return os.environ.get(f"LIVECART_{name.upper()}", default)
