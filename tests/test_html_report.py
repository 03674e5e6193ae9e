"""The self-contained HTML report (gradts_cli/html.py), checked as text and in a real browser.

The browser test opens the page in headless Chromium (Debian's ``chromium``; skipped with the
reason when no browser is found) at 1000 px wide with every host name unresolvable: a
screenshot is taken, every figure has loaded and is visible, the page has no horizontal
scrollbar, and it requested nothing but its own file and data: URIs.
"""

from __future__ import annotations

import html as _html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import figstore
import numpy as np
import pytest

from gradts_cli import html as H

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("matplotlib")
    store, model, _ = figstore.shared(tmp_path_factory)
    rep, taus = figstore.report_and_taus(store, model)
    path = tmp_path_factory.mktemp("html") / "report.html"
    _, missing = H.write_html_report(rep, path, store, taus)
    assert missing is None
    return rep, path, path.read_text(encoding="utf-8"), store


def test_page_has_findings_tables_figures_costs_provenance(page) -> None:
    rep, _, text, store = page
    for finding in rep.findings:
        assert _html.escape(finding) in text
    assert text.count("<table>") >= 6 and "<th>task</th>" in text
    imgs = re.findall(r'<img alt="([^"]+)"[^>]*src="data:image/png;base64,', text)
    assert len(imgs) == 6 and "GradTS-trial for neg_movie" in imgs
    assert "Cost ledger" in text and "Provenance" in text
    for p in rep.probes:
        entry = next(e for e in store.entries("probe") if e.key_path == p.key)
        assert entry.spec["data"] in text                      # each task's data fingerprint
    assert _html.escape(rep.model) in text and "numpy" in text  # model id and versions
    assert "@page { size: A4" in text


def test_page_needs_no_network(page) -> None:
    _, _, text, _ = page
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text)
    assert refs and all(r.startswith("data:") for r in refs)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "@import" not in text and "url(" not in text


def test_page_without_matplotlib_still_written_with_a_note(page, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    rep, _, _, store = page
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path, missing = H.write_html_report(rep, tmp_path / "r.html", store)
    assert missing is not None and "pip install 'gradts[plot]'" in missing
    text = path.read_text()
    assert "<img" not in text and "pip install &#x27;gradts[plot]&#x27;" in text


def _browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


PROBE = """<script>window.addEventListener('load', function () {
  var d = document.documentElement;
  var imgs = [].slice.call(document.images).map(function (i) {
    var b = i.getBoundingClientRect();
    return {ok: i.complete && i.naturalWidth > 0, w: b.width, h: b.height};
  });
  var r = {scrollW: d.scrollWidth, clientW: d.clientWidth, imgs: imgs,
           res: performance.getEntriesByType('resource').map(function (e) { return e.name; })};
  var p = document.createElement('pre'); p.id = 'probe'; p.textContent = JSON.stringify(r);
  document.body.appendChild(p);
});</script>"""


def _chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--window-size=1000,1400"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True,
                          timeout=120)


def test_page_in_headless_chromium(page, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium/Chrome found (Debian: apt-get install -y chromium)")
    from PIL import Image

    _, path, text, _ = page
    shot = tmp_path / "shot.png"
    r = _chromium(browser, tmp_path, "--hide-scrollbars", f"--screenshot={shot}",
                  path.as_uri())
    assert shot.exists(), r.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1000, 1400)
        px = np.asarray(im.convert("L"), dtype=np.float64)
    assert px.std() > 10                                  # something was drawn

    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    r = _chromium(browser, tmp_path, "--virtual-time-budget=5000", "--dump-dom",
                  probed.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert m, r.stderr[-2000:]
    got = json.loads(_html.unescape(m.group(1)))
    assert got["scrollW"] <= got["clientW"] <= 1000       # no horizontal scrollbar
    assert len(got["imgs"]) == 6
    assert all(i["ok"] and i["w"] > 200 and i["h"] > 80 for i in got["imgs"])
    assert all(n.startswith(("data:", "file:")) for n in got["res"]), got["res"]


def test_cli_report_html_is_the_self_contained_page(tmp_path: Path, tmp_path_factory,
                                                    monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    from gradts_cli.app import main

    root, model = figstore.cli_store(tmp_path, tmp_path_factory, monkeypatch)
    out = tmp_path / "r.html"
    assert main(["--home", str(root), "report", "--model", model, "--primary",
                 figstore.PRIMARY, "--html", str(out), "--json"]) == 0
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count('src="data:image/png;base64,') == 6
    assert "<h2>Provenance</h2>" in text
