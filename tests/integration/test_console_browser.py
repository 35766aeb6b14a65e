"""The console in a real browser (Debian's Chromium through Playwright), on the embedded default with two
workers: sign in by keyboard, traffic from loadgen, every overview chart drawn and its tiles equal to
/summary, spend equal to the ledger, a key created (its secret shown once), used, revoked (its console
session ends), a viewer who cannot reach the keys, a hostile key name that runs nothing, axe-core's audit
on every page, 390 px and dark mode, every page by keyboard alone; then beside `stack up` (Prometheus and
Alertmanager) with traces exported. Screenshots of each page go to ``build/console-screenshots/``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from agentic_backend import stack
from agentic_backend.loadgen import generate
from agentic_backend.stack import StackOptions
from tests.helpers import MONITORING
from tests.integration.harness import Service, free_port, require_binary, wait_until
from tests.integration.otlp import OtlpReceiver

pytestmark = pytest.mark.integration

SHOTS = Path(__file__).parents[2] / "build" / "console-screenshots"
HOSTILE = '<img src=x onerror="window.__pwned=1">'
GRAPHS = (
    "Request Rate",
    "Request Latency",
    "Agent Query Rate",
    "Agent Duration",
    "API Cost",
    "Token Usage",
    "Cache Hit Rate",
    "Authentication",
    "Permissions",
    "Error Ratio",
    "Slow Request Ratio",
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("console")
    running = Service(folder, workers=2, env={"AGENTIC_HISTORY_INTERVAL_SECONDS": "1"})
    try:
        asyncio.run(generate(running.url, running.admin_key, 25, 8, quiet=True))
        yield running
    finally:
        running.stop()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # or the sticky header is drawn where the page was scrolled to
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def audit(page: Page, name: str) -> None:
    """axe-core: no serious or critical violation."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: {bad}"


def sign_in(context: BrowserContext, url: str, key: str) -> Page:
    page = context.new_page()
    page.goto(url + "/", wait_until="domcontentloaded")  # a browser at / lands on the console
    assert page.url.endswith("/console/")
    page.get_by_label("API key").wait_for()
    page.get_by_label("API key").fill(key)
    page.keyboard.press("Enter")  # by keyboard: the form submits
    page.locator("#who-name").wait_for()
    return page


def test_overview_spend_queries_and_keys_in_a_browser(service: Service, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = sign_in(context, service.url, service.admin_key)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The key is in no URL and nowhere in the browser's storage.
    assert service.admin_key not in page.url
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"
    assert service.admin_key not in page.evaluate("document.cookie")  # HttpOnly: not even the session's

    # Overview: every graph has drawn data; the tiles equal /summary.
    page.get_by_role("button", name="15m").click()
    for title in GRAPHS:
        panel = page.locator(f'section.panel[data-title="{title}"]')
        panel.locator("canvas").first.wait_for(timeout=20000)
        assert panel.locator(".nodata").count() == 0, title
    summary = httpx.get(
        f"{service.url}/api/v1/monitoring/summary", headers=service.headers, timeout=10
    ).json()
    cost = float(page.locator('section[data-title="Total Cost"] .value').get_attribute("data-value") or "nan")
    assert cost == pytest.approx(summary["costs"]["total_dollars"], abs=1e-9)
    tokens = float(
        page.locator('section[data-title="Total Tokens"] .value').get_attribute("data-value") or "nan"
    )
    assert tokens == summary["costs"]["total_input_tokens"] + summary["costs"]["total_output_tokens"]
    titles = page.locator("section.panel h3").all_inner_texts()
    assert titles[:13] == [
        "HTTP Requests",
        "Active Sessions",
        "Request Rate",
        "Request Latency",
        "Agent Query Rate",
        "Agent Duration",
        "API Cost",
        "Token Usage",
        "Cache Hit Rate",
        "Total Cost",
        "Total Tokens",
        "Authentication",
        "Permissions",
    ]
    shot(page, "overview")
    audit(page, "overview")
    # The numbers: a tick of 0.25 ms is not "0.3 ms", an axis's floating-point zero is "0 ms", and an error
    # budget spent 18 times over gets one decimal (three only between 99.9 % and 100 %).
    formats = page.evaluate(
        "import(new URL('assets/app.js', document.baseURI).href).then((m) => ["
        "m.format('s', 0.00025), m.format('s', 0), m.format('s', 1e-18), m.format('s', 0.0123),"
        "m.format('s', 1.5), m.format('percentunit', 0.9995), m.format('percentunit', -17.6),"
        "m.format('percentunit', 1)])"
    )
    assert formats == ["0.25 ms", "0 ms", "0 ms", "12.3 ms", "1.5 s", "99.950 %", "-1760.0 %", "100.0 %"]
    # A money axis's ticks share the decimals of its step.
    axes = page.evaluate(
        "import(new URL('assets/app.js', document.baseURI).href).then((m) => ["
        "m.ticks('currencyUSD', [0, 0.5, 1, 1.5]), m.ticks('currencyUSD', [0, 500, 1000, 1500]),"
        "m.ticks('currencyUSD', [0, 0.00025, 0.0005]), m.ticks('currencyUSD', [0.1, 0.2, 0.30000000000000004])])"
    )
    assert axes == [
        ["$0.00", "$0.50", "$1.00", "$1.50"],
        ["$0", "$500", "$1,000", "$1,500"],
        ["$0.00000", "$0.00025", "$0.00050"],
        ["$0.10", "$0.20", "$0.30"],
    ]

    # Spend: the month's total is the ledger's.
    page.get_by_role("link", name="Spend").click()
    page.get_by_role("heading", name="Spend", exact=True, level=1).wait_for()
    page.locator("#spend-cost").wait_for()
    month = datetime.now(UTC).strftime("%Y-%m")
    ledger = httpx.get(
        f"{service.url}/api/v1/usage",
        params={"since": f"{month}-01T00:00:00Z", "limit": 0},
        headers=service.headers,
        timeout=10,
    ).json()["totals"]
    assert float(page.locator("#spend-cost").get_attribute("data-value") or "nan") == ledger["cost_dollars"]
    assert int(page.locator("#spend-queries").get_attribute("data-value") or "-1") == ledger["queries"]
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").first.click()
    assert download.value.suggested_filename == f"spend-keys-{month}.csv"
    shot(page, "spend")
    audit(page, "spend")

    # Queries: the ledger's newest rows, then the next page.
    page.get_by_role("link", name="Queries").click()
    page.get_by_role("heading", name="Queries", exact=True, level=1).wait_for()
    rows = page.locator("table tbody tr")
    rows.first.wait_for()
    assert rows.count() == 50
    first_page = rows.first.inner_text()
    page.get_by_role("button", name="Older").click()
    page.get_by_role("button", name="Newer").and_(page.locator(":enabled")).wait_for()
    assert rows.first.inner_text() != first_page
    # A request id is cut at its start: ids ordered by time share their first digits, and the end is what
    # tells one row's from the next.
    tails = page.evaluate(
        """[...document.querySelectorAll("td.clip")].map((td) => {
          const range = document.createRange();
          range.setStart(td.firstChild, td.firstChild.length - 8);
          range.setEnd(td.firstChild, td.firstChild.length);
          const tail = range.getBoundingClientRect(), cell = td.getBoundingClientRect();
          return tail.left >= cell.left && tail.right <= cell.right + 0.5;
        })"""
    )
    assert len(tails) == 50
    assert all(tails)
    shot(page, "queries")
    audit(page, "queries")

    # Keys: a hostile name is text; the secret is shown once; the new key works.
    page.get_by_role("link", name="Keys").click()
    page.get_by_role("heading", name="Keys", exact=True, level=1).wait_for()
    page.get_by_label("Name").fill(HOSTILE)
    page.get_by_label("Role").select_option("user")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-secret").inner_text()
    assert secret.startswith("agb_")
    shot(page, "key-created")
    page.get_by_role("button", name="Done").click()
    page.locator("#new-secret").wait_for(state="detached")  # gone for good: shown this once
    page.get_by_role("cell", name=HOSTILE, exact=True).wait_for()
    assert page.evaluate("window.__pwned") is None
    # At 1280 pixels the table fits: a long name and a revoked key's date wrap, every button is on screen.
    assert page.evaluate(
        "[...document.querySelectorAll('.table-wrap')].map((w) => w.scrollWidth - w.clientWidth)"
    ) == [0]
    revoke = page.get_by_role("button", name=f"Revoke {HOSTILE}")
    assert revoke.is_visible()
    box = revoke.bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= 1280
    shot(page, "keys")
    audit(page, "keys")
    used = httpx.post(
        f"{service.url}/api/v1/agents/assistant/query",
        json={"query": "from the new key"},
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert used.status_code == 200

    # The new key's own console: no keys page, no keys API; revoked, its session ends.
    other = browser.new_context(viewport={"width": 1280, "height": 900})
    theirs = sign_in(other, service.url, secret)
    assert theirs.get_by_role("link", name="Keys").is_hidden()
    assert theirs.request.get(f"{service.url}/api/v1/keys").status == 403
    theirs.goto(service.url + "/console/#/keys")
    theirs.get_by_text("This page needs the permission keys:admin.").wait_for()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Revoke {HOSTILE}").click()
    page.get_by_text("revoked").first.wait_for()
    theirs.reload()
    theirs.get_by_label("API key").wait_for()
    assert theirs.request.get(f"{service.url}/api/v1/console/session").status == 401
    other.close()

    # Alerts: without a Prometheus the page says how to run them.
    page.get_by_role("link", name="Alerts").click()
    page.get_by_text("stack up").first.wait_for()
    audit(page, "alerts")
    assert not errors, errors
    context.close()


def test_a_viewer_reads_but_cannot_manage(service: Service, browser: Browser) -> None:
    viewer = httpx.post(
        f"{service.url}/api/v1/keys",
        json={"name": "console-viewer", "role": "viewer"},
        headers=service.headers,
        timeout=10,
    ).json()["key"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = sign_in(context, service.url, viewer)
    page.locator('section.panel[data-title="Request Rate"] canvas').first.wait_for(timeout=20000)
    assert page.get_by_role("link", name="Keys").is_hidden()
    assert page.request.get(f"{service.url}/api/v1/keys").status == 403
    assert page.request.post(f"{service.url}/api/v1/keys", data={"name": "x", "role": "admin"}).status == 403
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for()
    assert page.request.get(f"{service.url}/api/v1/console/session").status == 401
    context.close()


FOCUSED_NAME = """(want) => {
  const a = document.activeElement;
  if (!a || a === document.body) return false;
  const name = (a.getAttribute("aria-label") || a.textContent || "").trim();
  try { return name === want || a.matches(want); } catch { return name === want; }
}"""


def tab_to(page: Page, target: str, *, limit: int = 150) -> None:
    """Press Tab until the focus is on ``target`` (an accessible name or a CSS selector), which must show
    where the focus is."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(FOCUSED_NAME, target):
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", f"{target}: the focus is invisible"
            return
    raise AssertionError(f"Tab never reaches {target}")


def test_every_page_by_keyboard_alone(service: Service, browser: Browser) -> None:
    """No mouse: the menu, the range picker (the focus stays where it was through the re-render), the CSV
    download, paging, a key created, limited and revoked through its dialogs."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = sign_in(context, service.url, service.admin_key)  # typed, then Enter
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.locator('section.panel[data-title="Request Rate"] canvas').first.wait_for(timeout=20000)

    assert page.get_by_role("button", name="6h").get_attribute("aria-pressed") == "false"
    tab_to(page, "6h")
    page.keyboard.press("Space")
    page.locator('button[aria-pressed="true"]', has_text="6h").wait_for()
    assert page.evaluate(FOCUSED_NAME, "6h"), "the range picked lost the focus in the re-render"
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED_NAME, "24h")

    tab_to(page, 'nav a[data-page="spend"]')
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Spend", exact=True, level=1).wait_for()
    with page.expect_download() as download:
        tab_to(page, "Download CSV")  # the page's first: the focus went into the page opened
        page.keyboard.press("Enter")
    assert download.value.suggested_filename.startswith("spend-keys-")

    tab_to(page, 'nav a[data-page="queries"]')
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Queries", exact=True, level=1).wait_for()
    page.locator("table tbody tr").first.wait_for()
    tab_to(page, "Older")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Newer").and_(page.locator(":enabled")).wait_for()

    tab_to(page, 'nav a[data-page="keys"]')
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Keys", exact=True, level=1).wait_for()
    tab_to(page, "#k-name")
    page.keyboard.type("by-keyboard")
    page.keyboard.press("Enter")  # submits the form
    page.locator("#new-secret").wait_for()
    assert page.evaluate(FOCUSED_NAME, "Copy"), "the dialog did not take the focus"
    page.keyboard.press("Escape")  # closes it, as every dialog
    page.locator("#new-secret").wait_for(state="detached")
    page.get_by_role("cell", name="by-keyboard", exact=True).wait_for()
    tab_to(page, "Limits of by-keyboard")
    page.keyboard.press("Enter")
    assert page.evaluate(FOCUSED_NAME, "#l-budget")
    page.keyboard.type("5")
    page.keyboard.press("Enter")
    page.get_by_text("Limits of by-keyboard saved.").wait_for()
    keys = httpx.get(f"{service.url}/api/v1/keys", headers=service.headers, timeout=10).json()
    mine = next(k for k in keys if k["name"] == "by-keyboard")
    assert mine["monthly_budget_dollars"] == 5
    page.once("dialog", lambda d: d.accept())
    tab_to(page, "Revoke by-keyboard")
    page.keyboard.press("Enter")
    page.get_by_text("Revoked by-keyboard.").wait_for()

    tab_to(page, 'nav a[data-page="alerts"]')
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Alerts", exact=True, level=1).wait_for()
    tab_to(page, "Sign out")
    page.keyboard.press("Enter")
    page.get_by_label("API key").wait_for()
    assert not errors, errors
    context.close()


@pytest.mark.parametrize(("width", "scheme"), [(390, "light"), (1280, "dark")])
def test_small_screens_and_dark_mode(service: Service, browser: Browser, width: int, scheme: str) -> None:
    context = browser.new_context(viewport={"width": width, "height": 844}, color_scheme=scheme)
    page = sign_in(context, service.url, service.admin_key)
    page.locator('section.panel[data-title="Request Rate"] canvas').first.wait_for(timeout=20000)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px"
    shot(page, f"overview-{width}-{scheme}")
    audit(page, f"overview {width} {scheme}")
    context.close()


def test_with_stack_up_the_charts_alerts_and_traces_read_it(tmp_path: Path, browser: Browser) -> None:
    """As a user runs it: `stack up` (the repo's monitoring/, a real Prometheus and Alertmanager), the
    service on two workers with the URLs it prints and an OTLP endpoint; the charts read Prometheus, the
    Alerts page Alertmanager (the Watchdog fires), and a query's trace id links to the trace it exported."""
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    port = free_port()
    options = StackOptions(
        source=MONITORING,
        run_dir=tmp_path / "stack",
        api=f"127.0.0.1:{port}",
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        grafana_port=free_port(),
        fast=True,
    )
    running = stack.up(options)
    receiver = OtlpReceiver()
    traces = "http://traces.example/trace/{trace_id}"
    service = Service(
        tmp_path / "service",
        port=port,
        workers=2,
        env={
            "AGENTIC_PROMETHEUS_URL": running.url("prometheus"),
            "AGENTIC_ALERTMANAGER_URL": running.url("alertmanager"),
            "AGENTIC_TRACES_URL": traces,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    try:
        # In a thread: Playwright's sync API holds this thread's event loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, generate(service.url, service.admin_key, 20, 5, quiet=True)).result()
        wait_until(
            lambda: httpx.get(
                f"{running.url('prometheus')}/api/v1/query",
                params={"query": "sum(rate(http_requests_total[1m])) > 0"},
                timeout=5,
            ).json()["data"]["result"],
            timeout=30,
            what="Prometheus to have scraped the traffic",
        )
        wait_until(
            lambda: any(
                a["labels"]["alertname"] == "Watchdog"
                for a in httpx.get(f"{running.url('alertmanager')}/api/v2/alerts", timeout=5).json()
            ),
            timeout=60,
            what="the Watchdog in Alertmanager",
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = sign_in(context, service.url, service.admin_key)
        page.get_by_text("Charts read Prometheus.").wait_for()
        page.get_by_role("button", name="15m").click()
        for title in GRAPHS[:3]:
            page.locator(f'section.panel[data-title="{title}"] canvas').first.wait_for(timeout=20000)
        shot(page, "overview-prometheus")

        page.get_by_role("link", name="Alerts").click()
        page.get_by_text("What fires now, from alertmanager.").wait_for()
        page.get_by_role("cell", name="Watchdog", exact=True).wait_for(timeout=30000)
        shot(page, "alerts-alertmanager")
        audit(page, "alerts from alertmanager")

        page.get_by_role("link", name="Queries").click()
        page.locator("table tbody tr").first.wait_for()
        newest = httpx.get(
            f"{service.url}/api/v1/usage", params={"limit": 1}, headers=service.headers, timeout=10
        ).json()["records"][0]
        trace_id = newest["trace_id"]
        assert trace_id
        assert len(trace_id) == 32
        link = page.locator("table tbody tr").first.get_by_role("link")
        assert link.get_attribute("href") == traces.replace("{trace_id}", trace_id)
        assert link.get_attribute("rel") == "noopener noreferrer"
        wait_until(
            lambda: any(span.trace_id == trace_id for span in receiver.spans),
            timeout=10,
            what="the linked trace at the OTLP endpoint",
        )
        shot(page, "queries-traces")
        context.close()
    finally:
        service.stop()
        stack.down(options.run_dir)
        receiver.stop()
