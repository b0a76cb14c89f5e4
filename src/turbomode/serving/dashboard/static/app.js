// TurboMode signals dashboard: a static page over the service's own API (/signals, /sectors,
// /status).
// Views by URL hash: #/ overview, #/cap/<large|mid|small> (BUY and SELL tabs, top 20 by
// effective confidence), #/sectors (bullish and bearish tabs), #/signal/<symbol>/<horizon> (one
// signal and the five features that contributed most to its score). Refreshes every 60 s, or every
// ?refresh=N seconds. Each finished render increments <body data-renders>.
"use strict";

const CAPS = { large: "Large cap", mid: "Mid cap", small: "Small cap" };
const TOP = 20;
const query = new URLSearchParams(window.location.search);
const REFRESH_S = Math.max(1, Number(query.get("refresh")) || 60);
const tabs = { large: "BUY", mid: "BUY", small: "BUY", sectors: "bullish" };
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
};

function route() {
  const parts = (window.location.hash || "#/").replace(/^#\/?/, "").split("/");
  if (parts[0] === "cap" && CAPS[parts[1]]) return { view: "cap", cap: parts[1] };
  if (parts[0] === "sectors") return { view: "sectors" };
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
    else scanDate = await renderOverview();
    const now = new Date().toLocaleTimeString();
    statusLine.textContent = `${scanDate ? `Scan of ${scanDate}` : "No scan yet"} · refreshed ${now} · every ${REFRESH_S} s`;
  } catch (err) {
    view.replaceChildren(el("p", { class: "error" }, err.message));
    statusLine.textContent = "error";
  }
  document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
}

window.addEventListener("hashchange", render);
setInterval(render, REFRESH_S * 1000);
render();
