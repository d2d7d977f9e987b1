"""The HTML report in a real browser (skipped when no Chromium is installed): the page renders, and the
time-breakdown chart is drawn in the category colours, offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sample_report import ROOT, sample_report

from qdoctor import facts as F
from qdoctor.report.render import OutputFormat, render
from qdoctor.report.render.html_report import CATEGORY_COLOR, breakdown_svg

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "html_screenshot.py"


def _script():
    spec = importlib.util.spec_from_file_location("html_screenshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return red, green, blue


def _screenshot(tmp_path: Path, name: str, html_text: str, height: int):
    script = _script()
    if script.find_chromium() is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium)")
    image_module = pytest.importorskip("PIL.Image")
    html = tmp_path / f"{name}.html"
    html.write_text(html_text, encoding="utf-8")
    png = script.screenshot(html, tmp_path / f"{name}.png", width=1000, height=height)
    return image_module.open(png).convert("RGB")


def test_report_renders_in_headless_chromium(tmp_path):
    image = _screenshot(tmp_path, "report", render(sample_report(), OutputFormat.html, root=ROOT), 1400)
    assert image.size == (1000, 1400)
    counts = {colour: n for n, colour in image.getcolors(maxcolors=1 << 20)}
    assert len(counts) > 50  # text, tables, badges: not a blank or error page
    assert counts.get(_rgb(CATEGORY_COLOR[F.CAT_INT8]), 0) > 500


def test_chart_is_drawn_to_scale_in_headless_chromium(tmp_path):
    """The SVG alone: every category the sample spends time in is painted, in proportion to its time."""
    svg = breakdown_svg(sample_report(), width=900)
    image = _screenshot(tmp_path, "chart", f"<!DOCTYPE html><html><body style='margin:0'>{svg}</body></html>", 400)
    counts = {colour: n for n, colour in image.getcolors(maxcolors=1 << 20)}
    painted = {c: counts.get(_rgb(CATEGORY_COLOR[c]), 0) for c in F.CATEGORIES}
    assert painted[F.CAT_OBSERVER] == 0  # the sample spends no time there
    # same bar height for every segment, so painted area follows milliseconds: float 2.4 + 3.1, int8 1.2, q/dq 0.9
    assert painted[F.CAT_FLOAT] > painted[F.CAT_INT8] > painted[F.CAT_QDQ] > painted[F.CAT_OTHER] > 0
    assert 3.0 < painted[F.CAT_FLOAT] / painted[F.CAT_INT8] < 6.0  # 5.5 / 1.2 = 4.6, minus the labels inside bars
