"""The HTML report of a digits study opens in headless Chromium with every section and every
embedded plot decoded."""

import re
import shutil
import subprocess

import pytest

from tests.conftest import TINY_SPACE, run_cli

SECTIONS = ["leaderboard", "optimization-history", "parameter-importances", "score-by-family", "trial-cost",
            "winner-s-codes-in-2-d", "inputs-and-reconstructions"]


def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("chromium is not installed (make test installs Debian's chromium)")
    return found


def test_html_report_of_a_digits_study_opens_in_headless_chromium(tmp_path):
    browser = chromium()
    study = tmp_path / "study"
    ran = run_cli("run", "--space", TINY_SPACE, "--trials", 4, "--study-dir", study, "--no-progress")
    assert ran.returncode == 0, ran.stderr[-2000:]
    made = run_cli("report", study, "--html")
    assert made.returncode == 0, made.stderr[-2000:]
    page = (study / "report.html").read_text()
    assert "http://" not in page and "https://" not in page, "the report must be self-contained"
    assert "baseline raw" in page and "Held-out test" in page

    # Let the browser say how many images it decoded: the report itself has no scripts.
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", "<script>document.title = 'decoded ' + "
                                  "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
                                  " + ' of ' + document.images.length;</script></body>"))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
         probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    for section in SECTIONS:
        assert f'id="{section}"' in dom, section
    decoded = re.search(r"<title>decoded (\d+) of (\d+)</title>", dom)
    assert decoded, dom[:500]
    assert int(decoded.group(1)) == int(decoded.group(2)) >= 6
