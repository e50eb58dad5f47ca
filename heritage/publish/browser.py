"""How the tests and the site benchmark start Debian's Chromium, headless and offline.

Kept in one place so both look at the site the same way: no sandbox (CI runs as root),
and no background networking, which a closed network refuses many times a second.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
