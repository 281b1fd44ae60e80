"""static/js/protocol.js, run in Node, names the same events, commands, codes and limits as server/protocol.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from server.protocol import wire

ROOT = Path(__file__).resolve().parent.parent
PRINT_WIRE = "import { wire } from './static/js/protocol.js'; console.log(JSON.stringify(wire()))"


def test_browser_protocol_mirrors_the_server() -> None:
    """The browser's protocol module gives the same wire() as the server's: no event, code or limit differs."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    printed = subprocess.run(
        [node, "--input-type=module", "-e", PRINT_WIRE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert orjson.loads(printed.stdout) == wire()
