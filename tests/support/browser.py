"""Pages as Debian's headless Chromium renders them (no network)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile


def rendered_page(url: str, wait_ms: int = 20_000) -> str:
    """The DOM of ``url`` after Debian's headless Chromium ran its scripts (no network)."""
    chromium = shutil.which("chromium")
    assert chromium, "the browser tests need Debian's chromium (.ci/run installs it)"
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--window-size=1600,1000",
             f"--virtual-time-budget={wait_ms}", "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def page_text(html: str) -> list[str]:
    """The visible strings of a page, one per element."""
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", html, flags=re.S)
    return [line.strip() for line in re.sub(r"<[^>]+>", "\n", text).splitlines() if line.strip()]
