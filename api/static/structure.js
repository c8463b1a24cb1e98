/* The page's market-structure section (README "Status page"): a chosen symbol and expiry's key
 * levels from GET /api/key_levels (per-strike GEX bars, net GEX, volume bars, the walls and flips
 * marked by line style and a text label as well as colour), and the SPY/QQQ sentiment gauges from
 * GET /api/market_sentiment with a sparkline of GET /api/market_sentiment/history. Missing data
 * is a sentence; the endpoints are only asked for what /api/chains says is held, so no 404 in normal
 * use. Uses the vendored uPlot; no build step. */
"use strict";
(function () {
  const CHAINS_EVERY_S = 60, SENTIMENT_EVERY_S = 30, HISTORY_HOURS = 24;
  const $ = (id) => document.getElementById(id);
  const COLORS = {call: "#1b7f3b", put: "#b3261e", net: "#1f4e99"};
  // Each marker differs by dash pattern and its text label, not only by colour.
  const MARKERS = [
    {key: "spot", label: "Spot", short: "spot", color: "#1c1e21", width: 2.5, dash: []},
    {key: "call_wall", label: "Call wall (most call volume)", short: "CW", color: "#1b7f3b", width: 2, dash: []},
    {key: "put_wall", label: "Put wall (most put volume)", short: "PW", color: "#b3261e", width: 2, dash: []},
    {key: "call_oi_wall", label: "Call OI wall (most call open interest)", short: "COI", color: "#1b7f3b", width: 2, dash: [2, 3]},
    {key: "put_oi_wall", label: "Put OI wall (most put open interest)", short: "POI", color: "#b3261e", width: 2, dash: [2, 3]},
    {key: "gamma_flip", label: "Gamma flip (dealer GEX changes sign)", short: "\u03B3 flip", color: "#6a3d9a", width: 2, dash: [8, 5]},
    {key: "flip_level", label: "Volume flip (net put-call volume changes sign)", short: "vol flip", color: "#b0803a", width: 2, dash: [8, 3, 2, 3]},
  ];
  const BANDS = [[0, 35, "Bearish"], [35, 45, "Slightly bearish"], [45, 55, "Neutral"], [55, 65, "Slightly bullish"],
                 [65, 100, "Bullish"]];
  const LABEL_SIGNS = {BULLISH: "\u25B2\u25B2", SLIGHTLY_BULLISH: "\u25B2", NEUTRAL: "\u25CF", SLIGHTLY_BEARISH: "\u25BC",
                       BEARISH: "\u25BC\u25BC"};
  const IV_RANK_DAYS = 20;
  const state = {chains: [], plots: [], sparks: new Map(), asked: 0};

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  async function api(path) {
    try {
      const response = await fetch(path, {cache: "no-store", headers: {Accept: "application/json"}});
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      return {status: response.status, body};
    } catch (e) {
      return {status: 0, body: null};
    }
  }

  function repeat(step, seconds) {
    const run = async () => { try { await step(); } finally { setTimeout(run, seconds * 1000); } };
    run();
  }

  const fmt = (v, d = 2) => (v === null || v === undefined ? "none" : Number(v).toFixed(d));
  const strikeOf = (v) => (v && typeof v === "object" ? v.strike : v);
  const utc = (at) => {
    const text = String(at);
    return Date.parse(/(Z|[+-]\d\d:\d\d)$/.test(text) ? text : `${text.replace(" ", "T")}Z`) / 1000;
  };
  function money(v) {
    const a = Math.abs(v), sign = v < 0 ? "-" : "";
    if (a >= 1e9) return `${sign}${(a / 1e9).toFixed(1)}B`;
    if (a >= 1e6) return `${sign}${(a / 1e6).toFixed(0)}M`;
    if (a >= 1e3) return `${sign}${(a / 1e3).toFixed(0)}k`;
    return `${sign}${a.toFixed(0)}`;
  }
  const width = (node) => Math.max(240, Math.floor(node.clientWidth || 0) - 4);

  // -- key levels ------------------------------------------------------------------

  function fillSelect(select, values, labels) {
    const keep = select.value;
    select.replaceChildren(...values.map((v, i) => el("option", {value: v, text: labels ? labels[i] : v})));
    if (values.includes(keep)) select.value = keep;
  }

  async function refreshChains() {
    const answer = await api("/api/chains");
    const note = $("levels-note");
    if (answer.status !== 200) {
      note.textContent = answer.status === 0 ? "The API cannot be reached." :
        `The stored option chains are not available (${answer.status}).`;
      return;
    }
    state.chains = answer.body.data || [];
    const symbols = [...new Set(state.chains.map((c) => c.symbol))].sort();
    const form = $("levels-form");
    if (!symbols.length) {
      form.hidden = true;
      note.textContent = "No option chains are stored yet: whale_flows stores them, market_structure reads them.";
      return;
    }
    form.hidden = false;
    const symbol = $("levels-symbol");
    fillSelect(symbol, ["", ...symbols], ["choose\u2026", ...symbols]);
    fillExpiries();
    if (!$("levels-chart").childElementCount) note.textContent = `${symbols.length} symbols with stored chains: choose one.`;
    else if (symbol.value && $("levels-expiry").value) draw();  // keep the chart current
  }

  function fillExpiries() {
    const symbol = $("levels-symbol").value;
    const expiries = state.chains.filter((c) => c.symbol === symbol).map((c) => c.expiry).sort();
    const select = $("levels-expiry");
    select.disabled = !symbol;
    fillSelect(select, symbol ? ["all", ...expiries] : [""],
               symbol ? ["all expirations", ...expiries] : ["choose a symbol first"]);
  }

  function clearLevels() {
    for (const plot of state.plots) plot.destroy();
    state.plots = [];
    $("levels-chart").replaceChildren();
    $("levels-legend").replaceChildren();
  }

  function markerValues(body) {
    return Object.fromEntries(MARKERS.map((m) => [m.key, m.key === "spot" ? body.underlying_price : strikeOf(body[m.key])]));
  }

  /** A uPlot hook drawing each marker as a vertical line with its short label above it. */
  function markerHook(values) {
    return (u) => {
      const ctx = u.ctx, top = u.bbox.top, bottom = top + u.bbox.height, dpr = devicePixelRatio || 1;
      ctx.save();
      ctx.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      const placed = [];  // the x of each label drawn: markers on (nearly) one strike stack their labels
      for (const m of MARKERS) {
        const v = values[m.key];
        if (v === null || v === undefined) continue;
        const x = Math.round(u.valToPos(v, "x", true));
        ctx.strokeStyle = m.color;
        ctx.lineWidth = m.width * dpr;
        ctx.setLineDash(m.dash.map((d) => d * dpr));
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, bottom);
        ctx.stroke();
        const row = placed.filter((p) => Math.abs(p - x) < 40 * dpr).length, y = top + 2 * dpr + row * 14 * dpr;
        placed.push(x);
        const w = ctx.measureText(m.short).width + 4 * dpr;
        ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
        ctx.fillRect(x - w / 2, y - 1 * dpr, w, 13 * dpr);
        ctx.fillStyle = m.color;
        ctx.fillText(m.short, x, y);
      }
      ctx.restore();
    };
  }

  function chart(container, title, series, data, values, height) {
    const box = el("figure", {class: "chart"}, el("figcaption", {text: title}));
    container.append(box);
    const xs = data[0].concat(Object.values(values).filter((v) => v !== null && v !== undefined));
    const lo = Math.min(...xs), hi = Math.max(...xs), pad = Math.max((hi - lo) * 0.03, 0.5);
    const plot = new uPlot({
      width: width(container), height, legend: {live: false},
      scales: {x: {time: false, range: () => [lo - pad, hi + pad]}},
      axes: [{label: "strike"}, {size: 56, values: (u, ticks) => ticks.map(money)}],
      series: [{label: "strike"}, ...series],
      hooks: {draw: [markerHook(values)]},
    }, data, box);
    plot.root.setAttribute("role", "img");
    plot.root.setAttribute("aria-label", title);
    box.dataset.points = String(data[0].length);
    state.plots.push(plot);
  }

  const bars = (label, color) => ({label, stroke: color, fill: color + "99", width: 1,
                                   paths: uPlot.paths.bars({size: [0.7, 40]})});

  function legend(values) {
    const svg = "http://www.w3.org/2000/svg";
    return MARKERS.map((m) => {
      const sample = document.createElementNS(svg, "svg");
      sample.setAttribute("width", "28"); sample.setAttribute("height", "10"); sample.setAttribute("aria-hidden", "true");
      const stroke = document.createElementNS(svg, "line");
      for (const [k, v] of [["x1", 0], ["y1", 5], ["x2", 28], ["y2", 5], ["stroke", m.color], ["stroke-width", m.width],
                            ["stroke-dasharray", m.dash.length ? m.dash.join(" ") : "none"]]) stroke.setAttribute(k, v);
      sample.append(stroke);
      const v = values[m.key];
      return el("li", {"data-marker": m.key}, sample, " ", el("strong", {text: m.short}), ` ${m.label}: `,
                v === null || v === undefined ? "none" : fmt(v));
    });
  }

  async function draw() {
    const symbol = $("levels-symbol").value, expiry = $("levels-expiry").value, note = $("levels-note");
    if (!symbol || !expiry) {
      clearLevels();
      note.textContent = "Choose a symbol and an expiration.";
      return;
    }
    const asked = ++state.asked;
    const answer = await api(`/api/key_levels?symbol=${encodeURIComponent(symbol)}&expiry=${encodeURIComponent(expiry)}`);
    if (asked !== state.asked) return;  // a later choice is on its way
    clearLevels();
    if (answer.status !== 200) {
      note.textContent = answer.status === 0 ? "The API cannot be reached." :
        `No key levels for ${symbol} ${expiry} (${answer.status}): ${(answer.body || {}).error || "no answer"}`;
      return;
    }
    const body = answer.body, rows = body.strike_data || [];
    if (!rows.length) {
      note.textContent = `No strikes are held for ${symbol} ${expiry}.`;
      return;
    }
    const values = markerValues(body), x = rows.map((r) => r.strike), col = (k) => rows.map((r) => r[k]);
    const where = expiry === "all" ? `all ${body.expirations.length} expirations` : expiry;
    chart($("levels-chart"), `${symbol}, ${where}: GEX per strike, calls up (green bars), puts down (red bars), net GEX (blue line)`,
          [bars("Call GEX", COLORS.call), bars("Put GEX", COLORS.put), {label: "Net GEX", stroke: COLORS.net, width: 2}],
          [x, col("call_gex"), col("put_gex"), col("net_gex")], values, 280);
    chart($("levels-chart"), "Volume per strike: calls up (green), puts down (red)",
          [bars("Call volume", COLORS.call), bars("Put volume", COLORS.put)],
          [x, col("call_vol"), rows.map((r) => (r.put_vol === null ? null : -r.put_vol))], values, 190);
    $("levels-legend").replaceChildren(...legend(values));
    const flip = values.gamma_flip === null ? "no gamma flip within \u00B110 %" :
      `gamma flip ${fmt(values.gamma_flip)} (spot ${values.gamma_flip < body.underlying_price ? "above" : "below"} it)`;
    note.textContent = `${symbol} ${where}: spot ${fmt(body.underlying_price)}; call wall ${fmt(values.call_wall)}, ` +
      `put wall ${fmt(values.put_wall)}; ${flip}; net GEX ${body.net_gex === null ? "none" : money(body.net_gex)}; ` +
      `put/call volume ${fmt(body.pc_ratio)} (${rows.length} strikes, ${body.source}, fetched ${body.fetched_at}).`;
  }

  // -- sentiment -------------------------------------------------------------------

  function gauge(row) {
    const score = row.sentiment_score, sign = LABEL_SIGNS[row.sentiment_label] || "?";
    const label = String(row.sentiment_label || "unknown").replace(/_/g, " ");
    const scale = el("div", {class: "gauge", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
                             "aria-valuenow": String(score), "aria-label": `${row.symbol} sentiment score`,
                             "aria-valuetext": `${fmt(score)}, ${label}`});
    for (const [lo, hi, name] of BANDS) {
      // Only the wide end bands have room for their names; the ticks and the label say the rest.
      const band = el("span", {class: "band", title: `${name}: ${lo} to ${hi}`},
                      hi - lo >= 20 ? el("span", {class: "band-name", text: name}) : "");
      band.style.flexBasis = `${hi - lo}%`;  // CSSOM, which the page's CSP allows (a style attribute it would not)
      scale.append(band);
    }
    const marker = el("span", {class: "gauge-marker", "aria-hidden": "true", text: "\u25BC"});
    marker.style.left = `${Math.max(0, Math.min(100, score))}%`;
    scale.append(marker);
    const ticks = el("div", {class: "gauge-ticks", "aria-hidden": "true"},
                     ...[0, 35, 45, 55, 65, 100].map((t) => { const s = el("span", {text: String(t)}); s.style.left = `${t}%`; return s; }));
    const ivRank = row.iv_rank === null || row.iv_rank === undefined ?
      `collecting (${row.iv_history_days || 0} of ${IV_RANK_DAYS} days)` : fmt(row.iv_rank);
    const facts = [["P/C volume", fmt(row.pc_volume_ratio)], ["P/C open interest", fmt(row.pc_oi_ratio)],
                   ["Average IV", row.avg_iv === null ? "none" : `${fmt(row.avg_iv)} %`], ["IV rank", ivRank],
                   ["Data quality", row.data_quality || "unknown"], ["As of", `${row.timestamp} UTC`]];
    const spark = el("div", {class: "spark", "data-symbol": row.symbol});
    return el("article", {class: "sentiment", "data-symbol": row.symbol, "data-label": row.sentiment_label || ""},
      el("h4", {text: row.symbol}),
      el("p", {class: "sentiment-label"}, el("span", {class: "badge", text: `${sign} ${label}`}),
         ` score ${fmt(score)} of 100`),
      scale, ticks,
      el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", {text: k}), el("dd", {text: v})])), spark);
  }

  async function refreshSentiment() {
    const answer = await api("/api/market_sentiment"), note = $("sentiment-note"), box = $("sentiment-gauges");
    if (answer.status !== 200) {
      note.textContent = answer.status === 0 ? "The API cannot be reached." : `Sentiment is not available (${answer.status}).`;
      return;
    }
    const rows = Object.values(answer.body.data || {}).sort((a, b) => a.symbol.localeCompare(b.symbol));
    for (const plot of state.sparks.values()) plot.destroy();
    state.sparks.clear();
    box.replaceChildren(...rows.map(gauge));
    note.textContent = rows.length ? "" : "No sentiment yet: market_structure computes it from the stored SPY and QQQ chains.";
    await Promise.all(rows.map((row) => sparkline(row.symbol)));
  }

  async function sparkline(symbol) {
    const answer = await api(`/api/market_sentiment/history?symbol=${encodeURIComponent(symbol)}&hours=${HISTORY_HOURS}`);
    const slot = document.querySelector(`.spark[data-symbol="${CSS.escape(symbol)}"]`);
    if (!slot) return;
    const rows = answer.status === 200 ? answer.body.data || [] : [];
    if (rows.length < 2) {
      slot.replaceChildren(el("p", {class: "note", text: answer.status === 200 ?
        `Score history: ${rows.length} cycle${rows.length === 1 ? "" : "s"} in the last ${HISTORY_HOURS} h, too few for a line yet.` :
        `Score history is not available (${answer.status}).`}));
      return;
    }
    const caption = el("p", {class: "note", text: `Score, last ${HISTORY_HOURS} h (${rows.length} cycles, on the 0-100 scale)`});
    slot.replaceChildren(caption);
    const plot = new uPlot({
      width: width(slot), height: 90, legend: {show: false}, cursor: {show: false},
      scales: {x: {time: true}, y: {range: [0, 100]}},
      axes: [{show: false}, {size: 34, splits: () => [0, 35, 65, 100], values: (u, t) => t.map(String),
                             font: "10px system-ui"}],
      series: [{}, {label: "Score", stroke: COLORS.net, width: 1.5}],
    }, [rows.map((r) => utc(r.timestamp)), rows.map((r) => r.sentiment_score)], slot);
    plot.root.setAttribute("role", "img");
    plot.root.setAttribute("aria-label", `${symbol} sentiment score over the last ${HISTORY_HOURS} hours`);
    state.sparks.set(symbol, plot);
  }

  function resize() {
    for (const plot of state.plots) plot.setSize({width: width($("levels-chart")), height: plot.height});
    for (const plot of state.sparks.values()) {
      const slot = plot.root.parentElement;
      if (slot) plot.setSize({width: width(slot), height: plot.height});
    }
  }

  function start() {
    $("levels-symbol").addEventListener("change", () => { fillExpiries(); draw(); });
    $("levels-expiry").addEventListener("change", draw);
    $("levels-form").addEventListener("submit", (event) => { event.preventDefault(); draw(); });
    repeat(refreshChains, CHAINS_EVERY_S);
    repeat(refreshSentiment, SENTIMENT_EVERY_S);
    window.addEventListener("resize", resize);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
