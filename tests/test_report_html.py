"""The HTML report in headless Chromium: every chart renders, and the page makes no request.

Two detectors watch for requests: the page's own resource timing (with a probe
script added to a copy) and Chromium's net log, where requests of a ``file://``
page carry a ``file://`` network isolation key (the browser's own update checks
do not). Host resolution is mapped to failure, so nothing can leave the machine.
A control page with a remote stylesheet, image and font proves both detectors fire.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from PIL import Image
from testsupport import make_settings
from typer.testing import CliRunner

from testio_sync import cli
from testio_sync.dates import human_time
from testio_sync.insights.report_html import CSP
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-extensions",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
PROBE = """
window.__errors = [];
addEventListener('error', e => __errors.push(
  String(e.message || (e.target && (e.target.src || e.target.href)))), true);
addEventListener('securitypolicyviolation', e => __errors.push('csp: ' + e.blockedURI));
const original = console.error;
console.error = (...args) => { __errors.push(args.join(' ')); original(...args); };
addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0));
  document.body.setAttribute('data-probe', JSON.stringify({
    charts: imgs.length,
    bad: bad.map(i => i.alt),
    width: document.documentElement.scrollWidth,
    viewport: innerWidth,
    errors: __errors,
    resources: performance.getEntriesByType('resource').map(r => r.name),
  }));
});
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def run_chromium(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium, *FLAGS, *args], capture_output=True, text=True, timeout=90, check=False
    )


def with_probe(page: str, csp: str | None) -> str:
    """The page with the probe script; its CSP kept (plus inline scripts) or removed."""
    meta = re.compile(r'<meta http-equiv="Content-Security-Policy" content="[^"]*">')
    replacement = (
        "" if csp is None else f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
    )
    probed, count = meta.subn(replacement, page)
    assert count == 1
    return probed.replace("</head>", f"<script>{PROBE}</script></head>", 1)


def probe(
    chromium: str, page: Path, net_log: Path, width: int = 1000
) -> tuple[dict[str, Any], list[str]]:
    """Open ``page``; the probe's findings and the URLs the page requested per the net log."""
    done = run_chromium(
        chromium,
        f"--window-size={width},900",
        f"--log-net-log={net_log}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    )
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    log = json.loads(net_log.read_text())
    kinds = {code: name for name, code in log["constants"]["logEventTypes"].items()}
    requested = [
        event["params"]["url"]
        for event in log["events"]
        if kinds.get(event["type"]) == "URL_REQUEST_START_JOB"
        and "file://" in str(event["params"].get("network_isolation_key"))
    ]
    return json.loads(html.unescape(found.group(1))), requested


@pytest.fixture(scope="module")
def html_report(
    tiny_server: tuple[Simulator, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, Path]:
    """The HTML report of every product of the tiny simulator, written by the CLI."""
    base = tmp_path_factory.mktemp("html")
    settings = make_settings(base / "home", tiny_server[1])
    runner = CliRunner(env=settings.to_env())
    assert runner.invoke(cli.app, ["sync", "--with-bugs", "--quiet"]).exit_code == 0
    out = base / "report.html"
    result = runner.invoke(cli.app, ["report", "--format", "html", "--output", str(out)])
    assert result.exit_code == 0, result.output
    return settings, out


def test_the_html_report_renders_every_chart_and_requests_nothing(
    chromium: str, html_report: tuple[Settings, Path], tmp_path: Path
) -> None:
    page = html_report[1].read_text()
    assert f'content="{CSP}"' in page
    charts = re.findall(r'<img class="chart" alt="[^"]*" src="data:image/svg\+xml,([^"]*)"', page)
    assert len(charts) == page.count("<img") and len(charts) >= 8
    for chart in charts:
        svg = unquote(chart)
        assert svg.lstrip().startswith("<?xml") and "<path" in svg  # something is drawn

    clean = {"charts": len(charts), "bad": [], "errors": [], "resources": []}
    # Under its own policy (plus the probe script): nothing blocked, nothing broken.
    strict = tmp_path / "strict.html"
    strict.write_text(with_probe(page, f"{CSP}; script-src 'unsafe-inline'"))
    found, requested = probe(chromium, strict, tmp_path / "strict.json")
    assert found == {**clean, "width": 1000, "viewport": 1000} and requested == []

    # Without the policy: the content itself asks for nothing; on a phone, no sideways page.
    bare = tmp_path / "bare.html"
    bare.write_text(with_probe(page, None))
    found, requested = probe(chromium, bare, tmp_path / "bare.json", width=400)
    phone = found["viewport"]  # headless Chromium keeps windows at least 500 px wide
    assert phone <= 640 and found == {**clean, "width": phone, "viewport": phone}
    assert requested == []

    shot = tmp_path / "shot.png"
    done = run_chromium(chromium, "--window-size=1000,1400", f"--screenshot={shot}", bare.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1000, 1400)
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50  # not a blank page


def test_the_html_report_prints_on_a4_with_one_page_per_product_section(
    chromium: str, html_report: tuple[Settings, Path], tmp_path: Path
) -> None:
    page = html_report[1]
    sections = page.read_text().count('<section class="product">')
    pdf = tmp_path / "report.pdf"
    done = run_chromium(chromium, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
    assert pdf.is_file(), done.stderr[-2000:]
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf.read_bytes())
    assert sections >= 2 and len(boxes) > sections  # each product starts a page of its own
    assert {(round(float(w)), round(float(h))) for w, h in boxes} == {(595, 842)}  # A4 in pt


def test_the_detectors_see_a_page_that_reaches_out(
    chromium: str, html_report: tuple[Settings, Path], tmp_path: Path
) -> None:
    """Control: a remote stylesheet, image and font are caught by the probe and the net log."""
    remote = (
        '<link rel="stylesheet" href="https://cdn.example.com/x.css">'
        "<style>@font-face{font-family:X;src:url(https://fonts.example.com/f.woff2)}"
        "h1{font-family:X}</style></head>"
    )
    page = with_probe(html_report[1].read_text(), None).replace("</head>", remote, 1)
    page = page.replace("<main>", '<main><img src="http://img.example.com/a.png" alt="remote">')
    control = tmp_path / "control.html"
    control.write_text(page)
    found, requested = probe(chromium, control, tmp_path / "control.json")
    assert found["bad"] == ["remote"]
    assert {"https://cdn.example.com/x.css", "http://img.example.com/a.png"} <= set(
        found["resources"]
    )
    assert {"https://cdn.example.com/x.css", "http://img.example.com/a.png"} <= set(requested)
    assert any("fonts.example.com" in url for url in requested)


def test_html_report_of_one_product_names_it_and_its_numbers(
    html_report: tuple[Settings, Path], tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """The page shows the scope and the same headline numbers as the JSON export."""
    settings, _ = html_report
    sim = tiny_server[0]
    pid = sorted(sim.world.products)[0]
    runner = CliRunner(env=settings.to_env())
    out = tmp_path / "one.html"
    assert (
        runner.invoke(cli.app, ["report", "-p", str(pid), "-f", "html", "-o", str(out)]).exit_code
        == 0
    )
    data = json.loads(runner.invoke(cli.app, ["report", "-p", str(pid), "--json"]).stdout)
    page = out.read_text()
    assert f"{sim.world.products[pid].name} ({pid})" in page
    assert f'<div class="value">{data["total_bugs"]:,}</div>' in page
    rejection = data["rates"]["rejection_rate"]
    assert f'{rejection["value"]:.1%} <span class="word {rejection["health"]}">' in page
    assert human_time(data["data_as_of"]) in page  # the JSON's ISO time, as people read times
    assert 'class="product"' not in page  # one product: no per-product sections
