// The Agentic Backend console. No framework, no build step: what the server sends is what runs.
// Everything a user or a caller can name (key names, agent types, labels, error texts) goes into the page
// as text (textContent), never as HTML.

const state = { session: null, range: "1h", auto: true, timer: null, charts: [], page: null };
const REFRESH_MS = 30000;
const COLORS = ["#3f7de8", "#e8743b", "#19a979", "#ed4a7b", "#945ecf", "#13a4b4", "#c29a00", "#6f7c91"];

// ---- helpers -------------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  const method = options.method || "GET";
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.session && state.session.csrf_token) {
    headers["X-CSRF-Token"] = state.session.csrf_token;
  }
  const answer = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (answer.status === 204) return null;
  let body = null;
  try {
    body = await answer.json();
  } catch {
    body = null;
  }
  if (!answer.ok) {
    const detail = body && (body.detail || (body.error && body.error.message));
    if (answer.status === 401 && !options.signingIn) signedOut("Your session has ended. Sign in again.");
    throw new ApiError(answer.status, typeof detail === "string" ? detail : `HTTP ${answer.status}`);
  }
  return body;
}

function can(permission) {
  return !!state.session && state.session.permissions.includes(permission);
}

function say(text) {
  const status = document.getElementById("status");
  status.textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => (status.textContent = ""), 6000);
}

const view = () => document.getElementById("view");

function show(...nodes) {
  // A re-render (auto-refresh, a range picked) keeps the keyboard's place: the control that had the focus
  // gets it back (matched by its data-key or id), or a keyboard user would start again from the top.
  const active = document.activeElement;
  const key = active && active !== view() && view().contains(active) ? active.dataset.key || active.id : "";
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
  view().replaceChildren(...nodes.flat(Infinity).filter((node) => node));
  if (key) {
    const again = view().querySelector(`[data-key="${CSS.escape(key)}"], #${CSS.escape(key)}`);
    if (again && !again.disabled) again.focus({ preventScroll: true });
    else view().focus({ preventScroll: true });
  }
}

// ---- numbers --------------------------------------------------------------------------------------------

function short(value) {
  const abs = Math.abs(value);
  for (const [size, suffix] of [[1e9, "B"], [1e6, "M"], [1e3, "k"]]) {
    if (abs >= size) return (value / size).toFixed(abs >= size * 100 ? 0 : 1) + suffix;
  }
  // Three significant digits at most, no trailing zeros: 0.75, 2.5, 12.3 (axis ticks and tiles alike).
  return abs >= 100 || Number.isInteger(value) ? String(Math.round(value)) : String(Number(value.toPrecision(abs >= 1 ? 3 : 2)));
}

function dollars(value, digits) {
  // A query's cost is often under a hundredth of a cent: two significant digits (up to 8 decimals), so a
  // cost is never shown as $0.0000 when it is not zero.
  const size = Math.abs(value);
  if (digits === undefined) digits = size >= 100 ? 2 : size >= 1 ? 3 : size === 0 ? 2 : Math.min(8, Math.max(4, 1 - Math.floor(Math.log10(size))));
  return "$" + value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function format(unit, value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  switch (unit) {
    case "s":
      // As short() does: a tick of 0.25 ms reads 0.25 ms, not 0.3; an axis's zero may be 1e-18.
      if (Math.abs(value) < 1e-9) return "0 ms";
      return Math.abs(value) >= 1 ? short(value) + " s" : short(value * 1000) + " ms";
    case "reqps":
      return short(value) + "/s";
    case "percentunit": {
      // Three decimals only where they tell 99.9 % from 99.95 %; an error budget spent 18 times over is -1760.0 %.
      const near = Math.abs(value) >= 0.999 && Math.abs(value) < 1;
      return (value * 100).toFixed(near ? 3 : 1) + " %";
    }
    case "currencyUSD":
      return dollars(value);
    case "bytes":
      return value >= 1048576 ? (value / 1048576).toFixed(1) + " MiB" : short(value) + " B";
    default:
      return short(value);
  }
}

// An axis's ticks share one number of decimals, those of its step: $0.50 $1.00 $1.50, not $0.5000 $1.000.
function ticks(unit, values) {
  if (unit !== "currencyUSD" || values.length < 2) return values.map((v) => format(unit, v));
  const step = Math.abs(values[1] - values[0]);
  let decimals = 0;
  while (decimals < 8 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals++;
  return values.map((v) => dollars(v, decimals === 0 ? 0 : Math.max(2, decimals)));
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function whenShort(iso) {
  // Today's rows by their time alone (the ledger's recent queries mostly are); the CSV keeps the ISO time.
  const at = new Date(iso);
  if (at.toDateString() === new Date().toDateString()) return at.toLocaleTimeString();
  return at.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// ---- session ---------------------------------------------------------------------------------------------

function signedOut(message) {
  state.session = null;
  stopRefresh();
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  renderSignIn(message);
}

function renderSignIn(message) {
  const error = el("p", { class: "error", role: "alert" }, message || "");
  const input = el("input", {
    id: "key",
    name: "key",
    type: "password",
    autocomplete: "off",
    required: true,
    placeholder: "agb_…",
  });
  const form = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        error.textContent = "";
        try {
          state.session = await api("/api/v1/console/session", {
            method: "POST",
            body: { key: input.value },
            signingIn: true,
          });
          input.value = "";
          started();
        } catch (exc) {
          error.textContent = exc.message;
        }
      },
    },
    el("label", { for: "key" }, "API key", input),
    el("button", { type: "submit" }, "Sign in"),
  );
  show(
    el(
      "section",
      { class: "card signin", "aria-labelledby": "signin-title" },
      el("h1", { id: "signin-title" }, "Sign in to the console"),
      el(
        "p",
        { class: "note" },
        "Paste an API key. It is exchanged for a session cookie and is not kept in this browser; " +
          "what you see depends on the key's role.",
      ),
      form,
      error,
    ),
  );
  input.focus();
}

function started() {
  const nav = document.getElementById("nav");
  for (const link of nav.querySelectorAll("a[data-needs]")) link.hidden = !can(link.dataset.needs);
  nav.hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-name").textContent = `${state.session.name} (${state.session.role})`;
  route();
}

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await api("/api/v1/console/session", { method: "DELETE" });
  } catch {
    // already gone
  }
  signedOut("Signed out.");
});

// ---- routing ---------------------------------------------------------------------------------------------

const PAGES = {
  overview: { render: renderOverview, needs: "monitoring:read" },
  spend: { render: renderSpend, needs: "usage:read" },
  queries: { render: renderQueries, needs: "usage:read" },
  keys: { render: renderKeys, needs: "keys:admin" },
  alerts: { render: renderAlerts, needs: "monitoring:read" },
};

function route() {
  if (!state.session) return;
  stopRefresh();
  let page = (location.hash.match(/^#\/(\w+)/) || [])[1];
  if (!PAGES[page]) page = can("monitoring:read") ? "overview" : "spend";
  state.page = page;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!can(PAGES[page].needs)) {
    show(el("section", { class: "card" }, el("h1", {}, "Not for this key"), el("p", {}, `This page needs the permission ${PAGES[page].needs}.`)));
    return;
  }
  PAGES[page].render().catch((exc) => {
    if (exc instanceof ApiError && exc.status === 401) return;
    show(el("section", { class: "card" }, el("h1", {}, "Something went wrong"), el("p", { class: "error" }, exc.message)));
  });
}

window.addEventListener("hashchange", () => {
  route();
  view().focus({ preventScroll: true }); // the next Tab goes into the page just opened, not back to the menu
});

function stopRefresh() {
  clearTimeout(state.timer);
  state.timer = null;
}

function refreshLater(render) {
  stopRefresh();
  if (state.auto) state.timer = setTimeout(() => render(true).catch(() => {}), REFRESH_MS);
}

// ---- overview --------------------------------------------------------------------------------------------

const WIDTH = { 6: "w6", 8: "w8", 12: "w12", 24: "w24" };

async function renderOverview(refreshing = false) {
  const [data, health] = await Promise.all([
    api(`/api/v1/console/overview?range=${state.range}`),
    fetch("/api/v1/monitoring/health", { headers: { Accept: "application/json" } }).then((r) => r.json()),
  ]);
  if (state.page !== "overview") return;
  const source =
    data.source === "prometheus"
      ? "Prometheus"
      : "the service's own history" +
        (data.history_since ? ` (since ${new Date(data.history_since * 1000).toLocaleString()})` : "");
  const header = el(
    "div",
    { class: "bar" },
    el("div", {}, el("h1", {}, "Overview"), el("p", { class: "sub" }, `Charts read ${source}.`)),
    el("div", { class: "spacer" }),
    rangePicker(),
    el(
      "label",
      { class: "inline" },
      el("input", {
        type: "checkbox",
        id: "auto-refresh",
        checked: state.auto,
        onchange: (event) => {
          state.auto = event.target.checked;
          if (state.auto) refreshLater(renderOverview);
          else stopRefresh();
        },
      }),
      "Refresh every 30 s",
    ),
  );
  const chips = el(
    "div",
    { class: "chips", "aria-label": "Component health" },
    el("span", { class: `chip ${health.status}` }, `service: ${health.status}`),
    Object.entries(health.components).map(([name, c]) => el("span", { class: `chip ${c.status}`, title: c.detail || "" }, `${name}: ${c.status}`)),
  );
  // The dashboard's rows, in its order: the seed's panels (no row title) first.
  const rows = [];
  for (const panel of data.panels) {
    const title = panel.row || "Traffic, agents, cost and security";
    if (!rows.length || rows[rows.length - 1].title !== title) rows.push({ title, panels: [] });
    rows[rows.length - 1].panels.push(panel);
  }
  const grids = rows.map((row) => el("div", { class: "grid" }, row.panels.map((p) => panelNode(p))));
  const scroll = refreshing ? window.scrollY : 0;
  show(header, el("h2", {}, "Health"), chips, rows.map((row, i) => [el("h2", {}, row.title), grids[i]]));
  drawCharts(data, rows.flatMap((row) => row.panels), grids);
  requestAnimationFrame(fitCharts); // once the layout has settled (a scrollbar may have appeared)
  if (refreshing) window.scrollTo(0, scroll);
  refreshLater(renderOverview);
}

function rangePicker() {
  return el(
    "div",
    { class: "segmented", role: "group", "aria-label": "Time range" },
    ["15m", "1h", "6h", "24h"].map((range) =>
      el(
        "button",
        {
          type: "button",
          "data-key": `range-${range}`,
          "aria-pressed": String(state.range === range),
          onclick: () => {
            state.range = range;
            renderOverview().catch((exc) => say(exc.message));
          },
        },
        range,
      ),
    ),
  );
}

function panelWidth(panel) {
  if (panel.kind === "stat") return "w6";
  return panel.row && panel.row.startsWith("Waiting") ? "w8" : "w12";
}

function panelNode(panel) {
  const node = el(
    "section",
    { class: `panel ${panel.kind} ${panelWidth(panel)}`, "aria-label": panel.title, "data-title": panel.title },
    el("h3", {}, panel.title),
    el("p", { class: "help" }, panel.description),
  );
  if (panel.kind === "stat") {
    const lines = panel.lines;
    if (!lines.length) node.append(el("div", { class: "value" }, "–"));
    else if (lines.length === 1) node.append(el("div", { class: "value", "data-value": lines[0].values[0] }, format(panel.unit, lines[0].values[0])));
    else {
      const total = lines.reduce((sum, line) => sum + (line.values[0] || 0), 0);
      node.append(
        el("div", { class: "value", "data-value": total }, format(panel.unit, total)),
        el("div", { class: "parts" }, lines.map((l) => `${l.name} ${format(panel.unit, l.values[0])}`).join(" · ")),
      );
    }
  } else {
    node.append(el("div", { class: "chart", role: "img", "aria-label": chartSummary(panel) }));
  }
  return node;
}

function chartSummary(panel) {
  if (!panel.lines.length) return `${panel.title}: no data in this range`;
  const latest = panel.lines.map((line) => {
    const last = [...line.values].reverse().find((v) => v !== null);
    return `${line.name} ${format(panel.unit, last)}`;
  });
  return `${panel.title}, latest: ${latest.slice(0, 6).join(", ")}`;
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function drawCharts(data, panels, grids) {
  const nodes = grids.flatMap((grid) => [...grid.querySelectorAll(".panel")]);
  panels.forEach((panel, i) => {
    if (panel.kind !== "graph") return;
    const box = nodes[i].querySelector(".chart");
    if (!panel.lines.length) {
      box.replaceWith(el("div", { class: "nodata" }, "No data in this range yet."));
      return;
    }
    const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid") }, ticks: { stroke: cssVar("--grid") } };
    const options = {
      width: Math.max(240, box.clientWidth),
      height: 200,
      legend: { show: false },
      cursor: { points: { size: 6 } },
      scales: { x: { time: true }, y: panel.unit === "percentunit" ? { range: [0, 1] } : { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [axis, { ...axis, size: 64, values: (u, splits) => ticks(panel.unit, splits) }],
      series: [
        {},
        ...panel.lines.map((line, k) => ({
          label: line.name,
          stroke: COLORS[k % COLORS.length],
          width: 1.5,
          fill: COLORS[k % COLORS.length] + "18",
          spanGaps: false,
          // A line of one or two points (a service just started) is drawn as dots, or it would not show.
          points: { show: line.values.filter((v) => v !== null).length <= 2, size: 5 },
          value: (u, v) => format(panel.unit, v),
        })),
      ],
    };
    const chart = new uPlot(options, [data.times, ...panel.lines.map((line) => line.values)], box);
    state.charts.push(chart);
    const legend = el(
      "div",
      { class: "legend" },
      panel.lines.map((line, k) => {
        const swatch = el("span", {}, line.name);
        swatch.style.setProperty("--swatch", COLORS[k % COLORS.length]);
        return swatch;
      }),
    );
    box.after(legend);
  });
}

function fitCharts() {
  for (const chart of state.charts) {
    const width = chart.root.parentElement.clientWidth;
    if (width && Math.abs(width - chart.width) > 1) chart.setSize({ width, height: 200 });
  }
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(fitCharts, 150);
});

// ---- tables and CSV --------------------------------------------------------------------------------------

function table(caption, columns, rows, options = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.title)));
  const body = rows.map((row) =>
    el(
      "tr",
      {},
      columns.map((c) =>
        c.clip // a long identifier: cut on screen (its whole text in the cell, the tooltip and the CSV)
          ? el("td", { class: "clip", title: c.text(row) }, c.text(row))
          : el("td", { class: c.num ? "num" : c.wrap ? "wrap" : null }, c.cell ? c.cell(row) : c.text(row)),
      ),
    ),
  );
  const tools = options.csv
    ? el("button", { type: "button", class: "quiet", onclick: () => downloadCsv(options.csv, columns, rows) }, "Download CSV")
    : null;
  return el(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption }, // scrolls by keyboard too
    el("table", {}, el("caption", {}, el("span", {}, caption), " ", tools), el("thead", {}, head), el("tbody", {}, body)),
    rows.length ? null : el("p", { class: "note", style: null }, "Nothing yet."),
  );
}

function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = "'" + text; // a spreadsheet must not run a cell as a formula
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function downloadCsv(name, columns, rows) {
  const lines = [columns.map((c) => csvCell(c.title)).join(",")];
  for (const row of rows) lines.push(columns.map((c) => csvCell(c.raw ? c.raw(row) : c.text(row))).join(","));
  const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
  const link = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

const money = (title, pick) => ({ title, num: true, text: (r) => dollars(pick(r)), raw: (r) => pick(r) });
const count = (title, pick) => ({ title, num: true, text: (r) => pick(r).toLocaleString("en-US"), raw: (r) => pick(r) });

// ---- spend -----------------------------------------------------------------------------------------------

async function renderSpend() {
  if (!state.month) state.month = new Date().toISOString().slice(0, 7);
  const data = await api(`/api/v1/console/spend?month=${encodeURIComponent(state.month)}`);
  if (state.page !== "spend") return;
  const month = el("input", {
    type: "month",
    id: "month",
    value: data.month,
    onchange: (event) => {
      if (!event.target.value) return;
      state.month = event.target.value;
      renderSpend().catch((exc) => say(exc.message));
    },
  });
  const t = data.totals;
  const tiles = el(
    "div",
    { class: "grid" },
    [
      ["Cost", dollars(t.cost_dollars), "spend-cost", t.cost_dollars],
      ["Queries", t.queries.toLocaleString("en-US"), "spend-queries", t.queries],
      ["Input tokens", t.input_tokens.toLocaleString("en-US"), "spend-input", t.input_tokens],
      ["Output tokens", t.output_tokens.toLocaleString("en-US"), "spend-output", t.output_tokens],
    ].map(([title, text, id, raw]) => el("section", { class: "panel stat w6" }, el("h3", {}, title), el("div", { class: "value", id, "data-value": raw }, text))),
  );
  const sums = [count("Queries", (r) => r.queries), count("Input tokens", (r) => r.input_tokens), count("Output tokens", (r) => r.output_tokens), money("Cost", (r) => r.cost_dollars)];
  const keyColumns = [
    { title: "Key", wrap: true, text: (r) => r.name + (r.revoked ? " (revoked)" : "") },
    { title: "Role", text: (r) => r.role },
    ...sums,
    {
      title: "Budget this month",
      cell: (r) => {
        if (r.budget_dollars === null) return "no budget";
        const used = r.spent_dollars + r.reserved_dollars;
        const share = r.budget_dollars > 0 ? used / r.budget_dollars : 1;
        const meter = el("span", { class: share >= 1 ? "meter over" : "meter", role: "img", "aria-label": `${Math.round(share * 100)} % of the budget` }, el("i"));
        meter.firstChild.style.width = `${Math.min(100, share * 100)}%`;
        const held = r.reserved_dollars > 0 ? ` (${dollars(r.reserved_dollars)} held)` : "";
        return el("span", {}, meter, ` ${dollars(r.spent_dollars)} of ${dollars(r.budget_dollars, 2)}${held}`);
      },
      text: (r) => (r.budget_dollars === null ? "no budget" : `${r.spent_dollars} of ${r.budget_dollars}`),
    },
    { title: "Projected month", num: true, text: (r) => (r.projected_dollars === null ? "–" : dollars(r.projected_dollars)), raw: (r) => r.projected_dollars },
    {
      title: "Limits",
      text: (r) => [r.rpm_limit ? `${r.rpm_limit}/min` : "", r.tpm_limit ? `${short(r.tpm_limit)} tokens/min` : ""].filter(Boolean).join(" · ") || "none",
    },
  ];
  const named = (title) => [{ title, text: (r) => r.name }, ...sums];
  show(
    el(
      "div",
      { class: "bar" },
      el("div", {}, el("h1", {}, "Spend"), el("p", { class: "sub" }, "From the usage ledger: the same cents as GET /api/v1/usage for the month (UTC).")),
      el("div", { class: "spacer" }),
      el("label", { for: "month" }, "Month", month),
    ),
    tiles,
    el("h2", {}, "By key"),
    table("Keys: spend, budget and limits", keyColumns, data.by_key, { csv: `spend-keys-${data.month}.csv` }),
    el("h2", {}, "By model"),
    table("Models", named("Model"), data.by_model, { csv: `spend-models-${data.month}.csv` }),
    el("h2", {}, "By agent type"),
    table("Agent types", named("Agent type"), data.by_agent_type, { csv: `spend-agent-types-${data.month}.csv` }),
    el("h2", {}, "By day"),
    table("Days (UTC)", named("Day"), data.by_day, { csv: `spend-days-${data.month}.csv` }),
  );
}

// ---- queries ---------------------------------------------------------------------------------------------

async function renderQueries() {
  const filters = state.queryFilters || (state.queryFilters = { key_id: "", agent_type: "", status: "", since: "", until: "" });
  const pages = state.queryPages || (state.queryPages = [null]);
  const params = new URLSearchParams({ limit: "50" });
  for (const [name, value] of Object.entries(filters)) {
    if (!value) continue;
    params.set(name, name === "since" || name === "until" ? new Date(value).toISOString() : value);
  }
  const before = pages[pages.length - 1];
  if (before) params.set("before_id", before);
  const data = await api(`/api/v1/usage?${params}`);
  if (state.page !== "queries") return;
  const field = (name, label, input) => el("label", { for: `f-${name}` }, label, input);
  const input = (name, attrs) => el("input", { id: `f-${name}`, name, value: filters[name], ...attrs });
  const status = el(
    "select",
    { id: "f-status", name: "status" },
    ["", "success", "error", "rejected"].map((s) => el("option", { value: s, selected: filters.status === s }, s || "any")),
  );
  const form = el(
    "form",
    {
      class: "form-row card",
      onsubmit: (event) => {
        event.preventDefault();
        const values = new FormData(event.target);
        for (const name of Object.keys(filters)) filters[name] = (values.get(name) || "").trim();
        state.queryPages = [null];
        renderQueries().catch((exc) => say(exc.message));
      },
    },
    can("usage:admin") ? field("key_id", "Key id", input("key_id", { inputmode: "numeric", pattern: "[0-9]*", size: 6 })) : null,
    field("agent_type", "Agent type", input("agent_type", { size: 14 })),
    field("status", "Status", status),
    field("since", "Since", input("since", { type: "datetime-local" })),
    field("until", "Until", input("until", { type: "datetime-local" })),
    el("button", { type: "submit", "data-key": "filter" }, "Filter"),
  );
  const traceCell = (r) => {
    if (!r.trace_id) return "–";
    if (!state.session.traces_url) return r.trace_id;
    return el("a", { href: state.session.traces_url.replace("{trace_id}", encodeURIComponent(r.trace_id)), target: "_blank", rel: "noopener noreferrer" }, r.trace_id.slice(0, 12) + "…");
  };
  const columns = [
    { title: "Time", text: (r) => whenShort(r.created_at), raw: (r) => r.created_at },
    { title: "Key", num: true, text: (r) => r.key_id },
    { title: "Agent type", text: (r) => r.agent_type },
    { title: "Model", text: (r) => r.model },
    { title: "Status", text: (r) => r.status + (r.error_kind ? ` (${r.error_kind})` : "") },
    count("In", (r) => r.input_tokens),
    count("Out", (r) => r.output_tokens),
    money("Cost", (r) => r.cost_dollars),
    { title: "Duration", num: true, text: (r) => format("s", r.duration_seconds), raw: (r) => r.duration_seconds },
    { title: "Cache", text: (r) => (r.cached ? "hit" : "–") },
    { title: "Request id", clip: true, text: (r) => r.request_id },
    { title: "Trace", cell: traceCell, text: (r) => r.trace_id || "" },
  ];
  const records = data.records;
  const pager = el(
    "div",
    { class: "pager" },
    el("button", { type: "button", class: "quiet", disabled: pages.length <= 1, "data-key": "newer", onclick: () => { pages.pop(); renderQueries().catch((e) => say(e.message)); } }, "Newer"),
    el("button", { type: "button", class: "quiet", disabled: records.length < 50, "data-key": "older", onclick: () => { pages.push(records[records.length - 1].id); renderQueries().catch((e) => say(e.message)); } }, "Older"),
  );
  const t = data.totals;
  show(
    el("div", { class: "bar" }, el("div", {}, el("h1", {}, "Queries"), el("p", { class: "sub" }, `Newest first. Matching: ${t.queries.toLocaleString("en-US")} queries, ${dollars(t.cost_dollars)}.`))),
    form,
    el("h2", {}, "Ledger"),
    table("Recent queries", columns, records, { csv: "queries.csv" }),
    pager,
  );
}

// ---- keys ------------------------------------------------------------------------------------------------

async function renderKeys() {
  const keys = await api("/api/v1/keys");
  if (state.page !== "keys") return;
  const name = el("input", { id: "k-name", name: "name", required: true, maxlength: 100, size: 18 });
  const role = el("select", { id: "k-role", name: "role" }, ["user", "viewer", "operator", "admin"].map((r) => el("option", { value: r }, r)));
  const numberInput = (id, attrs) => el("input", { id, type: "number", min: attrs.min, step: attrs.step, size: 8 });
  const budget = numberInput("k-budget", { min: 0, step: "0.01" });
  const rpm = numberInput("k-rpm", { min: 1, step: 1 });
  const tpm = numberInput("k-tpm", { min: 1, step: 1 });
  const num = (input) => (input.value === "" ? null : Number(input.value));
  const create = el(
    "form",
    {
      class: "form-row card",
      "aria-label": "Create a key",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const created = await api("/api/v1/keys", {
            method: "POST",
            body: { name: name.value, role: role.value, monthly_budget_dollars: num(budget), rpm_limit: num(rpm), tpm_limit: num(tpm) },
          });
          showSecret(created);
        } catch (exc) {
          say(exc.message);
        }
      },
    },
    el("label", { for: "k-name" }, "Name", name),
    el("label", { for: "k-role" }, "Role", role),
    el("label", { for: "k-budget" }, "Monthly budget ($)", budget),
    el("label", { for: "k-rpm" }, "Requests/min", rpm),
    el("label", { for: "k-tpm" }, "Tokens/min", tpm),
    el("button", { type: "submit", "data-key": "create-key" }, "Create key"),
  );
  const columns = [
    { title: "Id", num: true, text: (k) => k.id },
    { title: "Name", wrap: true, text: (k) => k.name },
    { title: "Role", text: (k) => k.role },
    { title: "Created", text: (k) => when(k.created_at) },
    { title: "Budget", num: true, text: (k) => (k.monthly_budget_dollars === null ? "default" : dollars(k.monthly_budget_dollars, 2)) },
    { title: "Requests/min", num: true, text: (k) => k.rpm_limit ?? "default" },
    { title: "Tokens/min", num: true, text: (k) => k.tpm_limit ?? "default" },
    { title: "State", wrap: true, text: (k) => (k.revoked_at ? `revoked ${when(k.revoked_at)}` : "active") },
    {
      title: "Actions",
      cell: (k) =>
        k.revoked_at
          ? ""
          : el(
              "span",
              { class: "chips" },
              el("button", { type: "button", class: "quiet", onclick: () => editLimits(k), "data-key": `limits-${k.id}`, "aria-label": `Limits of ${k.name}` }, "Limits"),
              k.id === state.session.key_id
                ? null
                : el("button", { type: "button", class: "danger", onclick: () => revoke(k), "aria-label": `Revoke ${k.name}` }, "Revoke"),
            ),
      text: () => "",
    },
  ];
  show(
    el("div", { class: "bar" }, el("div", {}, el("h1", {}, "Keys"), el("p", { class: "sub" }, "Create, limit and revoke API keys. A revoked key stops working at once, on every worker and replica."))),
    el("h2", {}, "New key"),
    create,
    el("h2", {}, "All keys"),
    table("API keys", columns, keys),
  );
}

function dialog(title, ...content) {
  const box = el("dialog", { "aria-labelledby": "dialog-title" }, el("h2", { id: "dialog-title" }, title), ...content);
  box.addEventListener("close", () => box.remove());
  document.body.append(box);
  box.showModal();
  return box;
}

function showSecret(created) {
  const secret = el("p", { class: "secret", id: "new-secret" }, created.key);
  const copied = el("span", { class: "note", role: "status" });
  const box = dialog(
    `Key “${created.name}” created`,
    el("p", {}, "Copy the secret now: it is shown this once and cannot be read again."),
    secret,
    el(
      "div",
      { class: "form-row" },
      el("button", {
        type: "button",
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(created.key);
            copied.textContent = "Copied.";
          } catch {
            const range = document.createRange();
            range.selectNodeContents(secret);
            getSelection().removeAllRanges();
            getSelection().addRange(range);
            copied.textContent = "Selected: press Ctrl+C.";
          }
        },
      }, "Copy"),
      el("button", { type: "button", class: "quiet", onclick: () => box.close() }, "Done"),
      copied,
    ),
  );
  box.addEventListener("close", () => renderKeys().catch((exc) => say(exc.message)));
}

async function revoke(key) {
  if (!confirm(`Revoke the key “${key.name}”? Clients using it are refused from the next request on.`)) return;
  try {
    await api(`/api/v1/keys/${key.id}`, { method: "DELETE" });
    say(`Revoked ${key.name}.`);
  } catch (exc) {
    say(exc.message);
  }
  renderKeys().catch((exc) => say(exc.message));
}

function editLimits(key) {
  const field = (id, label, value, attrs) => el("label", { for: id }, label, el("input", { id, type: "number", value: value ?? "", ...attrs }));
  const form = el(
    "form",
    {
      method: "dialog",
      class: "form-row",
      onsubmit: async (event) => {
        event.preventDefault();
        const value = (id) => {
          const text = form.querySelector(`#${id}`).value;
          return text === "" ? null : Number(text);
        };
        try {
          await api(`/api/v1/keys/${key.id}/limits`, {
            method: "PUT",
            body: { monthly_budget_dollars: value("l-budget"), rpm_limit: value("l-rpm"), tpm_limit: value("l-tpm") },
          });
          box.close();
          say(`Limits of ${key.name} saved.`);
        } catch (exc) {
          say(exc.message);
        }
      },
    },
    field("l-budget", "Monthly budget ($)", key.monthly_budget_dollars, { min: 0, step: "0.01" }),
    field("l-rpm", "Requests/min", key.rpm_limit, { min: 1, step: 1 }),
    field("l-tpm", "Tokens/min", key.tpm_limit, { min: 1, step: 1 }),
    el("button", { type: "submit" }, "Save"),
  );
  const box = dialog(`Limits of “${key.name}”`, el("p", { class: "note" }, "Empty: the service's default."), form);
  box.addEventListener("close", () => renderKeys().catch((exc) => say(exc.message)));
}

// ---- alerts ----------------------------------------------------------------------------------------------

async function renderAlerts() {
  const data = await api("/api/v1/console/alerts");
  if (state.page !== "alerts") return;
  const head = el("div", { class: "bar" }, el("div", {}, el("h1", {}, "Alerts"), el("p", { class: "sub" }, data.configured ? `What fires now, from ${data.source}.` : "No alert source is configured.")));
  if (!data.configured) {
    show(head, el("section", { class: "card" }, el("p", {}, data.how)));
    return;
  }
  const columns = [
    { title: "Alert", text: (a) => a.name },
    { title: "Severity", text: (a) => a.severity },
    { title: "State", text: (a) => a.state },
    { title: "Since", text: (a) => when(a.since) },
    { title: "Summary", text: (a) => a.summary },
  ];
  show(head, table("Firing and pending alerts", columns, data.alerts));
  refreshLater(renderAlerts);
}

// ---- start -----------------------------------------------------------------------------------------------

(async () => {
  try {
    state.session = await api("/api/v1/console/session", { signingIn: true });
    started();
  } catch {
    renderSignIn("");
  }
})();

export { format, ticks }; // for the browser test of the numbers (tests/integration/test_console_browser.py)
