// TurboMode signals dashboard: a static page over the service's own API (/signals, /sectors,
// /status).
// Views by URL hash: #/ overview, #/cap/<large|mid|small> (BUY and SELL tabs, top 20 by
// effective confidence), #/sectors (bullish and bearish tabs), #/signal/<symbol>/<horizon> (one
// signal and the five features that contributed most to its score), and the performance pages
// over /performance/* (figures and SVG charts drawn by the server): #/equity (a paper wallet
// beside SPY, drawdowns, P&L by month), #/hits (outcome hit rate by horizon, sector, month),
// #/trades (closed trades through what-if filters), #/top (top 10 by confidence, with age).
// Refreshes every 60 s, or every ?refresh=N seconds. Each finished render increments
// <body data-renders>.
"use strict";

const CAPS = { large: "Large cap", mid: "Mid cap", small: "Small cap" };
const TOP = 20;
const query = new URLSearchParams(window.location.search);
const REFRESH_S = Math.max(1, Number(query.get("refresh")) || 60);
const tabs = { large: "BUY", mid: "BUY", small: "BUY", sectors: "bullish" };
const PAGES = new Set(["equity", "hits", "trades", "top"]);
// The performance pages' choices: the wallet shown and the trade page's what-if filters.
const perf = { wallet: "", min_confidence: "", tier: "", regime: "", sector: "" };
const view = document.getElementById("view");
const statusLine = document.getElementById("status");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(`${url}: ${message}`);
  }
  return response.json();
}

const fmt = {
  p: (x) => (x === null || x === undefined ? "–" : x.toFixed(3)),
  pct: (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`),
  price: (x) => (x === null || x === undefined ? "–" : x.toFixed(2)),
  pct1: (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)} %`),
  ret: (x) => (x === null || x === undefined ? "–" : `${x >= 0 ? "+" : ""}${(x * 100).toFixed(2)} %`),
  money: (x) => (x === null || x === undefined ? "–"
    : x.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })),
};

function route() {
  const parts = (window.location.hash || "#/").replace(/^#\/?/, "").split("/");
  if (parts[0] === "cap" && CAPS[parts[1]]) return { view: "cap", cap: parts[1] };
  if (parts[0] === "sectors") return { view: "sectors" };
  if (PAGES.has(parts[0])) return { view: parts[0] };
  if (parts[0] === "signal" && parts[1]) {
    return { view: "signal", symbol: decodeURIComponent(parts[1]), horizon: Number(parts[2]) };
  }
  return { view: "overview" };
}

function tabBar(names, current, counts, onPick) {
  return el("div", { class: "tabs", role: "tablist" }, names.map((name) =>
    el("button", {
      role: "tab",
      "aria-selected": String(name === current),
      dataset: { tab: name },
      onclick: () => onPick(name),
    }, `${name} (${counts[name] ?? 0})`)));
}

function signalTable(signals) {
  if (!signals.length) return el("p", { class: "empty" }, "No active signals.");
  const head = ["#", "Symbol", "Sector", "Horizon", "Side", "Confidence", "Effective", "Age",
    "Close", "Entry range", "Stop", "Target"];
  const text = new Set(["Symbol", "Sector", "Side", "Age"]);
  return el("table", { class: "signals" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { class: text.has(h) ? "text" : "" }, h)))),
    el("tbody", {}, signals.map((s, i) => el("tr", {
      class: `age-${s.age_bucket}`,
      dataset: { symbol: s.symbol, horizon: String(s.horizon), side: s.side, bucket: s.age_bucket },
    },
    el("td", {}, i + 1),
    el("td", { class: "text" }, el("a", { href: `#/signal/${encodeURIComponent(s.symbol)}/${s.horizon}` },
      el("strong", {}, s.symbol))),
    el("td", { class: "text" }, s.sector),
    el("td", {}, `${s.horizon}d`),
    el("td", { class: `text side-${s.side}` }, s.side),
    el("td", {}, fmt.p(s.confidence)),
    el("td", {}, el("span", { class: "bar", style: `width:${Math.round(s.effective_confidence * 60)}px` }),
      fmt.p(s.effective_confidence)),
    el("td", { class: "text" }, el("span", { class: `age ${s.age_bucket}` }, `${s.age_days} d ${s.age_bucket}`)),
    el("td", {}, fmt.price(s.close)),
    el("td", {}, `${fmt.price(s.entry_low)} – ${fmt.price(s.entry_high)}`),
    el("td", {}, fmt.price(s.stop)),
    el("td", {}, fmt.price(s.target))))));
}

async function renderCap(cap) {
  const side = tabs[cap];
  const url = (s, limit) => `/signals?cap_class=${cap}&side=${s}${limit ? `&limit=${limit}` : ""}`;
  const [current, other] = await Promise.all([
    getJSON(url(side, TOP)),
    getJSON(url(side === "BUY" ? "SELL" : "BUY", 1)),
  ]);
  const counts = { [side]: current.total, [side === "BUY" ? "SELL" : "BUY"]: other.total };
  view.replaceChildren(
    el("h2", {}, `${CAPS[cap]}: top ${TOP} by effective confidence`),
    tabBar(["BUY", "SELL"], side, counts, (name) => { tabs[cap] = name; render(); }),
    signalTable(current.signals));
  return current.scan_date;
}

async function renderSectors() {
  const stance = tabs.sectors;
  const page = await getJSON("/sectors");
  const counts = { bullish: 0, bearish: 0 };
  for (const s of page.sectors) if (s.stance in counts) counts[s.stance] += 1;
  const rows = page.sectors.filter((s) => s.stance === stance)
    .sort((a, b) => (stance === "bullish" ? b.net - a.net : a.net - b.net));
  const table = rows.length ? el("table", { class: "sectors" },
    el("thead", {}, el("tr", {}, ["Sector", "BUY", "SELL", "Net", "BUY share", "Mean eff. BUY",
      "Mean eff. SELL"].map((h, i) => el("th", { class: i === 0 ? "text" : "" }, h)))),
    el("tbody", {}, rows.map((s) => el("tr", { dataset: { sector: s.sector, stance: s.stance } },
      el("td", { class: "text" }, el("strong", {}, s.sector)),
      el("td", { class: "side-BUY" }, s.n_buy),
      el("td", { class: "side-SELL" }, s.n_sell),
      el("td", {}, s.net > 0 ? `+${s.net}` : s.net),
      el("td", {}, fmt.pct(s.buy_share)),
      el("td", {}, fmt.p(s.mean_eff_buy)),
      el("td", {}, fmt.p(s.mean_eff_sell))))))
    : el("p", { class: "empty" }, `No ${stance} sector in the latest scan.`);
  view.replaceChildren(
    el("h2", {}, "Sectors: net signals and stance"),
    tabBar(["bullish", "bearish"], stance, counts, (name) => { tabs.sectors = name; render(); }),
    table,
    el("p", { class: "muted" },
      "Bullish: at least 2 more BUY than SELL signals and at least 60 % BUY; bearish mirrored."));
  return page.scan_date;
}

// The platform's state (/status, what `turbomode status` prints): each part, then the models.
function statusSection(status) {
  const parts = el("table", { class: "status" },
    el("thead", {}, el("tr", {}, ["Part", "State", "Detail", "To fix"].map((h) => el("th", { class: "text" }, h)))),
    el("tbody", {}, status.checks.map((c) => el("tr", { dataset: { part: c.part, state: c.state } },
      el("td", { class: "text" }, c.part),
      el("td", { class: `text state-${c.state}` }, c.state),
      el("td", { class: "text" }, c.detail),
      el("td", { class: "text" }, c.state === "ok" ? "" : (c.fix || ""))))));
  const live = status.models.filter((m) => m.version);
  const next = status.schedules.find((s) => s.job === "nightly_scan");
  return el("section", { id: "platform", dataset: { ok: String(status.ok) } },
    el("h3", {}, status.ok ? "Platform: all well" : `Platform: ${status.checks.filter((c) => c.state !== "ok").length} problem(s)`),
    parts,
    el("p", { class: "muted" },
      `${live.length} production model(s) of ${status.models.length} key(s). ` +
      `Pending outcomes: ${status.pending_outcomes ?? "–"}. ` +
      (next && next.next_run ? `Next nightly scan: ${next.next_run}.` : "")));
}

function signed(x) { return `${x >= 0 ? "+" : ""}${x.toFixed(4)}`; }

function explanationTable(why) {
  const widest = Math.max(...why.top.map((t) => Math.abs(t.contribution)), 1e-12);
  return el("table", { class: "explanation" },
    el("thead", {}, el("tr", {}, ["Feature", "What it is", "Value", "Percentile tonight",
      "Contribution"].map((h, i) => el("th", { class: i < 2 ? "text" : "" }, h)))),
    el("tbody", {}, why.top.map((t) => el("tr", { dataset: { feature: t.feature } },
      el("td", { class: "text" }, el("strong", {}, t.feature), el("div", { class: "muted" }, t.group)),
      el("td", { class: "text" }, t.description),
      el("td", {}, t.value === null ? "–" : t.value.toPrecision(4)),
      el("td", {}, t.percentile === null ? "–" : `${Math.round(t.percentile)}`),
      el("td", { class: t.contribution >= 0 ? "side-BUY" : "side-SELL" },
        el("span", { class: `bar ${t.contribution >= 0 ? "up" : "down"}`,
          style: `width:${Math.round((Math.abs(t.contribution) / widest) * 60)}px` }),
        signed(t.contribution))))));
}

async function renderSignal(symbol, horizon) {
  const page = await getJSON(`/signals/${encodeURIComponent(symbol)}`);
  const s = page.signals.find((x) => x.horizon === horizon);
  if (!s) {
    view.replaceChildren(el("h2", {}, `${symbol} ${horizon}d`),
      el("p", { class: "empty" }, "No active signal for this symbol and horizon."));
    return page.scan_date;
  }
  const why = s.explanation;
  view.replaceChildren(
    el("h2", {}, `${s.symbol} ${s.side} ${s.horizon}d · ${s.sector}`),
    el("p", {}, `Issued ${s.signal_date} · P(BUY) ${fmt.p(s.p_buy)} · P(SELL) ${fmt.p(s.p_sell)} · `
      + `entry ${fmt.price(s.entry_low)} – ${fmt.price(s.entry_high)} · stop ${fmt.price(s.stop)} · `
      + `target ${fmt.price(s.target)}`),
    why ? el("section", { id: "explanation" },
      el("h3", {}, "Why: the five largest contributions to P(BUY) − P(SELL)"),
      explanationTable(why),
      el("p", { class: "muted" }, `${why.output} = ${signed(why.value)}: the model's base `
        + `${signed(why.base)} plus every feature's contribution (model ${why.model_key} `
        + `${why.model_version}). Percentile: share of tonight's universe at or below the value.`))
      : el("p", { class: "empty" }, "No explanation stored for this signal."));
  return page.scan_date;
}

async function renderOverview() {
  const [all, sectors, status] = await Promise.all([getJSON("/signals"), getJSON("/sectors"), getJSON("/status")]);
  const cards = Object.entries(CAPS).map(([cap, label]) => {
    const mine = all.signals.filter((s) => s.cap_class === cap);
    const n = (side) => mine.filter((s) => s.side === side).length;
    const best = mine[0];
    return el("div", { class: "card", dataset: { cap } },
      el("h3", {}, el("a", { href: `#/cap/${cap}` }, label)),
      el("div", {}, el("span", { class: "n side-BUY" }, n("BUY")), "BUY  ",
        el("span", { class: "n side-SELL" }, n("SELL")), "SELL"),
      el("div", { class: "muted" }, best
        ? `strongest: ${best.symbol} ${best.side} ${best.horizon}d (${fmt.p(best.effective_confidence)})`
        : "no active signals"));
  });
  const stance = (name) => sectors.sectors.filter((s) => s.stance === name).map((s) => s.sector);
  cards.push(el("div", { class: "card", dataset: { cap: "sectors" } },
    el("h3", {}, el("a", { href: "#/sectors" }, "Sectors")),
    el("div", {}, el("span", { class: "n side-BUY" }, stance("bullish").length), "bullish  ",
      el("span", { class: "n side-SELL" }, stance("bearish").length), "bearish"),
    el("div", { class: "muted" }, [...stance("bullish"), ...stance("bearish")].join(", ") || "all neutral")));
  const limits = all.thresholds
    ? (all.thresholds.on === "lift"
      ? `Entry thresholds: P(BUY) ≥ ${fmt.p(all.thresholds.buy)} × its prior, P(SELL) ≥ ${fmt.p(all.thresholds.sell)} × its prior (tonight's top quantile of lifts).`
      : `Entry thresholds: P(BUY) ≥ ${fmt.p(all.thresholds.buy)}, P(SELL) ≥ ${fmt.p(all.thresholds.sell)}.`)
    : "";
  view.replaceChildren(
    el("h2", {}, all.scan_date ? `Signals of the scan of ${all.scan_date}` : "No scan yet"),
    el("div", { class: "cards" }, cards),
    el("p", { class: "muted" }, `${all.total} active signals. ${limits}`),
    statusSection(status));
  return all.scan_date;
}

// ---- performance pages ------------------------------------------------------------------------

function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

function svgBox(svg, name) {
  const box = el("div", { class: "chart", dataset: { chart: name } });
  box.innerHTML = svg; // drawn by the service (turbomode.reports.performance), text escaped there
  return box;
}

// One tab per paper wallet (none when there is only one).
function walletTabs(page) {
  if (page.wallets.length < 2) return null;
  return el("div", { class: "tabs", role: "tablist" }, page.wallets.map((name) =>
    el("button", {
      role: "tab",
      "aria-selected": String(name === page.wallet),
      dataset: { tab: name },
      onclick: () => { perf.wallet = name; render(); },
    }, `wallet ${name}`)));
}

// The view's new content; absent parts (null) are left out, not written as "null".
function show(...nodes) {
  view.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined));
}

// A table whose headings align as their cells do: ``text`` names the left-aligned columns.
function table(cls, head, rows, text = new Set([head[0]])) {
  return el("table", { class: cls },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { class: text.has(h) ? "text" : "" }, h)))),
    el("tbody", {}, rows));
}

// A month's cell coloured by its return: green up, red down, stronger the further from 0.
function heat(ret) {
  const a = Math.min(Math.abs(ret) / 0.05, 1) * 0.55 + 0.08;
  return ret >= 0 ? `background: rgba(63, 185, 80, ${a.toFixed(2)})` : `background: rgba(248, 81, 73, ${a.toFixed(2)})`;
}

async function renderEquity() {
  const page = await getJSON(`/performance/equity${qs({ wallet: perf.wallet })}`);
  const m = page.metrics;
  const b = page.benchmark_metrics;
  const rows = [["Final equity", "final_equity", fmt.money], ["Total return", "total_return", fmt.ret],
    ["CAGR", "cagr", fmt.ret], ["Volatility", "volatility", fmt.pct1], ["Sharpe", "sharpe", fmt.p],
    ["Max drawdown", "max_drawdown", fmt.ret], ["Days", "days", (x) => (x ?? "–")]];
  const last = page.points[page.points.length - 1];
  show(
    el("h2", {}, `Paper wallet ${page.wallet} (${page.rules} rules) beside ${page.benchmark_symbol}`),
    walletTabs(page),
    page.points.length ? null : el("p", { class: "empty" }, "No marks yet: the wallet has not run."),
    table("metrics", ["Metric", `Wallet ${page.wallet}`, `${page.benchmark_symbol} buy & hold`],
      rows.map(([label, key, f]) => el("tr", { dataset: { metric: key } },
        el("td", { class: "text" }, label), el("td", {}, f(m[key])), el("td", {}, b ? f(b[key]) : "–")))),
    page.benchmark_note ? el("p", { class: "muted" }, `No benchmark: ${page.benchmark_note}.`) : null,
    el("h3", {}, "Equity"), svgBox(page.equity_svg, "equity"),
    el("h3", {}, "Drawdown"), svgBox(page.drawdown_svg, "drawdown"),
    last ? el("p", { class: "muted", id: "last-mark" }, `Last mark ${last.date}: equity ${fmt.money(last.equity)}, `
      + `drawdown ${fmt.ret(last.drawdown)}; initial cash ${fmt.money(page.initial_cash)}.`) : null,
    el("h3", {}, "P&L by month"),
    page.months.length ? table("months", ["Month", "P&L", "Return", "End equity"],
      page.months.map((r) => el("tr", { dataset: { month: r.month } },
        el("td", { class: "text" }, r.month),
        el("td", { class: r.pnl >= 0 ? "side-BUY" : "side-SELL" }, `${r.pnl >= 0 ? "+" : ""}${fmt.money(r.pnl)}`),
        el("td", { class: "heat", style: heat(r.return) }, fmt.ret(r.return)),
        el("td", {}, fmt.money(r.end_equity)))))
      : el("p", { class: "empty" }, "No month yet."));
  return null;
}

function rateTable(name, rows, label) {
  return el("section", { class: "rates", dataset: { group: name } },
    el("h3", {}, `By ${name}`),
    rows.length ? table("rates", [name, "Resolved", "Hits", "Hit rate", "Mean return"],
      rows.map((r) => el("tr", { dataset: { key: String(r[name]) } },
        el("td", { class: "text" }, label(r[name])), el("td", {}, r.n), el("td", {}, r.hits),
        el("td", {}, el("span", { class: "bar", style: `width:${Math.round(r.hit_rate * 60)}px` }), fmt.pct1(r.hit_rate)),
        el("td", {}, fmt.ret(r.mean_return)))))
      : el("p", { class: "empty" }, "No resolved outcome yet."));
}

async function renderHits() {
  const page = await getJSON("/performance/hit_rates");
  const all = page.overall;
  show(
    el("h2", {}, "Signal outcomes: hit rate"),
    el("p", { id: "hits-overall" }, all
      ? `${all.n} resolved outcomes, ${all.hits} right: hit rate ${fmt.pct1(all.hit_rate)}, mean return `
        + `${fmt.ret(all.mean_return)} (on the signal's side). ${page.pending} pending.`
      : `No resolved outcome yet; ${page.pending} pending.`),
    el("div", { class: "grid" },
      rateTable("horizon", page.horizon, (h) => `${h}d`),
      rateTable("month", page.month, (x) => x),
      rateTable("sector", page.sector, (x) => x)));
  return null;
}

function picker(name, values, present) {
  const select = el("select", { name, id: `f-${name}`, onchange: (e) => { perf[name] = e.target.value; render(); } },
    el("option", { value: "" }, "any"),
    values.map((v) => el("option", { value: v }, present.includes(v) ? v : `${v} (none)`)));
  select.value = perf[name];
  return el("label", {}, `${name} `, select);
}

async function renderTrades() {
  const filters = { wallet: perf.wallet, min_confidence: perf.min_confidence, tier: perf.tier,
    regime: perf.regime, sector: perf.sector };
  const page = await getJSON(`/performance/trades${qs(filters)}`);
  const conf = el("input", { id: "f-min_confidence", name: "min_confidence", type: "number", min: "0",
    max: "1", step: "0.01", placeholder: "0.00" });
  conf.value = perf.min_confidence;
  conf.addEventListener("change", (e) => { perf.min_confidence = e.target.value; render(); });
  show(
    el("h2", {}, `Trade quality: closed trades of wallet ${page.wallet}`),
    walletTabs(page),
    el("form", { class: "what-if", onsubmit: (e) => e.preventDefault() },
      el("label", {}, "min confidence ", conf),
      picker("tier", page.allowed.tier, page.present.tier),
      picker("regime", page.allowed.regime, page.present.regime),
      picker("sector", page.allowed.sector, page.present.sector)),
    el("p", { id: "what-if", dataset: { n: String(page.n), total: String(page.total) } },
      `${page.n} of ${page.total} trades remain`,
      page.n ? ` · hit rate ${fmt.pct1(page.hit_rate)} (${page.hits} won) · mean return ${fmt.ret(page.mean_return)}`
        + ` · net P&L ${fmt.money(page.net_pnl)}` : ""),
    page.trades.length ? table("trades", ["#", "Symbol", "Side", "Sector", "Tier", "Regime", "Confidence",
      "Entry", "Exit", "Reason", "Net P&L", "Return"],
    page.trades.map((t) => el("tr", { dataset: { trade: String(t.trade_id), hit: String(t.hit) } },
      el("td", { class: "text" }, t.trade_id), el("td", { class: "text" }, el("strong", {}, t.symbol)),
      el("td", { class: "text" }, t.side), el("td", { class: "text" }, t.sector),
      el("td", { class: "text" }, t.tier ?? "–"), el("td", { class: "text" }, t.regime ?? "–"),
      el("td", {}, fmt.p(t.confidence)), el("td", {}, t.entry_date), el("td", {}, t.exit_date),
      el("td", { class: "text" }, t.exit_reason ?? "–"),
      el("td", { class: t.hit ? "side-BUY" : "side-SELL" }, fmt.money(t.net_pnl)),
      el("td", {}, fmt.ret(t.net_return)))),
    new Set(["#", "Symbol", "Side", "Sector", "Tier", "Regime", "Reason"]))
      : el("p", { class: "empty" }, "No closed trade passes these filters."));
  return null;
}

async function renderTop() {
  const page = await getJSON("/signals?order=confidence&limit=10");
  show(
    el("h2", {}, "Top 10 active signals by confidence"),
    signalTable(page.signals),
    el("p", { class: "muted" }, `${page.total} active signals. Effective confidence is the confidence `
      + "decayed by the signal's age; the age colours follow the legend below."));
  return page.scan_date;
}

async function render() {
  const where = route();
  for (const a of document.querySelectorAll("#nav a")) {
    const active = where.view === "cap" ? a.dataset.view === where.cap : a.dataset.view === where.view;
    a.classList.toggle("active", active);
  }
  try {
    let scanDate;
    if (where.view === "cap") scanDate = await renderCap(where.cap);
    else if (where.view === "signal") scanDate = await renderSignal(where.symbol, where.horizon);
    else if (where.view === "sectors") scanDate = await renderSectors();
    else if (where.view === "equity") scanDate = await renderEquity();
    else if (where.view === "hits") scanDate = await renderHits();
    else if (where.view === "trades") scanDate = await renderTrades();
    else if (where.view === "top") scanDate = await renderTop();
    else scanDate = await renderOverview();
    const now = new Date().toLocaleTimeString();
    const what = PAGES.has(where.view) && where.view !== "top" ? "From the signals store"
      : (scanDate ? `Scan of ${scanDate}` : "No scan yet");
    statusLine.textContent = `${what} · refreshed ${now} · every ${REFRESH_S} s`;
  } catch (err) {
    view.replaceChildren(el("p", { class: "error" }, err.message));
    statusLine.textContent = "error";
  }
  document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
}

window.addEventListener("hashchange", render);
setInterval(render, REFRESH_S * 1000);
render();
