#!/usr/bin/env python3
"""Look at qdoctor's HTML report in a real browser: headless Chromium renders it to a PNG.

    apt-get install -y chromium                        # Debian; or any Chrome/Chromium on PATH ($CHROMIUM overrides)
    python bench/html_screenshot.py                    # checks fixtures/prepared_not_converted.py -> out/report.png
    python bench/html_screenshot.py fixtures/seed004_as_written.py --out out/seed004.png
    python bench/html_screenshot.py out/report.html    # an HTML report written with --format html -o

Chromium runs with networking features off (no sandbox: it runs as root in CI containers) and the page loads
nothing beyond the file itself, so the picture is what a user opening the file offline sees. Open the PNG to
check the summary, the time-breakdown chart, the per-module table and the findings.
tests/test_html_browser.py uses `screenshot()` to assert that the chart is really drawn.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def screenshot(html: Path, png: Path, width: int = 1100, height: int = 2600, timeout: float = 120.0) -> Path:
    """Render ``html`` with headless Chromium into ``png``. Raises RuntimeError when Chromium is missing or fails."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("no Chromium on PATH (apt-get install chromium, or set $CHROMIUM)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qdoctor-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            html.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return png


def html_report_of(target: str, html: Path) -> Path:
    """Check ``target`` with qdoctor (short timings) and write its HTML report."""
    sys.path.insert(0, str(ROOT))
    from qdoctor.gather import GatherOptions
    from qdoctor.report.render import OutputFormat, render
    from qdoctor.run.check import CheckOptions, check

    report = check(target, CheckOptions(gather=GatherOptions(bench_time=0.2, profile_budget=0.2)))
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(render(report, OutputFormat.html, root=str(ROOT)), encoding="utf-8")
    return html


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source",
        nargs="?",
        default=str(ROOT / "fixtures" / "prepared_not_converted.py"),
        help="a model .py to check, or an .html report",
    )
    parser.add_argument("--out", default=str(ROOT / "out" / "report.png"), help="PNG to write")
    args = parser.parse_args(argv)
    source = Path(args.source)
    png = Path(args.out)
    html = source if source.suffix == ".html" else html_report_of(str(source), png.with_suffix(".html"))
    try:
        screenshot(html, png)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"html_screenshot: {exc}", file=sys.stderr)
        return 2
    print(f"{html} -> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
