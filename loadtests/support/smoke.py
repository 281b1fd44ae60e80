"""The --smoke flag every benchmark has: a few seconds at tiny sizes, against real servers all the same."""

from __future__ import annotations

import argparse
from typing import Any


def parse(parser: argparse.ArgumentParser, sizes: dict[str, Any], argv: list[str] | None = None) -> argparse.Namespace:
    """Add --smoke and parse; with --smoke, `sizes` replace the defaults (options given on the command line win)."""
    parser.add_argument("--smoke", action="store_true", help="a few seconds at tiny sizes: proves the benchmark runs")
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**sizes)
        args = parser.parse_args(argv)
    return args
