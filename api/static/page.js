/* The status page of market-data-worker: health every POLL seconds, the scans, a symbol's chart.
 * No framework and no build step; the data comes from the API's own JSON endpoints (README,
 * "Status page"). Status is always said in words and a symbol, never by colour alone. */
"use strict";
(function () {
  const SCANS_EVERY_S = 15, CYCLES_EVERY_S = 30, CYCLE_HOURS = 6, TOKEN_KEY = "mdw-api-token";
  const $ = (id) => document.getElementById(id);
  const BADGES = {ok: "\u2714 OK", bad: "\u2716 FAILING", late: "\u2716 NO BEAT", warn: "\u26A0 WARNING",
                  stopped: "\u25A0 STOPPED", starting: "\u2026 STARTING", unknown: "? UNKNOWN"};
  const state = {info: null, cards: new Map(), datasets: new Map(), poll: 1.5, opener: null};

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  /** GET or POST a JSON endpoint: {status, body}; status 0 when the API cannot be reached. */
  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, {cache: "no-store", ...options,
                                    headers: {Accept: "application/json", ...((options || {}).headers || {})}});
    } catch (e) {
      return {status: 0, body: null};
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return {status: response.status, body};
  }

  function repeat(step, seconds) {
    const run = async () => {
      try { await step(); } finally { setTimeout(run, (typeof seconds === "function" ? seconds() : seconds) * 1000); }
    };
    run();
  }

  // -- formatting ------------------------------------------------------------

  function duration(s) {
    if (s === null || s === undefined) return "-";
    const a = Math.abs(s), sign = s < 0 ? "-" : "";
    if (a < 10) return `${sign}${a.toFixed(1)} s`;
    if (a < 120) return `${sign}${Math.round(a)} s`;
    if (a < 7200) return `${sign}${Math.round(a / 60)} min`;
    if (a < 172800) return `${sign}${Math.floor(a / 3600)} h ${Math.round((a % 3600) / 60)} min`;
    return `${sign}${Math.floor(a / 86400)} d ${Math.round((a % 86400) / 3600)} h`;
  }

  const num = (digits) => (v) => (v === null || v === undefined || v === "") ? "" :
    Number(v).toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits});
  const pct = (v) => (v === null || v === undefined) ? "" : `${v > 0 ? "+" : ""}${Number(v).toFixed(2)} %`;
  const yes = (v) => v === true ? "yes" : v === false ? "no" : "";
  const text = (v) => v === null || v === undefined ? "" : String(v);
  const when = (iso) => iso ? new Date(iso).toLocaleString([], {dateStyle: "medium", timeStyle: "short"}) : "-";

  function lastExit(exit) {
    if (!exit) return "none";
    const how = exit.signal ? exit.signal : `exit ${exit.code}`;
    const why = [exit.reason, exit.detail].filter(Boolean).join(": ");
    return `${how} (${why}${exit.doing ? "; doing " + exit.doing : ""})`;
  }

  // -- health ------------------------------------------------------------------

  /** ok, late, bad, warn, stopped or starting, and why, for one /api/workers row. A late beat is mdwd's
   *  verdict too (a problem "failing (no heartbeat for ...)"), shown as NO BEAT. */
  function workerStatus(w) {
    if (w.state === "RUNNING" && w.problem && w.problem.startsWith("failing (no heartbeat for")) {
      return ["late", w.problem];
    }
    if (w.state === "STOPPED" && !w.problem) return ["stopped", "stopped on purpose"];
    if (w.problem) return ["bad", w.problem];
    if (!w.healthy) return [w.state === "STARTING" || w.state === "PENDING" ? "starting" : "bad", w.state.toLowerCase()];
    if (w.warnings && w.warnings.length) return ["warn", w.warnings.join("; ")];
    return ["ok", "healthy"];
  }

  function workerCard(name) {
    const fields = {};
    const field = (key, label) => {
      fields[key] = el("dd");
      return [el("dt", {text: label}), fields[key]];
    };
    const restart = el("button", {type: "button", class: "restart", onclick: () => restartWorker(name, restart)},
                       `Restart ${name}`);
    restart.hidden = true;
    const badge = el("span", {class: "badge"});
    const card = el("li", {class: "worker", "data-worker": name},
      el("div", {class: "worker-head"}, badge, el("h4", {text: name}), fields.state = el("span", {class: "state"})),
      fields.why = el("p", {class: "why"}),
      el("dl", {}, ...field("beat", "Last beat"), ...field("doing", "Phase, item"), ...field("restarts", "Restarts"),
         ...field("exit", "Last exit"), ...field("rss", "Memory"), ...field("pid", "Process"),
         ...field("quarantined", "Quarantined")),
      restart);
    return {card, badge, fields, restart};
  }

  function renderWorkers(rows, info) {
    const list = $("workers"), seen = new Set();
    for (const w of rows) {
      seen.add(w.name);
      let c = state.cards.get(w.name);
      if (!c) {
        c = workerCard(w.name);
        state.cards.set(w.name, c);
        list.append(c.card);
      }
      const [status, why] = workerStatus(w);
      c.card.dataset.status = status;
      setText(c.badge, BADGES[status]);
      setText(c.fields.state, w.state);
      setText(c.fields.why, why);
      setText(c.fields.beat, w.last_beat_age_s === null ? "none yet" : `${duration(w.last_beat_age_s)} ago`);
      setText(c.fields.doing, [w.phase, w.item].filter(Boolean).join(": ") || "-");
      setText(c.fields.restarts, String(w.restarts));
      setText(c.fields.exit, lastExit(w.last_exit));
      setText(c.fields.rss, w.rss_mb === null ? "-" : `${Number(w.rss_mb).toFixed(0)} MB RSS`);
      setText(c.fields.pid, w.pid ? `pid ${w.pid}, up ${duration(w.uptime_s)}` : "not running");
      const q = w.quarantined || {items: [], total: 0};
      setText(c.fields.quarantined, q.items.length ? `${q.items.join(", ")} (${q.total} in all)` : "none");
      c.restart.hidden = !(info && info.restart_enabled);
    }
    for (const [name, c] of state.cards) {
      if (!seen.has(name)) { c.card.remove(); state.cards.delete(name); }
    }
    const wanted = rows.filter((w) => w.state !== "STOPPED" || w.problem);
    const failing = rows.map((w) => [w.name, workerStatus(w)[0]])
      .filter(([, s]) => s === "bad" || s === "late");
    const summary = `${wanted.length - failing.length}/${wanted.length} healthy` +
      (failing.length ? ` \u2014 failing: ${failing.map(([n]) => n).join(", ")}` : "");
    setText($("summary"), summary);
    $("summary").dataset.status = failing.length ? "bad" : "ok";
  }

  function renderDatasets(updates, info) {
    const list = $("datasets");
    const limits = (info && info.datasets) || {};
    for (const [name, d] of Object.entries(updates)) {
      if (name === "success" || name === "market") continue;
      let item = state.datasets.get(name);
      if (!item) {
        item = {badge: el("span", {class: "badge"}), text: el("span", {class: "text"}),
                meter: el("meter", {min: "0", optimum: "0", "aria-label": `${name} age against its limit`})};
        item.node = el("li", {"data-dataset": name}, item.badge, " ", el("span", {class: "label", text: name}), " ",
                       item.meter, " ", item.text);
        state.datasets.set(name, item);
        list.append(item.node);
      }
      const {stale_after_s: limit, writers} = limits[name] || {};
      const unused = !d && writers && writers.length === 0;
      const status = unused ? "stopped" : !d || d.stale ? "bad" : "ok";
      item.node.dataset.status = status;
      setText(item.badge, unused ? "\u2013 UNUSED" : !d ? "\u2716 NEVER WRITTEN" : d.stale ? "\u2716 STALE" : "\u2714 FRESH");
      setText(item.text, unused ? "no worker writes it" : !d ? `limit ${duration(limit)}` :
                         `${duration(d.age_s)} old, limit ${duration(limit)}` +
                         (writers && writers.length ? ` (written by ${writers.join(", ")})` : ""));
      item.meter.hidden = !d || !limit;
      if (d && limit) {
        Object.assign(item.meter, {max: limit, low: limit / 2, high: limit * 0.9, value: Math.min(d.age_s, limit)});
      }
    }
  }

  function renderFacts(market, info) {
    const fact = (id, status, words, badge) => {
      $(id).dataset.status = status;
      setText($(id).querySelector(".badge"), badge || BADGES[status]);
      setText($(id).querySelector(".text"), words);
    };
    if (market) {
      const next = market.open ? `closes ${when(market.next_close)}` : `opens ${when(market.next_open)}`;
      const badge = market.open ? "\u25CF OPEN" : market.session === "closed" ? "\u25CB CLOSED" :
        `\u25D0 ${market.session.toUpperCase()}`;  // pre-market, after-hours: the session is closed
      fact("market", market.open ? "ok" : "stopped", `${market.session} session; ${next}`, badge);
    }
    if (info) {
      const token = info.schwab_token;
      if (!token) fact("schwab", "stopped", "not used (the provider is not Schwab)", "\u2013 N/A");
      else if (token.expires_in_s === null) fact("schwab", "warn", "unknown: run mdw-schwab-login");
      else if (token.expires_in_s <= 0) fact("schwab", "bad", "expired: run mdw-schwab-login", "\u2716 EXPIRED");
      else fact("schwab", token.expires_in_s < 172800 ? "warn" : "ok", `${duration(token.expires_in_s)} left`);
      fact("supervisor", info.supervisor_reachable ? "ok" : "bad",
           info.supervisor_reachable ? "answering" : "cannot be reached: worker states are unknown");
    }
  }

  async function refreshHealth() {
    const [workers, updates, info] = await Promise.all([api("/api/workers"), api("/api/last_update"),
                                                        api("/api/page")]);
    const offline = $("offline");
    if (workers.status === 0 || info.status === 0) {
      offline.hidden = false;
      setText(offline, "\u2716 The API cannot be reached; showing the last answers. Retrying\u2026");
      $("summary").dataset.status = "bad";
      return;
    }
    offline.hidden = true;
    if (info.status === 200) {
      state.info = info.body;
      state.poll = info.body.poll_s || state.poll;
      $("token-form").hidden = !info.body.restart_enabled;
    }
    if (workers.status === 200) renderWorkers(workers.body.data, state.info);
    else setText($("summary"), `workers unknown: ${(workers.body || {}).error || workers.status}`);
    if (updates.status === 200) {
      renderDatasets(updates.body, state.info);
      renderFacts(updates.body.market, state.info);
    } else {
      renderFacts(null, state.info);
    }
  }

  // -- restarts ----------------------------------------------------------------

  function showTokenState() {
    setText($("token-state"), sessionStorage.getItem(TOKEN_KEY) ? "A token is set for this session."
                                                               : "No token entered.");
  }

  async function restartWorker(name, button) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const message = $("restart-message");
    button.disabled = true;
    setText(message, `Restarting ${name}\u2026`);
    const answer = await api(`/api/workers/${encodeURIComponent(name)}/restart`,
                             {method: "POST", headers: token ? {Authorization: `Bearer ${token}`} : {}});
    button.disabled = false;
    const error = (answer.body || {}).error || `HTTP ${answer.status}`;
    message.dataset.status = answer.status === 202 ? "ok" : "bad";
    if (answer.status === 202) setText(message, `\u2714 Restart of ${name} queued.`);
    else if (answer.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showTokenState();
      setText(message, `\u2716 Refused (401): ${token ? "wrong token" : "no token entered"}. Enter the API token above.`);
    } else setText(message, `\u2716 Restart of ${name} refused (${answer.status}): ${error}`);
  }

  function setUpToken() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
      $("token").value = "";
      showTokenState();
    });
    $("token-forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showTokenState(); });
    showTokenState();
  }

  // -- the scans ---------------------------------------------------------------

  const symbolCell = (v) => el("button", {type: "button", class: "sym", "data-symbol": v,
                                          onclick: (e) => openSymbol(v, e.currentTarget)}, v);
  const SCANS = [
    {id: "watchlist", path: () => "/api/watchlist?order_by=daily_change_pct&limit=1000", sort: ["daily_change_pct", -1],
     columns: [["symbol", "Symbol", symbolCell], ["price", "Price", num(2)], ["daily_change", "Change", num(2)],
               ["daily_change_pct", "Change %", pct], ["volume", "Volume", num(0)]]},
    {id: "whale", path: () => `/api/whale_flows?limit=50&sort_by=${$("whale-sort").value}&hours=${$("whale-hours").value}`,
     columns: [["symbol", "Symbol", symbolCell], ["type", "Type", text], ["strike", "Strike", num(2)],
               ["expiry", "Expiry", text], ["dte", "DTE", num(0)], ["volume", "Volume", num(0)],
               ["open_interest", "Open int.", num(0)], ["vol_oi", "Vol/OI", num(1)], ["premium", "Mark", num(2)],
               ["total_premium", "Notional", num(0)], ["whale_score", "Score", num(1)], ["detected_at", "Seen (UTC)", text]]},
    {id: "macd", path: () => `/api/macd_scanner?limit=100&filter=${$("macd-filter").value}`,
     columns: [["symbol", "Symbol", symbolCell], ["price", "Price", num(2)], ["price_change_pct", "Change %", pct],
               ["macd", "MACD", num(3)], ["signal", "Signal", num(3)], ["histogram", "Histogram", num(3)],
               ["trend", "Trend", text], ["bullish_cross", "Bullish cross", yes], ["bearish_cross", "Bearish cross", yes]]},
    {id: "vpb", path: () => `/api/vpb_scanner?limit=100&filter=${$("vpb-filter").value}`,
     columns: [["symbol", "Symbol", symbolCell], ["price", "Price", num(2)], ["price_change_pct", "Change %", pct],
               ["volume_surge_pct", "Volume surge %", num(0)], ["buy_signal", "Breakout", yes],
               ["sell_signal", "Breakdown", yes], ["pattern", "Pattern", text]]},
    {id: "ttm", path: () => `/api/ttm_squeeze_scanner?limit=100&filter=${$("ttm-filter").value}`,
     columns: [["symbol", "Symbol", symbolCell], ["price", "Price", num(2)], ["signal", "Signal", text],
               ["squeeze_on", "Squeeze on", yes], ["squeeze_duration", "Bars in squeeze", num(0)],
               ["momentum", "Momentum", num(3)], ["momentum_direction", "Direction", text],
               ["fire_date", "Fired", text], ["fire_direction", "Fired to", text]]},
  ];

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    return typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
  }

  function renderTable(scan) {
    const table = $(`${scan.id}-table`);
    const [key, dir] = scan.sort || [null, 1];
    const rows = key ? [...scan.rows].sort((a, b) => dir * compare(a[key], b[key])) : scan.rows;
    const head = el("tr", {}, ...scan.columns.map(([k, label]) => {
      const sorted = k === key ? (dir > 0 ? "ascending" : "descending") : "none";
      const th = el("th", {scope: "col", "aria-sort": sorted},
        el("button", {type: "button", class: "sort", "data-key": k,
                      onclick: () => { scan.sort = [k, k === key ? -dir : (k === "symbol" ? 1 : -1)];
                                       renderTable(scan); table.querySelector(`button[data-key="${k}"]`).focus(); }},
           label, el("span", {"aria-hidden": "true", text: sorted === "ascending" ? " \u25B2" :
                                                          sorted === "descending" ? " \u25BC" : ""})));
      return th;
    }));
    const body = rows.map((row) => el("tr", {}, ...scan.columns.map(([k, , fmt]) => {
      const value = fmt(row[k]);
      return el(k === "symbol" ? "th" : "td", k === "symbol" ? {scope: "row"} : {class: typeof row[k] === "number" ? "n" : ""},
                value);
    })));
    table.replaceChildren(el("caption", {class: "visually-hidden", text: `${scan.id} rows, sortable by column`}),
                          el("thead", {}, head), el("tbody", {}, ...body));
  }

  async function refreshScan(scan) {
    const answer = await api(scan.path());
    const note = $(`${scan.id}-note`);
    if (answer.status !== 200) {
      setText(note, answer.status === 0 ? "The API cannot be reached." :
                    `Not available (${answer.status}): ${(answer.body || {}).error || ""}`);
      return;
    }
    scan.rows = answer.body.data;
    setText(note, scan.rows.length ? `${scan.rows.length} rows` : "No rows yet.");
    const active = document.activeElement;
    const focused = active && active.closest(`#${scan.id}-table`) ? focusKey(active) : null;
    renderTable(scan);
    const again = focused && $(`${scan.id}-table`).querySelector(focused);
    if (again) again.focus();  // a re-drawn table keeps the keyboard's place
  }

  /** A selector finding the same button in a re-drawn table (a sort button or a symbol). */
  function focusKey(node) {
    if (node.dataset.key) return `button[data-key="${CSS.escape(node.dataset.key)}"]`;
    if (node.dataset.symbol) return `button[data-symbol="${CSS.escape(node.dataset.symbol)}"]`;
    return null;
  }

  async function refreshScans() {
    await Promise.all(SCANS.map(refreshScan));
  }

  // -- a symbol's chart and the cycles --------------------------------------------

  async function openSymbol(symbol, opener) {
    const section = $("symbol");
    if (opener) {
      const table = opener.closest("table");
      state.opener = [opener, table ? `#${table.id}` : "#scans"];
    }
    state.symbol = symbol;
    section.hidden = false;
    setText($("symbol-title"), symbol);
    setText($("symbol-summary"), "Loading\u2026");
    $("symbol-title").focus();
    section.scrollIntoView({block: "start"});
    const answer = await api(`/api/symbol/${encodeURIComponent(symbol)}?days=${$("symbol-days").value}`);
    if (state.symbol !== symbol) return;
    if (answer.status !== 200) {
      window.MdwCharts.clear($("symbol-charts"));
      setText($("symbol-summary"), answer.status === 404 && answer.body && /bars/.test(answer.body.error || "") ?
        `No daily bars are stored for ${symbol} yet.` :
        `The chart is not available (${answer.status}): ${(answer.body || {}).error || ""}`);
      return;
    }
    setText($("symbol-summary"), window.MdwCharts.symbol($("symbol-charts"), answer.body));
  }

  function setUpSymbol() {
    $("symbol-close").addEventListener("click", () => {
      $("symbol").hidden = true;
      state.symbol = null;
      window.MdwCharts.clear($("symbol-charts"));
      // Back to the button that opened it, or to its twin if the table was re-drawn meanwhile.
      const [opener, where] = state.opener || [];
      const target = opener && (document.contains(opener) ? opener : document.querySelector(`${where} ${focusKey(opener)}`));
      if (target) target.focus();
    });
    $("symbol-days").addEventListener("change", () => state.symbol && openSymbol(state.symbol));
  }

  async function refreshCycles() {
    const answer = await api(`/api/cycles?hours=${CYCLE_HOURS}`);
    const note = $("cycles-note");
    if (answer.status !== 200) {
      setText(note, answer.status === 404 ? "Cycle history is not available on this server." :
                    `Cycle history is not available (${answer.status}).`);
      return;
    }
    setText(note, answer.body.count ? "" : "No cycles recorded in the last 6 hours.");
    window.MdwCharts.cycles($("cycle-charts"), answer.body.data, CYCLE_HOURS);
  }

  function start() {
    setUpToken();
    setUpSymbol();
    for (const scan of SCANS) {
      const control = $(`${scan.id}-filter`) || $(`${scan.id}-sort`);
      for (const select of [control, $(`${scan.id}-hours`)].filter(Boolean)) {
        select.addEventListener("change", () => refreshScan(scan));
      }
    }
    repeat(refreshHealth, () => state.poll);
    repeat(refreshScans, SCANS_EVERY_S);
    repeat(refreshCycles, CYCLES_EVERY_S);
    window.addEventListener("resize", () => window.MdwCharts.resize());
  }

  window.MdwPage = {workerStatus, duration, wantsRefresh: refreshHealth};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
