// Operator console: renders the daemon's snapshot, follows the live stream (/api/stream), sends the
// session controls. Plain ES2020, no framework; uPlot (global) draws the charts.
// Every server string goes in with textContent; the one exception is a report's `html`, which the
// server renders from Markdown with raw HTML escaped.
'use strict';

// Created before anything else so a latency probe can read it from the first `state` message on.
window.consoleStateLog = [];

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? '';
  const CSRF = meta('csrf-token'), USER = meta('user'), ROLE = meta('role');
  const READ_ONLY = ROLE !== 'operator';  // the server refuses anyway; anything but "operator" reads only
  const LOST = 'console lost its connection to the server';
  const DASH = '—';
  const MAX_EVENTS = 2000;                // kept in memory; the snapshot carries at most 500

  const S = {
    snap: null,
    skew: 0,            // server clock minus browser clock (s): "time in state" uses the server's clock
    state: null, since: null,
    stateNo: null, stateAt: 0,          // last `state` message: a snapshot older than it must not roll the badge back
    connProblem: null,  // the stream is down / the first load failed: shown among the problems
    events: new Map(),  // String(id) -> event, merged from snapshots and `event` messages
    symbols: [],
    selectedKey: null, priceWin: null, priceOthers: [], priceReq: 0,
    reportsKey: '', selectedReport: null, reportReq: 0,
    logsKey: '', logReq: 0,
    tableKeys: {},      // id -> JSON of the rows last drawn: redraw only on change (keeps a text selection)
    seriesKeys: {},
    charts: {},
    resultTimer: 0,
    es: null, heardAt: 0, reopenTimer: 0,
  };
  let leaving = false;

  // ---- formatting -------------------------------------------------------------------------------
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const pad2 = (n) => String(n).padStart(2, '0');
  const fixed = (v, d) => isNum(v) ? v.toLocaleString('en-US', {minimumFractionDigits: d, maximumFractionDigits: d}) : DASH;
  const int = (v) => isNum(v) ? String(Math.round(v)) : DASH;
  const price = (v) => isNum(v) ? v.toLocaleString('en-US', {maximumSignificantDigits: 8, useGrouping: false}) : DASH;
  const age = (v) => isNum(v) ? `${v.toFixed(1)} s` : DASH;
  function pnl(v) {  // 2 decimals with an explicit sign; a rounded zero has none
    if (!isNum(v)) return DASH;
    const r = Math.round(v * 100) / 100;
    return r === 0 ? '0.00' : (r > 0 ? '+' : '-') + fixed(Math.abs(r), 2);
  }
  const signClass = (v) => !isNum(v) || Math.abs(v) < 0.005 ? '' : v > 0 ? 'pos' : 'neg';
  function time(ts) {  // local HH:MM:SS
    if (!isNum(ts)) return DASH;
    const d = new Date(ts * 1000);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }
  function dateTime(ts) {
    if (!isNum(ts)) return DASH;
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${time(ts)}`;
  }
  function duration(s) {  // "12m 03s", "1h 02m 03s", "2d 03h 04m"
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${pad2(h)}h ${pad2(m)}m`;
    if (h) return `${h}h ${pad2(m)}m ${pad2(s % 60)}s`;
    return `${m}m ${pad2(s % 60)}s`;
  }
  function compact(v) {  // axis labels
    if (!isNum(v)) return '';
    const a = Math.abs(v);
    if (a >= 1e9) return `${+(v / 1e9).toFixed(2)}G`;
    if (a >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
    if (a >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
    return String(+v.toPrecision(6));
  }

  // ---- DOM helpers --------------------------------------------------------------------------------
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  const td = (text, cls) => el('td', text, cls);
  const num = (text, cls) => el('td', text, cls ? `num ${cls}` : 'num');
  // green yes / red NO, a dash when unknown
  const flag = (v, yes, no, noCls = 'bad') => (v === true ? td(yes, 'good') : v === false ? td(no, noCls) : td(DASH, 'muted'));
  function tr(cells, cls) {
    const r = el('tr', null, cls);
    r.append(...cells);
    return r;
  }
  function fillTable(id, rows, makeRow) {
    const list = Array.isArray(rows) ? rows : [];
    const key = JSON.stringify(list);
    if (S.tableKeys[id] === key) return;
    S.tableKeys[id] = key;
    const table = $(id);
    table.tBodies[0].replaceChildren(...list.map(makeRow));
    const note = table.parentElement.querySelector('.empty-note');
    if (note) note.hidden = list.length > 0;
  }

  // ---- HTTP ---------------------------------------------------------------------------------------
  function toLogin() {
    if (!leaving) { leaving = true; window.location.assign('/login'); }
  }
  async function api(path, init = {}) {
    const res = await fetch(path, {credentials: 'same-origin', ...init,
      headers: {Accept: 'application/json', ...(init.headers || {})}});
    if (res.status === 401) {
      toLogin();
      throw Object.assign(new Error('login needed'), {status: 401});
    }
    let body = null;
    try { body = await res.json(); } catch { body = null; }
    if (!res.ok) throw Object.assign(new Error(body?.error || `HTTP ${res.status}`), {status: res.status, body});
    return body ?? {};
  }

  // ---- top bar ------------------------------------------------------------------------------------
  function setState(state, since, reason) {
    const s = String(state || 'unknown').toLowerCase();
    const badge = $('#state');
    badge.title = 'session state';
    badge.dataset.state = s;
    badge.textContent = s.toUpperCase();
    document.body.dataset.state = s;
    document.title = `${s.toUpperCase()} — Trading console`;
    S.state = s;
    S.since = isNum(since) ? since : null;
    $('#state-since').textContent = time(S.since);
    const r = $('#state-reason');
    r.textContent = reason || '';
    r.title = reason || '';
    tickAge();
  }
  function tickAge() {
    $('#state-age').textContent = S.since === null ? DASH : duration(Date.now() / 1000 + S.skew - S.since);
  }
  function renderProblems() {
    const list = (Array.isArray(S.snap?.problems) ? S.snap.problems : []).map(String);
    if (S.connProblem) list.unshift(S.connProblem);
    const ul = $('#problems');
    ul.dataset.count = String(list.length);
    if (!list.length) ul.replaceChildren(el('li', 'all clear', 'all-clear'));
    else ul.replaceChildren(...list.map((p) => el('li', p, 'problem')));
  }
  function setConnProblem(text) {
    if (S.connProblem === text) return;
    S.connProblem = text;
    renderProblems();
    document.body.classList.toggle('stream-lost', !!text);
  }
  function renderBus(bus) {
    const out = $('#bus-status');
    if (!bus || bus.connected === null || bus.connected === undefined) { out.textContent = DASH; out.className = ''; return; }
    const a = isNum(bus.last_message_age_s) ? `, heard ${age(bus.last_message_age_s)} ago` : '';
    out.textContent = (bus.connected ? 'ok' : 'DISCONNECTED') + a;
    out.className = bus.connected ? '' : 'bad';
  }

  // ---- snapshot -----------------------------------------------------------------------------------
  function onSnapshot(snap) {
    if (!snap || typeof snap !== 'object') return;
    S.snap = snap;
    if (isNum(snap.now)) S.skew = snap.now - Date.now() / 1000;
    const ses = snap.session || {};
    // A snapshot built just before a transition can arrive after that transition's `state` message.
    const older = isNum(ses.transition_no) && isNum(S.stateNo) && ses.transition_no < S.stateNo
      && Date.now() - S.stateAt < 5000;
    if (!older) {
      setState(ses.state, ses.since, ses.reason);
      if (isNum(ses.transition_no)) S.stateNo = ses.transition_no;
    }
    $('#session-id').textContent = ses.session_id || DASH;
    renderBus(snap.bus);
    $('.session-meta').title = $('.session-meta').textContent.replace(/\s+/g, ' ').trim();
    renderProblems();
    fillTable('#processes', snap.processes, (p) => tr([
      td(p.name), flag(p.alive, 'yes', 'NO'), num(int(p.pid)), num(age(p.heartbeat_age_s)),
      num(int(p.restarts), p.restarts > 0 ? 'warn' : ''), flag(p.trading, 'on', 'off', 'muted'),
      num(fixed(p.cpu_pct, 1)), num(fixed(p.rss_mb, 1)),
    ], p.alive === false ? 'row-bad' : ''));
    fillTable('#connectors', snap.connectors, (c) => tr([
      td(c.name), flag(c.connected, 'yes', 'NO'), num(fixed(c.latency_ms, 1)),
      num(int(c.errors), c.errors > 0 ? 'warn' : ''), num(int(c.reconnects)),
    ], c.connected === false ? 'row-bad' : ''));
    fillTable('#positions', snap.positions, (p) => tr([
      td(p.symbol), num(price(p.qty), signClass(p.qty)), num(price(p.avg_price)), num(price(p.mark)),
      num(pnl(p.unrealized_pnl), signClass(p.unrealized_pnl)), num(fixed(p.notional, 2)),
    ]));
    fillTable('#orders', snap.orders, (o) => tr([
      Object.assign(td(o.id, 'oid'), {title: String(o.id ?? '')}), td(o.symbol), td(o.side, o.side === 'buy' ? 'pos' : o.side === 'sell' ? 'neg' : ''),
      num(price(o.qty)), num(price(o.price)), td(String(o.status ?? '').replace(/_/g, ' '), 'wrap'), num(price(o.filled_qty)), td(o.strategy),
    ]));
    renderPnl(snap.pnl || {});
    renderTransitions();
    setSeries('pnl', snap.pnl_series, ['realized', 'unrealized', 'exposure']);
    setSeries('activity', snap.activity, ['decisions', 'orders', 'fills', 'rejects']);
    updateSymbols(snap.symbols);
    mergeEvents(snap.events);
  }
  function renderPnl(p) {
    for (const k of ['realized', 'unrealized']) {
      const d = $(`#pnl-${k}`);
      d.textContent = pnl(p[k]);
      d.className = signClass(p[k]);
    }
    $('#pnl-fees').textContent = fixed(p.fees, 2);
    $('#pnl-exposure').textContent = fixed(p.exposure, 2);
  }
  function renderTransitions() {
    const list = Array.isArray(S.snap?.transitions) ? S.snap.transitions : [];
    const key = JSON.stringify(list);
    if (S.tableKeys.transitions === key) return;
    S.tableKeys.transitions = key;
    const chip = (s) => {
      const c = el('span', String(s || '?').toUpperCase(), 'chip');
      c.dataset.state = String(s || '').toLowerCase();
      return c;
    };
    $('#transitions').replaceChildren(...list.slice().reverse().map((t) => {  // newest first
      const li = el('li', null, 'transition-row');
      li.dataset.no = String(t.no ?? '');
      li.append(el('span', time(t.ts), 'time'), chip(t.old), el('span', ' → ', 'arrow'), chip(t.new),
        el('span', t.reason || '', 'reason'));
      return li;
    }));
    $('#transitions').parentElement.querySelector('.empty-note').hidden = list.length > 0;
  }

  // ---- `state` messages -----------------------------------------------------------------------------
  function onStateMessage(d) {
    window.consoleStateLog.push({state: d.state, no: d.no, ts: d.ts, seen: Date.now() / 1000});
    setState(d.state, d.since, d.reason);
    if (isNum(d.no)) { S.stateNo = d.no; S.stateAt = Date.now(); }
    // Show the transition now rather than with the next snapshot.
    if (S.snap) {
      const list = Array.isArray(S.snap.transitions) ? S.snap.transitions : (S.snap.transitions = []);
      if (!list.some((t) => t.no === d.no)) list.push({ts: d.ts, old: d.old, new: d.state, reason: d.reason, no: d.no});
      renderTransitions();
    }
    // A failsafe or a shutdown writes a report: look for it now and once it has had time to appear.
    if (d.state === 'failsafe' || d.state === 'shutdown') {
      loadReports();
      setTimeout(loadReports, 3000);
    }
  }

  // ---- charts -----------------------------------------------------------------------------------------
  const AXIS = {stroke: '#c9d1d9', grid: {stroke: '#2d333b', width: 1}, ticks: {stroke: '#2d333b', width: 1},
    font: '12px system-ui, sans-serif'};
  // Time axes in local 24-hour time (uPlot's default is am/pm with a date row); seconds only when
  // the ticks are less than a minute apart (a session just started).
  const XAXIS = {...AXIS, space: 70, values: (u, vs, ax, space, incr) => vs.map((v) => (incr < 60 ? time(v) : time(v).slice(0, 5)))};
  // A single point (the first minute of a session) gets a minute either side (uPlot would give it a day).
  const timeRange = (u, min, max) => {
    const t = u.data?.[0];
    return t?.length === 1 && isNum(t[0]) ? [t[0] - 60, t[0] + 60] : [min, max];
  };
  function seriesData(obj, keys) {  // [t, ...series] of equal length, non-numbers as gaps
    const t = Array.isArray(obj?.t) ? obj.t.filter(isNum) : [];
    return [t, ...keys.map((k) => {
      const a = Array.isArray(obj?.[k]) ? obj[k] : [];
      return t.map((_, i) => (isNum(a[i]) ? a[i] : null));
    })];
  }
  function makeChart(name, target, height, opts, nSeries) {
    if (typeof uPlot === 'undefined') return null;  // the vendored script failed to load: tables still work
    const box = $(target);
    const width = () => Math.max(240, Math.floor(box.clientWidth));
    const data = Array.from({length: nSeries + 1}, () => []);
    const u = new uPlot({width: width(), height, ...opts}, data, box);
    let last = width();
    // Follow the panel's width (the page reflows with the window); rAF avoids ResizeObserver loop warnings.
    new ResizeObserver(() => requestAnimationFrame(() => {
      const w = width();
      if (w !== last) { last = w; u.setSize({width: w, height}); }
    })).observe(box);
    S.charts[name] = u;
    return u;
  }
  function setSeries(name, obj, keys) {
    const u = S.charts[name];
    if (!u) return;
    const key = JSON.stringify(obj ?? null);
    if (S.seriesKeys[name] === key) return;
    S.seriesKeys[name] = key;
    u.setData(seriesData(obj, keys));
  }
  function setupCharts() {
    if (typeof uPlot === 'undefined') return;
    const line = (label, stroke, extra = {}) => ({label, stroke, width: 2, value: (u, v) => (v === null ? DASH : String(v)), ...extra});
    makeChart('pnl', '#pnl-chart', 200, {
      cursor: {drag: {x: false, y: false}},
      scales: {x: {time: true, range: timeRange}, y: {auto: true}, exp: {auto: true}},
      series: [{value: (u, v) => time(v)},
        line('realized', '#58a6ff', {value: (u, v) => pnl(v)}),
        line('unrealized', '#f2cc60', {value: (u, v) => pnl(v)}),
        line('exposure', '#d2a8ff', {scale: 'exp', width: 1.5, dash: [6, 4], value: (u, v) => fixed(v, 0)})],
      axes: [XAXIS, {...AXIS, scale: 'y', size: 56, values: (u, vs) => vs.map(compact)},
        {...AXIS, scale: 'exp', side: 1, size: 56, grid: {show: false}, values: (u, vs) => vs.map(compact)}],
    }, 3);
    // Counts per minute: stepped lines (a count holds for its whole minute).
    const step = uPlot.paths?.stepped?.({align: 1});
    makeChart('activity', '#activity-chart', 170, {
      cursor: {drag: {x: false, y: false}},
      scales: {x: {time: true, range: timeRange}, y: {range: (u, min, max) => [0, isNum(max) && max > 0 ? Math.ceil(max * 1.15) : 1]}},
      series: [{value: (u, v) => time(v)},
        line('decisions', '#8b949e', {paths: step, width: 1.5}),
        line('orders', '#58a6ff', {paths: step}),
        line('fills', '#3fb950', {paths: step}),
        line('rejects', '#ff6b6b', {paths: step, fill: 'rgba(255,107,107,0.18)'})],
      axes: [XAXIS, {...AXIS, size: 44, values: (u, vs) => vs.map((v) => (Number.isInteger(v) ? String(v) : ''))}],
    }, 4);
  }
  function priceChart() {  // made on first use: an empty price chart would say nothing
    if (S.charts.price || typeof uPlot === 'undefined') return S.charts.price;
    return makeChart('price', '#price-chart', 300, {
      cursor: {drag: {x: false, y: false}},
      scales: {x: {time: true, range: (u, min, max) => (S.priceWin ? [S.priceWin.start, S.priceWin.end] : [min, max])}},
      series: [{value: (u, v) => time(v)},
        {label: 'mid', stroke: '#e6edf3', width: 2, value: (u, v) => price(v)},
        {label: 'low', stroke: '#58a6ff', width: 1, value: (u, v) => price(v)},
        {label: 'high', stroke: '#f0883e', width: 1, value: (u, v) => price(v)}],
      axes: [XAXIS, {...AXIS, size: 80, values: (u, vs) => vs.map(price)}],
      hooks: {draw: [drawEventMarkers]},
    }, 3);
  }
  // Vertical lines at the chosen event (solid) and the symbol's other events in the window (dashed).
  function drawEventMarkers(u) {
    const sel = S.events.get(S.selectedKey);
    if (!sel || !S.priceWin) return;
    const {ctx} = u, {left, top, width, height} = u.bbox, px = uPlot.pxRatio || 1;
    const mark = (ts, color, w, dash, label) => {
      const x = Math.round(u.valToPos(ts, 'x', true));
      if (x < left || x > left + width) return;
      ctx.save();
      Object.assign(ctx, {strokeStyle: color, fillStyle: color, lineWidth: w * px, font: `bold ${12 * px}px system-ui, sans-serif`});
      ctx.setLineDash(dash.map((d) => d * px));
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      if (label) {
        const right = x + ctx.measureText(label).width + 6 * px > left + width;  // keep the label inside the plot
        ctx.textAlign = right ? 'right' : 'left';
        ctx.fillText(label, x + (right ? -5 : 5) * px, top + 14 * px);
      }
      ctx.restore();
    };
    for (const ev of S.priceOthers) mark(ev.ts, ev.severity === 'critical' ? '#ff6b6b' : '#f0b429', 1, [4, 4], '');
    mark(sel.ts, '#ff4fd8', 2, [], `${sel.type || sel.kind || 'event'} ${time(sel.ts)}`);
  }

  // ---- events timeline ----------------------------------------------------------------------------
  const eventKey = (ev) => String(ev.id ?? `${ev.ts}|${ev.type}|${ev.message}`);
  function addEvent(ev) {
    if (!ev || typeof ev !== 'object') return false;
    const key = eventKey(ev);
    if (S.events.has(key)) return false;
    S.events.set(key, ev);
    if (S.events.size > MAX_EVENTS) S.events.delete(S.events.keys().next().value);  // the oldest heard
    return true;
  }
  function mergeEvents(list) {
    if (!Array.isArray(list)) return;
    let changed = false;
    for (const ev of list) changed = addEvent(ev) || changed;
    if (changed) renderEvents();
  }
  function eventMatches(ev, f) {
    if (f.kind !== 'all' && ev.kind !== f.kind) return false;
    if (f.severity === 'critical' && ev.severity !== 'critical') return false;
    if (f.severity === 'warning' && ev.severity !== 'warning' && ev.severity !== 'critical') return false;
    if (f.symbol !== 'all' && ev.symbol !== f.symbol) return false;
    if (f.text) {
      const hay = [ev.message, ev.type, ev.source, ev.symbol, ev.kind].map((s) => String(s ?? '')).join(' ').toLowerCase();
      if (!hay.includes(f.text)) return false;
    }
    return true;
  }
  function renderEvents() {
    const f = {kind: $('#filter-kind').value, severity: $('#filter-severity').value, symbol: $('#filter-symbol').value,
      text: $('#filter-text').value.trim().toLowerCase()};
    const rows = [...S.events.values()].filter((ev) => eventMatches(ev, f))
      .sort((a, b) => (b.ts ?? 0) - (a.ts ?? 0) || (b.id ?? 0) - (a.id ?? 0));
    const shown = rows.slice(0, 500);
    $('#events').tBodies[0].replaceChildren(...shown.map(eventRow));
    $('#events').parentElement.querySelector('.empty-note').hidden = shown.length > 0;
    $('#events-count').textContent = rows.length === S.events.size ? `${rows.length} events`
      : `${rows.length} of ${S.events.size} events` + (rows.length > shown.length ? ` (newest ${shown.length} shown)` : '');
  }
  function eventRow(ev) {
    const r = el('tr', null, 'event-row');
    const key = eventKey(ev);
    Object.assign(r.dataset, {key, kind: ev.kind ?? '', severity: ev.severity ?? '', symbol: ev.symbol ?? '', type: ev.type ?? ''});
    if (key === S.selectedKey) r.classList.add('selected');
    r.tabIndex = 0;
    r.append(td(time(ev.ts), 'time'), td(ev.kind), td(ev.severity, `sev sev-${ev.severity}`), td(ev.symbol),
      td(ev.type), td(ev.message, 'msg'), td(ev.source, 'muted'));
    return r;
  }
  function updateSymbols(symbols) {
    const list = Array.isArray(symbols) ? symbols.map(String) : [];
    if (JSON.stringify(list) === JSON.stringify(S.symbols)) return;
    S.symbols = list;
    const sel = $('#filter-symbol'), keep = sel.value;
    const opts = ['all', ...list];
    if (!opts.includes(keep)) opts.push(keep);  // never change the operator's filter behind their back
    sel.replaceChildren(...opts.map((s) => Object.assign(el('option', s), {value: s})));
    sel.value = keep;
  }
  // The bad minute replayed: mid (and low/high) from 60 s before to 30 s after the event.
  async function showPrices(key) {
    const ev = S.events.get(key);
    if (!ev) return;
    const own = ev.symbol && ev.symbol !== '*';
    const sym = own ? ev.symbol : (S.symbols[0] || '');
    S.selectedKey = key;
    for (const r of document.querySelectorAll('#events .event-row')) r.classList.toggle('selected', r.dataset.key === key);
    const cap = $('#price-caption');
    const what = `${ev.kind || 'event'} ${ev.type || ''}: ${ev.message || ''} at ${time(ev.ts)}`;
    if (!sym || !isNum(ev.ts)) { cap.textContent = `${what} — no symbol known to show prices for`; return; }
    const start = ev.ts - 60, end = ev.ts + 30, req = ++S.priceReq;
    cap.textContent = `${sym}: loading prices around ${what}`;
    let data;
    try {
      data = await api(`/api/prices?${new URLSearchParams({symbol: sym, start: String(start), end: String(end)})}`);
    } catch (e) {
      if (req === S.priceReq) cap.textContent = `${sym}: prices not available (${e.message}) for ${what}`;
      return;
    }
    if (req !== S.priceReq) return;  // a later click won
    S.priceWin = {start, end};
    S.priceOthers = [...S.events.values()].filter((o) => o !== ev && o.symbol === sym && o.ts >= start && o.ts <= end);
    const u = priceChart();
    const series = seriesData(data, ['mid', 'low', 'high']);
    if (u) u.setData(series);
    const notes = [];
    if (!own) notes.push(`the event names no symbol: ${sym} shown`);
    if (!series[0].length) notes.push('no price recorded in this window');
    if (S.priceOthers.length) notes.push(`${S.priceOthers.length} other ${sym} event(s) dashed`);
    cap.textContent = `${sym} — ${what}` + (notes.length ? ` (${notes.join('; ')})` : '');
  }

  // ---- reports --------------------------------------------------------------------------------------
  async function loadReports() {
    let data;
    try { data = await api('/api/reports'); } catch { return; }  // kept as is; the next poll tries again
    const list = Array.isArray(data.reports) ? data.reports : [];
    const key = JSON.stringify(list);
    if (key === S.reportsKey) return;
    S.reportsKey = key;
    $('#reports').replaceChildren(...list.map((r) => {
      const b = Object.assign(el('button', null, 'report-link'), {type: 'button', title: r.title || r.name || ''});
      b.dataset.name = r.name ?? '';
      if (r.name === S.selectedReport) b.classList.add('selected');
      const when = el('span', null, 'when');
      when.append(el('span', dateTime(r.ts), 'time'), el('span', r.kind, 'kind'));
      b.append(when, outcome(r.ok), el('span', r.title || r.name, 'title'));
      const li = el('li');
      li.append(b);
      return li;
    }));
    $('#reports').parentElement.querySelector('.empty-note').hidden = list.length > 0;
  }
  function outcome(ok) {
    const s = el('span', ok === true ? 'ok' : ok === false ? 'NOT OK' : 'unknown', 'outcome');
    s.dataset.ok = String(ok);
    return s;
  }
  async function openReport(name) {
    S.selectedReport = name;
    for (const b of document.querySelectorAll('#reports .report-link')) b.classList.toggle('selected', b.dataset.name === name);
    const view = $('#report-view'), req = ++S.reportReq;
    view.replaceChildren(el('p', `loading ${name}…`, 'muted'));
    let r;
    try { r = await api(`/api/reports/${encodeURIComponent(name)}`); } catch (e) {
      if (req === S.reportReq) view.replaceChildren(el('p', `report ${name}: ${e.message}`, 'bad'));
      return;
    }
    if (req !== S.reportReq) return;
    const title = Object.assign(el('h3', r.title || r.name), {id: 'report-title'});
    const out = Object.assign(el('p', 'outcome: '), {id: 'report-outcome'});
    out.dataset.ok = String(r.ok ?? null);
    out.append(outcome(r.ok ?? null));
    const facts = [r.kind, r.trigger && `trigger: ${r.trigger}`, isNum(r.started_at) && `started ${dateTime(r.started_at)}`,
      isNum(r.finished_at) && `finished ${time(r.finished_at)}`,
      isNum(r.started_at) && isNum(r.finished_at) && `(${(r.finished_at - r.started_at).toFixed(1)} s)`];
    view.replaceChildren(title, out, el('p', facts.filter(Boolean).join(' · '), 'muted'));
    if (r.kind === 'incident' || (Array.isArray(r.steps) && r.steps.length)) view.append(stepsTable(r.steps));
    const body = el('div', null, 'report-html');
    body.innerHTML = r.html || '';  // server-rendered Markdown with raw HTML escaped (contract)
    view.append(body);
  }
  function stepsTable(steps) {
    const t = Object.assign(el('table'), {id: 'report-steps'});
    t.createTHead().append(tr(['step', 'outcome', 'duration ms', 'after start', 'detail'].map((h, i) => el('th', h, i === 2 || i === 3 ? 'num' : ''))));
    const body = t.createTBody();
    for (const s of Array.isArray(steps) ? steps : []) {
      body.append(tr([td(s.name), flag(s.ok, 'ok', 'FAILED'), num(fixed(s.duration_ms, 1)),
        num(isNum(s.t) ? `+${s.t.toFixed(2)} s` : DASH), td(s.detail, 'detail')], s.ok === false ? 'row-bad' : ''));
    }
    if (!body.rows.length) body.append(tr([Object.assign(td('no step recorded', 'muted'), {colSpan: 5})]));
    return t;
  }

  // ---- logs ---------------------------------------------------------------------------------------------
  async function loadLogs() {
    const q = new URLSearchParams({limit: '200'});
    const level = $('#log-level').value, kind = $('#log-kind').value, text = $('#log-text').value.trim();
    if (level !== 'all') q.set('level', level);
    if (kind !== 'all') q.set('log', kind);
    if (text) q.set('q', text);
    const req = ++S.logReq;
    let data;
    try { data = await api(`/api/logs?${q}`); } catch (e) {
      if (req === S.logReq && !leaving) $('#log-file').textContent = `(logs not available: ${e.message})`;
      return;
    }
    if (req !== S.logReq) return;  // the filters changed meanwhile
    $('#log-file').textContent = data.file ? `(${data.file})` : '';
    const lines = Array.isArray(data.lines) ? data.lines : [];
    const key = JSON.stringify(lines);
    if (key === S.logsKey) return;
    S.logsKey = key;
    const box = $('#logs');
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    // Untrusted text: every part with textContent.
    box.replaceChildren(...lines.map((l) => {
      const div = el('div', null, 'log-line');
      div.dataset.level = String(l.level ?? '');
      div.append(el('span', l.time || dateTime(l.ts), 'time'), el('span', l.level, `lvl lvl-${l.level}`),
        el('span', l.log, 'log'));
      if (l.event) div.append(el('span', l.event, 'evt'));
      div.append(el('span', l.message, 'text'));
      return div;
    }));
    if (!lines.length) box.append(el('div', 'no matching line', 'muted'));
    if ($('#log-follow').checked && atEnd) box.scrollTop = box.scrollHeight;  // tail, unless the operator scrolled up
  }

  // ---- controls -------------------------------------------------------------------------------------
  const CONTROLS = {
    open: {title: 'Open the market', states: ['ready'],
      text: 'READY → LIVE: strategies start trading. The daemon refuses unless every process is alive, the book '
        + 'is reconciled with the venues, the venue holds nothing foreign and storage is healthy.'},
    close: {title: 'Close the market',
      text: 'Flatten (when configured; always in FAILSAFE), end the session (→ SHUTDOWN), write the end-of-day '
        + 'report and archive the session\'s logs. Trading stops for the day.'},
    recover: {title: 'Recover', states: ['degraded'],
      text: 'DEGRADED → LIVE. The daemon refuses unless every process is alive, at least one connector is healthy '
        + 'and no safety condition still holds.'},
    failsafe: {title: 'FAILSAFE', states: ['live', 'degraded', 'failsafe'],
      text: 'Stop new orders, cancel every open order and flatten every position now (LIVE/DEGRADED → FAILSAFE). '
        + 'Already in FAILSAFE: run the sequence again now. A reason is required.'},
    reset: {title: 'Reset', states: ['failsafe'],
      text: 'FAILSAFE → READY, once the failsafe sequence has finished and the venue holds nothing. '
        + 'Trading does not restart until the market is opened again.'},
  };
  const defaultReason = (name) => `operator ${name} (console ${USER})`;
  let pending = null;

  function openConfirm(name) {
    const c = CONTROLS[name];
    if (READ_ONLY || !c) return;
    pending = name;
    const dlg = $('#confirm'), input = $('#confirm-reason'), failsafe = name === 'failsafe';
    dlg.dataset.control = name;
    $('#confirm-title').textContent = `${c.title}?`;
    $('#confirm-text').textContent = c.text;
    const warn = S.state && c.states && !c.states.includes(S.state)
      ? `The session is ${S.state.toUpperCase()}: this applies in ${c.states.map((s) => s.toUpperCase()).join(' or ')}, `
        + 'so the daemon will probably refuse it.' : '';
    $('#confirm-warning').textContent = warn;
    $('#confirm-warning').hidden = !warn;
    $('#confirm-required').textContent = failsafe ? '(required)' : '(optional)';
    input.required = failsafe;
    input.value = failsafe ? '' : defaultReason(name);
    input.placeholder = failsafe ? 'why: required' : defaultReason(name);
    $('#confirm-error').textContent = '';
    $('#confirm-ok').textContent = failsafe ? 'Trigger FAILSAFE' : `OK: ${name}`;
    $('#confirm-ok').classList.toggle('ctl-danger', failsafe);
    dlg.showModal();
    input.focus();
    input.select();
  }
  async function submitConfirm(e) {
    e.preventDefault();  // the dialog closes only once the reason is acceptable
    const name = pending, input = $('#confirm-reason');
    let reason = input.value.trim();
    if (name === 'failsafe' && !reason) {
      $('#confirm-error').textContent = 'A reason is required for FAILSAFE.';
      input.focus();
      return;
    }
    if (!reason) reason = defaultReason(name);
    pending = null;
    $('#confirm').close();
    await sendControl(name, reason);
  }
  async function sendControl(name, reason) {
    setResult(null, `${name}: sent, waiting for the daemon…`);
    let ok = false, text;
    try {
      const res = await fetch(`/api/control/${name}`, {method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRF-Token': CSRF},
        body: JSON.stringify({reason})});
      if (res.status === 401) { toLogin(); return; }
      let body = null;
      try { body = await res.json(); } catch { body = null; }
      if (!res.ok) text = `${name} refused (HTTP ${res.status}): ${body?.error || res.statusText || 'no detail'}`;
      else if (body?.ok === true) {
        ok = true;
        text = `${name}: ok` + (body.state ? ` — session ${String(body.state).toUpperCase()}` : '');
      } else text = `${name} refused: ${body?.error || 'no answer from the daemon'}`;
    } catch (err) {
      text = `${name}: request failed (${err.message})`;
    }
    setResult(ok, text);
    $('#control-result').title = text;
  }
  function setResult(ok, text) {
    const out = $('#control-result');
    out.textContent = `${time(Date.now() / 1000)} ${text}`;
    out.dataset.ok = ok === null ? '' : String(ok);
    clearTimeout(S.resultTimer);
    if (ok !== null) {  // an answer stays 30 s (at least 10 s asked), then gives the bar back
      S.resultTimer = setTimeout(() => { out.textContent = ''; out.dataset.ok = ''; out.title = ''; }, 30000);
    }
  }

  // ---- stream ---------------------------------------------------------------------------------------
  function parse(m) {
    try { return JSON.parse(m.data); } catch { return null; }
  }
  function openStream() {
    S.es?.close();
    const es = new EventSource('/api/stream');
    S.es = es;
    S.heardAt = Date.now();
    const heard = () => { S.heardAt = Date.now(); setConnProblem(null); };
    es.addEventListener('snapshot', (m) => { heard(); onSnapshot(parse(m)); });
    es.addEventListener('state', (m) => {
      heard();
      const d = parse(m);
      if (d && typeof d.state === 'string') onStateMessage(d);
    });
    es.addEventListener('event', (m) => {
      heard();
      if (addEvent(parse(m))) renderEvents();
    });
    es.onerror = () => {
      if (leaving) return;
      setConnProblem(LOST);
      // EventSource retries a dropped connection itself; it gives up on an HTTP error (401: session
      // expired). Then ask the API why (401 → login) and open a new stream.
      if (es.readyState === EventSource.CLOSED) reopenStream(3000);
    };
  }
  function reopenStream(delay) {
    if (S.reopenTimer) return;
    S.reopenTimer = setTimeout(async () => {
      S.reopenTimer = 0;
      try { onSnapshot(await api('/api/snapshot')); } catch { /* still down: the problem stays */ }
      if (!leaving) openStream();
    }, delay);
  }
  // A snapshot comes every second: silence means the link is gone even if the socket looks open
  // (a hung server or proxy never fires `error`). Say so after 5 s, start over after 15 s.
  function watchStream() {
    if (!S.es || leaving) return;
    const quiet = Date.now() - S.heardAt;
    if (quiet > 5000) setConnProblem(LOST);
    if (quiet > 15000) {
      S.es.close();
      S.heardAt = Date.now();
      reopenStream(0);
    }
  }

  // ---- start ----------------------------------------------------------------------------------------
  function setup() {
    for (const b of document.querySelectorAll('#topbar .ctl')) {
      const name = b.dataset.control;
      if (READ_ONLY) {
        b.disabled = true;
        b.title = 'read-only user';
      } else {
        b.title = CONTROLS[name]?.text || '';
        b.addEventListener('click', () => openConfirm(name));
      }
    }
    $('#confirm-form').addEventListener('submit', submitConfirm);
    $('#confirm-form').noValidate = true;  // our own message for the failsafe reason
    $('#confirm-cancel').addEventListener('click', () => { pending = null; $('#confirm').close(); });
    $('#logout').addEventListener('click', async () => {
      leaving = true;
      try {
        await fetch('/logout', {method: 'POST', credentials: 'same-origin', headers: {'X-CSRF-Token': CSRF}});
      } catch { /* going to the login page anyway */ }
      window.location.assign('/login');
    });
    // Events: filters redraw; a click (or Enter) on a row replays its prices.
    for (const id of ['#filter-kind', '#filter-severity', '#filter-symbol']) $(id).addEventListener('change', renderEvents);
    $('#filter-text').addEventListener('input', renderEvents);
    const tbody = $('#events').tBodies[0];
    tbody.addEventListener('click', (e) => {
      const r = e.target.closest('.event-row');
      if (r) showPrices(r.dataset.key);
    });
    tbody.addEventListener('keydown', (e) => {
      const r = e.target.closest('.event-row');
      if (r && e.key === 'Enter') showPrices(r.dataset.key);
    });
    $('#reports').addEventListener('click', (e) => {
      const b = e.target.closest('.report-link');
      if (b) openReport(b.dataset.name);
    });
    // Logs: a filter change asks at once (the text after a short pause in typing).
    let typing = 0;
    $('#log-level').addEventListener('change', loadLogs);
    $('#log-kind').addEventListener('change', loadLogs);
    $('#log-text').addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(loadLogs, 300); });
    $('#log-follow').addEventListener('change', () => {
      if ($('#log-follow').checked) { loadLogs(); const box = $('#logs'); box.scrollTop = box.scrollHeight; }
    });
    // The bar's height varies (problems wrap): anchors and the overview's height follow it.
    const bar = $('#topbar');
    new ResizeObserver(() => document.documentElement.style.setProperty('--bar-h', `${bar.offsetHeight}px`)).observe(bar);
    setupCharts();
  }

  async function start() {
    setup();
    setInterval(() => { tickAge(); watchStream(); }, 1000);
    try {
      onSnapshot(await api('/api/snapshot'));
    } catch (e) {
      if (leaving) return;
      setConnProblem(`console could not load the snapshot: ${e.message}`);
    }
    openStream();
    loadReports();
    setInterval(loadReports, 10000);
    loadLogs();
    setInterval(() => { if ($('#log-follow').checked && !leaving) loadLogs(); }, 2000);
  }

  start();
})();
