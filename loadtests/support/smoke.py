"""The --smoke flag every benchmark has (a few seconds at tiny sizes, against real servers all the same), and the
end every benchmark shares: its figures as JSON, its report printed, exit 1 when it failed."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def parse(parser: argparse.ArgumentParser, sizes: dict[str, Any], argv: list[str] | None = None) -> argparse.Namespace:
    """Add --smoke and parse; with --smoke, `sizes` replace the defaults (options given on the command line win)."""
    parser.add_argument("--smoke", action="store_true", help="a few seconds at tiny sizes: proves the benchmark runs")
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**sizes)
        args = parser.parse_args(argv)
    return args


def emit(
    result: Any,
    json_path: Path | None,
    report: Callable[[Any], str],
    failures: Callable[[Any], list[str]] | None = None,
) -> None:
    """A benchmark's end: every figure to --json FILE when given, then its printed report; exit 1 when `failures`
    finds any (the report says what they are)."""
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    if failures is not None and failures(result):
        sys.exit(1)
