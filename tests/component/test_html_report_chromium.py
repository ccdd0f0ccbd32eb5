"""`cem report --html` opened in headless Chromium (Debian's `chromium`) with the network cut off: every chart
rendered (an SVG with marks in each chart element), no script error on the console, and a screenshot taken.

The browser is driven over the DevTools protocol with aiohttp's websocket client (already a dependency): a few
commands, no browser-automation package that would download a browser of its own."""

from __future__ import annotations

import asyncio
import base64
import itertools
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cem.cli import main
from cem.html_report import CHART_IDS
from cem.settings import Settings
from tests.integration import report_scenario as scenario

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make system-deps)")

# Per chart: how many SVG marks it drew (Sankey nodes, bars, line points), and whether plotly filled it.
CHART_PROBE = """JSON.stringify(%s.map(id => {
  const el = document.getElementById(id);
  return {id: id, found: !!el, svg: el ? el.querySelectorAll('svg.main-svg').length : 0,
          marks: el ? el.querySelectorAll('g.sankey-node, g.point, path.point, path.js-line').length : 0,
          width: el ? el.getBoundingClientRect().width : 0, height: el ? el.getBoundingClientRect().height : 0,
          plotted: !!(el && el._fullLayout)};
}))"""


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: Any) -> Path:
    path = tmp_path_factory.mktemp("html")
    settings = Settings.from_env({}, clickhouse_url=f"chdb://{path}/warehouse?database=rep",
                                 state_dir=str(path / "state"))
    scenario.load(settings, scenario.generate())
    for name, value in settings.as_env().items():
        monkeypatch_module.setenv(name, value)
    out = path / "report.html"
    assert main(["report", "--html", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


class Resources(HTMLParser):
    """The page's own tags that would load something (a script's text is not parsed as tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name):
                self.loads.append((tag, str(found[name])))
        if tag == "script" and not found.get("src"):
            self.inline_scripts += 1


def test_the_file_carries_its_script_and_asks_no_network(report_file: Path) -> None:
    page = report_file.read_text()
    resources = Resources()
    resources.feed(page)
    assert resources.loads == []
    assert resources.inline_scripts >= 1 + len(CHART_IDS)  # plotly.js, then one per chart
    for chart in CHART_IDS:
        assert f'id="{chart}"' in page


def test_every_chart_renders_in_chromium_without_a_script_error(report_file: Path, tmp_path: Path) -> None:
    result = asyncio.run(open_in_chromium(report_file, tmp_path))
    assert result["errors"] == []
    charts = {chart["id"]: chart for chart in result["charts"]}
    assert set(charts) == set(CHART_IDS)
    for chart in charts.values():
        assert chart["found"] and chart["plotted"], chart
        assert chart["svg"] >= 1 and chart["width"] > 100 and chart["height"] > 100, chart
        assert chart["marks"] >= 1, chart
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(result["png"])
    assert result["png"].startswith(b"\x89PNG") and screenshot.stat().st_size > 20_000


async def open_in_chromium(page: Path, work: Path) -> dict[str, Any]:
    profile = work / "profile"
    assert CHROMIUM is not None
    browser = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
         "--window-size=1300,2600", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                target = next(t for t in await answer.json() if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                return await _drive(ws, page)
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()


def _devtools_port(profile: Path) -> int:
    deadline = time.monotonic() + 30
    marker = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


async def _drive(ws: Any, page: Path) -> dict[str, Any]:
    ids = itertools.count(1)
    errors: list[str] = []

    async def call(method: str, **params: Any) -> dict[str, Any]:
        call_id = next(ids)
        await ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(ws.receive_json(), timeout=60)
            _note_errors(message, errors)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    await call("Runtime.enable")
    await call("Log.enable")
    await call("Page.enable")
    await call("Page.navigate", url=page.as_uri())
    charts: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = await call("Runtime.evaluate", expression=CHART_PROBE % list(CHART_IDS), returnByValue=True)
        import json

        charts = json.loads(answer["result"].get("value") or "[]")
        if charts and all(c["plotted"] for c in charts):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # transitions settle before the screenshot
    shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    return {"charts": charts, "errors": errors, "png": base64.b64decode(shot["data"])}


def _note_errors(message: dict[str, Any], errors: list[str]) -> None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.exceptionThrown":
        errors.append(str(params.get("exceptionDetails", {}).get("text")))
    elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
        errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        errors.append(str(params["entry"].get("text")))
