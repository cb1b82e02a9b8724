"""The report as a reader sees it: opened in headless Chromium (selenium + chromedriver) at 1400 and
1000 px wide, with 14 models, as the demo holds. The page must fit its viewport (the navigation
wraps, only tables scroll sideways), load every image, resolve every anchor, log no console error
and keep every chart within a screen or two of height.

Skipped only when Chromium or its driver is absent (`.ci/run` installs Debian's `chromium` and
`chromium-driver`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from test_report import write_fake_run
from robustbench_mm.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="headless Chromium and chromedriver are not installed")

# 14 models as in the demo: every fusion with and without calibration, the methods and references
MODELS = ["concat", "concat+cal", "late", "late+cal", "transformer", "transformer+cal", "conv", "conv+cal",
          "qmf", "udml", "unimodal-pix", "unimodal-fou", "unimodal-fac", "ensemble"]
WIDTHS = (1400, 1000)
MAX_FIGURE_HEIGHT = 1300  # px on screen at either width: a chart is read without scrolling through it


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("browser")
    run = write_fake_run(runs / "zoo", MODELS)
    write_report([run], runs / "report", title="Fourteen models")
    return (runs / "report" / "index.html").resolve()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="rbmm-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser, page: Path, width: int) -> None:
    browser.set_window_size(width, 900)
    inner = browser.execute_script("return window.innerWidth")
    browser.set_window_size(width + (width - inner), 900)  # the viewport itself is `width` wide
    browser.get(page.as_uri())
    browser.execute_script("return document.readyState")


LAYOUT = """
const vw = document.documentElement.clientWidth;
const nav = document.querySelector('nav');
const links = [...nav.querySelectorAll('a')].map(a => a.getBoundingClientRect());
const wide = [...document.querySelectorAll('main > *, section > *')]
  .filter(e => !e.classList.contains('scroll') && e.tagName !== 'DETAILS')
  .filter(e => e.getBoundingClientRect().right > vw + 1 || e.scrollWidth > e.clientWidth + 1)
  .map(e => e.tagName + '#' + (e.id || e.closest('section')?.id || ''));
return {
  vw: vw,
  pageWidth: document.documentElement.scrollWidth,
  navOverflow: nav.scrollWidth - nav.clientWidth,
  linksOutside: links.filter(r => r.right > vw || r.left < 0).length,
  navRows: new Set(links.map(r => Math.round(r.top))).size,
  wide: wide,
  images: [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, h: i.getBoundingClientRect().height, alt: i.alt})),
  anchors: [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href').slice(1))
    .filter(id => !document.getElementById(id)),
};
"""


@pytest.mark.parametrize("width", WIDTHS)
def test_report_fits_the_viewport_and_loads_everything(browser, page, width):
    _open(browser, page, width)
    got = browser.execute_script(LAYOUT)
    assert width - 20 <= got["vw"] <= width  # less a vertical scrollbar
    assert got["navOverflow"] <= 0 and got["linksOutside"] == 0, got  # the nav wraps
    assert got["navRows"] >= 1
    assert got["pageWidth"] <= got["vw"], f"the page scrolls sideways: {got['pageWidth']} px at {width}"
    assert not got["wide"], f"wider than the viewport (only tables may scroll): {got['wide']}"
    assert got["images"] and all(i["ok"] for i in got["images"]), [i["alt"] for i in got["images"] if not i["ok"]]
    tall = [(i["alt"], round(i["h"])) for i in got["images"] if i["h"] > MAX_FIGURE_HEIGHT]
    assert not tall, f"charts taller than {MAX_FIGURE_HEIGHT} px: {tall}"
    assert not got["anchors"], f"links to missing anchors: {got['anchors']}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_the_nav_wraps_onto_several_rows_at_1000_px(browser, page):
    """Twelve section links do not fit one row at 1000 px: they must wrap, not scroll or clip."""
    _open(browser, page, 1000)
    assert browser.execute_script(LAYOUT)["navRows"] >= 2


UNBROKEN = """
const found = [], split = [];
for (const td of document.querySelectorAll('td')) {
  const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    for (const m of n.data.matchAll(/\\[[^\\]]*\\]|< \\d[\\d.]*/g)) {
      const r = document.createRange();
      r.setStart(n, m.index);
      r.setEnd(n, m.index + m[0].length);
      const rows = new Set([...r.getClientRects()].map(c => Math.round(c.top)));
      if (rows.size) found.push(m[0]);
      if (rows.size > 1) split.push(m[0]);
    }
  }
}
return {found: found.length, split: split};
"""


@pytest.mark.parametrize("width", WIDTHS)
def test_table_intervals_and_p_value_bounds_are_never_split_across_lines(browser, page, width):
    """'0.980 [0.965, 0.993]' may wrap before the interval, never inside it; '< 0.001' stays whole."""
    _open(browser, page, width)
    got = browser.execute_script(UNBROKEN)
    assert got["found"] > 20, got
    assert not got["split"], f"split over two lines at {width} px: {got['split'][:5]}"


def test_a_wide_table_keeps_its_row_labels_in_view_when_scrolled_sideways(browser, page):
    """At 1000 px the 14-model removal table scrolls; its first column (the removed subset) stays put, on one line."""
    _open(browser, page, 1000)
    got = browser.execute_script("""
      const box = document.querySelector('#removal .scroll');
      box.scrollLeft = box.scrollWidth;
      const label = box.querySelector('tbody td');
      const other = box.querySelector('tbody td:nth-child(2)');
      return {wide: box.scrollWidth > box.clientWidth, box: box.getBoundingClientRect().left,
              label: label.getBoundingClientRect().left, other: other.getBoundingClientRect().left,
              lines: (() => { const r = document.createRange(); r.selectNodeContents(label);
                              return new Set([...r.getClientRects()].map(c => Math.round(c.top))).size; })()};""")
    assert got["wide"], got
    assert abs(got["label"] - got["box"]) < 1 and got["other"] < got["box"], got  # the label stayed, the rest moved
    assert got["lines"] == 1, got  # 'none removed (clean)' on one line
