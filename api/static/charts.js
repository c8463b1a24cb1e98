/* The page's charts, drawn with uPlot (vendor/uPlot.iife.min.js): a symbol's price with its
 * Bollinger and Keltner bands and the VPB breakout marks, its MACD, its TTM momentum with the
 * squeeze state, and each worker's cycle durations. Every chart has a text summary beside it. */
"use strict";
(function () {
  const charts = new Map(); // container element -> [uPlot, ...]
  const COLORS = {price: "#1f4e99", band: "#8a8f98", kc: "#b0803a", up: "#1b7f3b", down: "#b3261e",
                  macd: "#1f4e99", signal: "#c25e00", hist: "#6b7280", failed: "#b3261e"};

  const day = (date) => Date.parse(`${date}T00:00:00Z`) / 1000;
  // ISO 8601 with Z (the new fields), or the old fields' "YYYY-MM-DD HH:MM:SS", which are UTC too
  const utc = (at) => {
    const text = String(at);
    return Date.parse(/(Z|[+-]\d\d:\d\d)$/.test(text) ? text : `${text.replace(" ", "T")}Z`) / 1000;
  };
  const only = (flags, values) => flags.map((flag, i) => (flag ? values[i] : null));
  const fmt = (v, d = 2) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));

  function width(container) {
    return Math.max(240, Math.floor(container.clientWidth || 0) - 4);
  }

  function clear(container) {
    for (const plot of charts.get(container) || []) plot.destroy();
    charts.delete(container);
    container.replaceChildren();
  }

  function add(container, title, options, data, height) {
    const box = document.createElement("figure");
    box.className = "chart";
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    box.append(caption);
    container.append(box);
    const plot = new uPlot({width: width(container), height, legend: {live: false}, ...options}, data, box);
    plot.root.setAttribute("role", "img");
    plot.root.setAttribute("aria-label", title);
    box.dataset.points = String(data[0].length);
    charts.get(container).push(plot);
    return plot;
  }

  // Marks differ by shape as well as colour: filled dots, or hollow rings (`hollow`).
  const points = (label, stroke, size = 9, hollow = false) => ({
    label, stroke, fill: hollow ? "#fff" : stroke, width: 0, paths: () => null,
    points: {show: true, size, width: hollow ? 2 : 1, stroke, fill: hollow ? "#fff" : stroke}});
  const bars = (label, stroke) => ({label, stroke, fill: stroke + "99", width: 1,
                                    paths: uPlot.paths.bars({size: [0.7, 12]})});
  const line = (label, stroke, extra) => ({label, stroke, width: 1.5, ...extra});

  /** Draw a symbol's three charts from GET /api/symbol/SYMBOL; return its text summary. */
  function symbol(container, answer) {
    clear(container);
    charts.set(container, []);
    const d = answer.data, x = d.date.map(day), n = d.date.length;
    if (!n) return `No bars for ${answer.symbol}.`;
    const time = {x: {time: true}};
    add(container, `${answer.symbol}: close, Bollinger and Keltner bands; VPB breakouts (filled green dots above the high) and breakdowns (red rings below the low)`, {
      scales: time,
      series: [{}, line("Close", COLORS.price, {width: 2}),
               line("BB upper", COLORS.band, {dash: [4, 4], width: 1}), line("BB lower", COLORS.band, {dash: [4, 4], width: 1}),
               line("KC upper", COLORS.kc, {dash: [2, 3], width: 1}), line("KC lower", COLORS.kc, {dash: [2, 3], width: 1}),
               points("VPB breakout", COLORS.up, 11), points("VPB breakdown", COLORS.down, 11, true)],
    }, [x, d.close, d.bb_upper, d.bb_lower, d.kc_upper, d.kc_lower,
        only(d.vpb_breakout, d.high), only(d.vpb_breakdown, d.low)], 260);
    add(container, "MACD (12, 26, 9): line, signal and histogram", {
      scales: time,
      series: [{}, bars("Histogram", COLORS.hist), line("MACD", COLORS.macd), line("Signal", COLORS.signal)],
    }, [x, d.macd_histogram, d.macd, d.macd_signal], 160);
    const zero = d.squeeze_on.map(() => 0);
    add(container, "TTM Squeeze: momentum; on the zero line, squeeze on (filled red dots) or off (green rings)", {
      scales: time,
      series: [{}, bars("Momentum", COLORS.hist), points("Squeeze on", COLORS.down, 6), points("Squeeze off", COLORS.up, 6, true)],
    }, [x, d.ttm_momentum, only(d.squeeze_on.map((s) => s === true), zero),
        only(d.squeeze_on.map((s) => s === false), zero)], 140);
    return summary(answer.symbol, d, n);
  }

  function summary(name, d, n) {
    const last = n - 1;
    let run = 0;
    while (run < n && d.squeeze_on[last - run] === d.squeeze_on[last]) run += 1;
    const squeeze = d.squeeze_on[last] === null ? "squeeze unknown" :
      `squeeze ${d.squeeze_on[last] ? "ON" : "off"} for ${run} bar${run === 1 ? "" : "s"}`;
    const lastMark = (flags) => { for (let i = last; i >= 0; i -= 1) if (flags[i]) return d.date[i]; return "none"; };
    return `${name} on ${d.date[last]}: close ${fmt(d.close[last])}; MACD ${fmt(d.macd[last], 3)}, ` +
      `signal ${fmt(d.macd_signal[last], 3)}, histogram ${fmt(d.macd_histogram[last], 3)}; ${squeeze}, ` +
      `momentum ${fmt(d.ttm_momentum[last], 3)}; last VPB breakout ${lastMark(d.vpb_breakout)}, ` +
      `breakdown ${lastMark(d.vpb_breakdown)} (${n} bars).`;
  }

  /** One small chart per worker from GET /api/cycles rows: durations, failed cycles marked. */
  function cycles(container, rows, hours) {
    const now = Date.now() / 1000, range = () => [now - hours * 3600, now];
    const byWorker = new Map();
    for (const row of rows) {
      if (!byWorker.has(row.worker)) byWorker.set(row.worker, []);
      byWorker.get(row.worker).push(row);
    }
    clear(container);
    charts.set(container, []);
    for (const [worker, list] of [...byWorker].sort(([a], [b]) => a.localeCompare(b))) {
      const x = list.map((r) => utc(r.at)), y = list.map((r) => r.duration_s);
      const failed = list.filter((r) => !r.ok).length;
      const sorted = [...y].sort((a, b) => a - b), median = sorted[Math.floor((sorted.length - 1) / 2)];
      const slot = document.createElement("div");
      slot.className = "cycle-chart";
      slot.dataset.worker = worker;
      container.append(slot);
      charts.set(slot, []);
      add(slot, `${worker}: ${list.length} cycle${list.length === 1 ? "" : "s"}, median ${fmt(median, 2)} s, ${failed} failed (red rings)`, {
        scales: {x: {time: true, range}}, legend: {show: false},
        axes: [{}, {size: 50, values: (u, ticks) => ticks.map((t) => `${t} s`)}],
        series: [{}, line("Duration (s)", COLORS.macd, {points: {show: list.length < 60, size: 4}}),
                 points("Failed", COLORS.failed, 7, true)],
      }, [x, y, list.map((r, i) => (r.ok ? null : y[i]))], 110);
      charts.get(container).push(...charts.get(slot));
      charts.delete(slot);
    }
  }

  function resize() {
    for (const [container, plots] of charts) {
      for (const plot of plots) {
        const box = plot.root.parentElement && plot.root.parentElement.parentElement;
        plot.setSize({width: width(box || container), height: plot.height});
      }
    }
  }

  window.MdwCharts = {symbol, cycles, clear, resize};
})();
