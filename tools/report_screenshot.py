"""Regenerate docs/report-screenshot.png: the top of a report as headless Chromium draws it.

    rbmm demo --fast                                  # writes reports/demo (or any report folder)
    python tools/report_screenshot.py reports/demo    # -> docs/report-screenshot.png

The screenshot is the first HEIGHT pixels of the page at WIDTH px (the summary, the navigation
and the headline table), as a reader first sees it. Needs Debian's `chromium` (or
`chromium-browser`) on PATH; a fresh profile in a temporary folder keeps the run clean.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1400, 1800
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def screenshot(report: Path, out: Path, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """Draw `report`/index.html at width x height into the PNG `out`; returns `out`."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("report_screenshot: chromium is not installed (apt-get install chromium)")
    page = report / "index.html" if report.is_dir() else report
    if not page.is_file():
        raise SystemExit(f"report_screenshot: {page} does not exist; write a report first (rbmm demo --fast)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rbmm-shot-") as profile:
        subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={out.resolve()}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", default="reports/demo", help="report folder or its index.html (default: %(default)s)")
    parser.add_argument("-o", "--out", default=str(ROOT / "docs" / "report-screenshot.png"), help="PNG to write (default: %(default)s)")
    parser.add_argument("--width", type=int, default=WIDTH, help="viewport width in px (default: %(default)s)")
    parser.add_argument("--height", type=int, default=HEIGHT, help="viewport height in px (default: %(default)s)")
    args = parser.parse_args(argv)
    path = screenshot(Path(args.report), Path(args.out), args.width, args.height)
    print(f"written: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
