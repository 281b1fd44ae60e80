"""axe-core, the accessibility engine, from the npm registry without npm: fetched once, checked, run in a page.

`script()` downloads the pinned version's tarball from the npm registry the first time (scripts/test calls
`python -m tests.browser.axe` before the suite, so a machine without the network fails there, clearly), checks
it against the sha512 `integrity` the registry lists for that version (pinned here: a tarball that differs is
refused), and keeps its `axe.min.js` in a cache directory ($LIVECART_CACHE, else $XDG_CACHE_HOME/livecart, else
~/.cache/livecart). `violations(page)` injects it into a Playwright page and runs `axe.run` with the WCAG 2 A and
AA rules; `report(found)` turns what it finds into a readable message: each rule's id, impact and help, and the
selectors of the failing nodes with axe's summary of what is wrong with each.

The pages' Content-Security-Policy allows no inline script, so the engine is not added as a <script> tag: its
source is evaluated through the DevTools protocol (Playwright's `evaluate`), which the policy does not govern.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page

VERSION = "4.10.3"
INTEGRITY = "sha512-Xm7bpRXnDSX2YE2YFfBk2FnF0ep6tmG7xPh8iHee8MIcrgq762Nkce856dYtJYLkuIoYZvGfTs/PbZhideTcEg=="
TARBALL = f"https://registry.npmjs.org/axe-core/-/axe-core-{VERSION}.tgz"
MEMBER = "package/axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def cache_dir() -> Path:
    """Where the engine is kept between runs."""
    if os.environ.get("LIVECART_CACHE"):
        return Path(os.environ["LIVECART_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "livecart"


def path() -> Path:
    return cache_dir() / f"axe-core-{VERSION}" / "axe.min.js"


def verify(tarball: bytes) -> None:
    """Refuse a tarball whose sha512 is not the one the registry lists for VERSION."""
    algorithm, _, expected = INTEGRITY.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if actual != expected:
        raise RuntimeError(f"axe-core {VERSION} from {TARBALL} is not the published tarball: {algorithm} {actual}")


def fetch() -> Path:
    """Download, check and unpack axe.min.js unless it is in the cache already; its path."""
    target = path()
    if target.exists():
        return target
    response = httpx.get(TARBALL, follow_redirects=True, timeout=60)
    response.raise_for_status()
    verify(response.content)
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        member = archive.extractfile(MEMBER)
        if member is None:
            raise RuntimeError(f"{TARBALL} has no {MEMBER}")
        source = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")  # another process may fetch at the same time
    partial.write_bytes(source)
    partial.replace(target)
    return target


_source: str | None = None


def script() -> str:
    """axe.min.js's source (fetched the first time)."""
    global _source
    if _source is None:
        _source = fetch().read_text(encoding="utf-8")
    return _source


def violations(page: Page, exclude: list[str] | None = None) -> list[dict[str, Any]]:
    """Run axe (WCAG 2.0 and 2.1, A and AA) on the page as it is now; the rules it breaks, with their nodes.

    `exclude` lists selectors of parts to leave out (none by default)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(script())
    # A sheet sliding in or a colour fading is checked once it has arrived (running loops, a spinner, are left).
    page.evaluate(
        """() => Promise.all(document.getAnimations()
            .filter((animation) => animation.effect?.getComputedTiming().iterations !== Infinity)
            .map((animation) => animation.finished.catch(() => null)))"""
    )
    found: list[dict[str, Any]] = page.evaluate(
        """async ([tags, exclude]) => {
            const context = exclude.length ? {exclude: exclude.map((selector) => [selector])} : document;
            const options = {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']};
            const result = await window.axe.run(context, options);
            return result.violations.map((rule) => ({
                id: rule.id, impact: rule.impact, help: rule.help, helpUrl: rule.helpUrl,
                nodes: rule.nodes.map((node) => ({target: node.target.map(String), summary: node.failureSummary})),
            }));
        }""",
        [TAGS, exclude or []],
    )
    return found


def report(found: list[dict[str, Any]], where: str = "") -> str:
    """A readable account of axe's violations: rule, impact, help, then each failing node's selector and why."""
    lines = [f"{len(found)} accessibility rule(s) broken{f' on {where}' if where else ''}:"]
    for rule in found:
        lines.append(f"- {rule['id']} ({rule['impact']}): {rule['help']} [{rule['helpUrl']}]")
        for node in rule["nodes"]:
            summary = " ".join(str(node["summary"] or "").split())
            lines.append(f"    {' > '.join(node['target'])}: {summary}")
    return "\n".join(lines)


def check(page: Page, where: str = "", exclude: list[str] | None = None) -> None:
    """Fail with `report` unless axe finds nothing on the page."""
    found = violations(page, exclude)
    assert not found, report(found, where or page.url)


if __name__ == "__main__":
    # scripts/test: fetch the engine before the suite runs (once; later runs find it in the cache).
    print(f"axe-core {VERSION}: {fetch()}", file=sys.stderr)
