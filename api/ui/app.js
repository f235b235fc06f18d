// pgha dashboard. Plain JavaScript, no framework, no build step, no
// external resources: it is embedded in the pgha binary and must work on
// a network that reaches nothing but the watcher.
//
// Everything it shows comes from the API that serves it: GET / (status),
// /lag, /plan, /history, /backups, /metrics, and the server-sent events of
// /events, which tell it when to read again. It builds the page with DOM
// calls and textContent only, never innerHTML, so that a message from the
// catalog cannot become markup.
//
// The API token is asked for each operation, in a password field; it is
// kept in memory, and in sessionStorage only when the operator ticks
// "remember in this tab". It never goes into a URL.
'use strict';

(() => {
  // The API lives at the root the dashboard is served under (/ui/).
  const base = location.pathname.replace(/\/ui(\/.*)?$/, '');
  const api = (path) => base + path;

  // Timings an e2e test (or a curious operator, in the console) reads:
  // performance.now() of the last operation's steps.
  const timings = { answers: [] };
  window.pgha = { timings };

  const $ = (id) => document.getElementById(id);

  // h builds an element: h('td', {class: 'num', dataset: {node: 'db1'}}, 'text', child).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  // svg builds an SVG element.
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) el.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c !== undefined && c !== null) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  function fmtBytes(n) {
    if (n === null || n === undefined || Number.isNaN(n)) return '–';
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    let v = Math.abs(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    const s = i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0);
    return (n < 0 ? '-' : '') + s + ' ' + units[i];
  }

  function fmtDuration(ms) {
    if (ms < 1000) return Math.round(ms) + ' ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + Math.round(s % 60) + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }

  function fmtTime(t) {
    const d = new Date(t);
    if (Number.isNaN(d.getTime()) || d.getFullYear() < 1971) return '–';
    return d.toLocaleString(undefined, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function fmtClock(t) {
    return new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function timeEl(t, text) {
    return h('time', { datetime: new Date(t).toISOString() }, text || fmtTime(t));
  }

  // throttle runs f at once, then at most once per ms: calls in between
  // are folded into one more run at the end of the window, so the last
  // change is never lost.
  function throttle(f, ms) {
    let last = 0;
    let timer = null;
    let running = false;
    let again = false;
    const run = async () => {
      timer = null;
      if (running) { again = true; return; }
      running = true;
      last = Date.now();
      try { await f(); } finally {
        running = false;
        if (again) { again = false; schedule(); }
      }
    };
    const schedule = () => {
      if (timer) return;
      timer = setTimeout(run, Math.max(0, last + ms - Date.now()));
    };
    return schedule;
  }

  async function getJSON(path) {
    const r = await fetch(api(path), { headers: { Accept: 'application/json' }, cache: 'no-store' });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const msg = body && body.error ? body.error : r.status + ' ' + r.statusText;
      throw new Error(msg);
    }
    return body;
  }

  // setText writes only a change: a live region announces every write.
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function showError(el, err) {
    el.replaceChildren(h('p', { class: 'error', role: 'alert' }, String(err.message || err)));
    el.dataset.state = 'error';
  }

  // ---- status and topology ------------------------------------------------

  let status = null;
  let slots = {}; // slot name -> {node, retained, active}, from /metrics

  const refreshStatus = throttle(async () => {
    try {
      const s = await getJSON('/');
      const first = status === null;
      status = s;
      renderStatus(s);
      addLagSample(s);
      if (first) renderEvents(s.events || []);
    } catch (e) {
      $('verdict').textContent = 'status unavailable: ' + e.message;
      $('verdict').dataset.status = 'unknown';
    }
  }, 100);

  // Slots' retained WAL is in /metrics only; read it less often.
  const refreshSlots = throttle(async () => {
    try {
      const r = await fetch(api('/metrics'), { cache: 'no-store' });
      if (!r.ok) return;
      const text = await r.text();
      const next = {};
      const re = /^(pgha_slot_retained_bytes|pgha_slot_active)\{([^}]*)\}\s+(\S+)/gm;
      let m;
      while ((m = re.exec(text))) {
        const labels = {};
        for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
        const slot = next[labels.slot] || (next[labels.slot] = { node: labels.node, retained: 0, active: false });
        if (m[1] === 'pgha_slot_active') slot.active = Number(m[3]) === 1;
        else slot.retained = Number(m[3]);
      }
      slots = next;
      if (status) renderNodes(status);
    } catch (e) { /* the slot column then shows names only */ }
  }, 5000);

  function renderStatus(s) {
    $('cluster-name').textContent = s.cluster;
    document.title = 'pgha · ' + s.cluster;
    $('observed').textContent = 'observed ' + fmtClock(s.observed_at) + (s.age_ms > 2000 ? ' (' + fmtDuration(s.age_ms) + ' old)' : '');
    $('leading').textContent = s.leading ? 'this watcher leads' : 'this watcher does not lead';
    $('version').textContent = s.version ? 'pgha ' + s.version : '';

    const v = s.primary || {};
    const verdict = $('verdict');
    verdict.dataset.status = v.status || 'unknown';
    let text = 'Primary ' + (v.node || '?') + ': ' + (v.status || 'unknown');
    if (v.status === 'suspect') text += ' (' + v.failures + ' of ' + v.threshold + ' checks failed)';
    if (v.reason && v.status !== 'healthy') text += ' — ' + v.reason;
    setText(verdict, text);

    const cat = s.catalog;
    const rec = s.record;
    const parts = ['declared primary ' + s.declared_primary];
    if (rec) parts.push('recorded primary ' + rec.primary + ' (generation ' + rec.generation + ')');
    if (cat) {
      parts.push('catalog ' + cat.address + (cat.reachable ? '' : ' UNREACHABLE' + (cat.error ? ': ' + cat.error : '')));
      if (cat.leader) parts.push('leader ' + cat.leader.owner + '@' + cat.leader.host + ' pid ' + cat.leader.pid);
      if (cat.lock) parts.push('lock held: ' + (cat.lock.operation || '') + ' by ' + cat.lock.owner + '@' + cat.lock.host);
      if (cat.switching) parts.push('switchover under way: ' + cat.switching);
    }
    $('catalog-line').textContent = parts.join(' · ');
    renderNodes(s);
    renderNodeChoices(s);
  }

  function renderNodes(s) {
    const recorded = s.record ? s.record.primary : (s.catalog && s.catalog.recorded_primary);
    const rows = (s.nodes || []).map((n) => {
      const state = n.reachable ? 'running' : (n.running ? 'unreachable' : 'stopped');
      const tags = [];
      if (n.name === s.declared_primary) tags.push(h('span', { class: 'tag', title: 'primary in cluster.hcl' }, 'declared'));
      if (n.name === recorded) tags.push(h('span', { class: 'tag', title: 'primary in the catalog record' }, 'recorded'));
      if (n.undeclared) tags.push(h('span', { class: 'tag bad' }, 'undeclared'));
      let lag = '–';
      if (n.lag_bytes !== null && n.lag_bytes !== undefined) {
        lag = fmtBytes(n.lag_bytes);
        if (n.lag_seconds !== null && n.lag_seconds !== undefined) lag += ' · ' + n.lag_seconds.toFixed(n.lag_seconds < 10 ? 2 : 0) + ' s';
      }
      let slot = '–';
      if (n.slot) {
        const info = slots[n.slot];
        slot = h('span', {}, h('code', {}, n.slot),
          info ? ' ' + (info.active ? 'active' : 'inactive') + ', retains ' + fmtBytes(info.retained) : '');
      }
      let upstream = n.upstream || '–';
      if (n.upstream) upstream += n.streaming ? ' (streaming)' : ' (not streaming)';
      return h('tr', { dataset: { node: n.name, role: n.role, reachable: String(n.reachable), state } },
        h('th', { scope: 'row' }, n.name, tags),
        h('td', {}, h('span', { class: 'role', dataset: { role: n.role } }, n.role)),
        h('td', { class: n.reachable ? '' : 'bad', title: n.error || '' }, state, n.error ? h('div', { class: 'hint' }, n.error) : null),
        h('td', { class: 'mono' }, n.host + ':' + n.port),
        h('td', { class: 'num' }, n.timeline || '–'),
        h('td', { class: 'mono' }, n.lsn || '–'),
        h('td', { class: 'num', dataset: { lagBytes: n.lag_bytes ?? '' } }, lag),
        h('td', {}, upstream),
        h('td', {}, slot));
    });
    if (rows.length === 0) rows.push(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'no nodes')));
    $('nodes-body').replaceChildren(...rows);
    const primaries = (s.nodes || []).filter((n) => n.role === 'primary').map((n) => n.name).join(',');
    if (document.body.dataset.primary !== primaries) {
      document.body.dataset.primary = primaries;
      // When the page first showed this primary (for tests and the console).
      timings.primaryShown = { nodes: primaries, at: performance.now() };
    }
  }

  // The operations' node choices follow the topology; a choice made is kept.
  function renderNodeChoices(s) {
    const names = (s.nodes || []).filter((n) => !n.undeclared).map((n) => n.name);
    const primary = (s.nodes || []).find((n) => n.role === 'primary');
    const fill = (sel, options) => {
      const keep = sel.value;
      sel.replaceChildren(...options.map(([value, label]) => h('option', { value }, label)));
      if (options.some(([value]) => value === keep)) sel.value = keep;
    };
    const others = names.filter((n) => !primary || n !== primary.name);
    fill($('switchover-to'), others.map((n) => [n, n]));
    fill($('failover-to'), [['', 'best standby']].concat(others.map((n) => [n, n])));
  }

  // ---- lag chart ------------------------------------------------------------

  const lagWindowMs = 10 * 60 * 1000;
  let lagSamples = []; // {t, bytes: {node: n}}
  const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
  const colors = {};
  const colorOf = (node) => {
    if (!colors[node]) colors[node] = palette[Object.keys(colors).length % palette.length];
    return colors[node];
  };

  async function loadLag() {
    try {
      const list = await getJSON('/lag');
      lagSamples = (list || []).map((x) => ({ t: Date.parse(x.time), bytes: x.bytes || {} }));
      renderLag();
    } catch (e) { showError($('lag-chart'), e); }
  }

  function addLagSample(s) {
    const t = Date.parse(s.observed_at);
    if (lagSamples.length && t <= lagSamples[lagSamples.length - 1].t) return;
    const bytes = {};
    for (const n of s.nodes || []) {
      if (n.role === 'standby' && n.lag_bytes !== null && n.lag_bytes !== undefined) bytes[n.name] = n.lag_bytes;
    }
    lagSamples.push({ t, bytes });
    const cut = t - lagWindowMs;
    while (lagSamples.length && lagSamples[0].t < cut) lagSamples.shift();
    renderLag();
  }

  function renderLag() {
    const el = $('lag-chart');
    const nodes = [...new Set(lagSamples.flatMap((x) => Object.keys(x.bytes)))].sort();
    if (lagSamples.length < 2 || nodes.length === 0) {
      el.replaceChildren(h('p', { class: 'empty' }, 'no standby lag observed yet'));
      $('lag-legend').replaceChildren();
      return;
    }
    const W = Math.max(360, el.clientWidth || 720), H = 220, L = 64, R = 12, T = 12, B = 26;
    const t1 = lagSamples[lagSamples.length - 1].t;
    const t0 = Math.min(lagSamples[0].t, t1 - 60 * 1000);
    let maxY = 0;
    for (const x of lagSamples) for (const v of Object.values(x.bytes)) maxY = Math.max(maxY, v);
    maxY = niceMax(Math.max(maxY, 1024));
    const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const Y = (v) => T + (1 - v / maxY) * (H - T - B);
    const g = [];
    for (const f of [0, 0.5, 1]) {
      const v = maxY * f;
      g.push(svg('line', { class: 'axis', x1: L, x2: W - R, y1: Y(v), y2: Y(v) }));
      g.push(svg('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, fmtBytes(v)));
    }
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      g.push(svg('text', { x: X(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, fmtClock(t)));
    }
    for (const node of nodes) {
      let d = '';
      let pen = false;
      for (const x of lagSamples) {
        const v = x.bytes[node];
        if (v === undefined) { pen = false; continue; }
        d += (pen ? 'L' : 'M') + X(x.t).toFixed(1) + ' ' + Y(v).toFixed(1) + ' ';
        pen = true;
      }
      if (d) g.push(svg('path', { d, fill: 'none', stroke: colorOf(node), 'stroke-width': 2, 'data-node': node }, svg('title', {}, node)));
    }
    const last = lagSamples[lagSamples.length - 1].bytes;
    const summary = nodes.map((n) => n + ' ' + (last[n] === undefined ? 'no sample' : fmtBytes(last[n]))).join(', ');
    el.setAttribute('aria-label', 'Replication lag over the last ' + fmtDuration(t1 - t0) + '; now: ' + summary);
    el.replaceChildren(svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H }, g));
    $('lag-legend').replaceChildren(...nodes.map((n) => h('li', {},
      h('span', { class: 'swatch', style: 'background:' + colorOf(n) }), n + ': ' + (last[n] === undefined ? '–' : fmtBytes(last[n])))));
  }

  function niceMax(v) {
    const p = Math.pow(2, Math.ceil(Math.log2(v)));
    return p * 0.75 >= v ? p * 0.75 : p;
  }

  // ---- plans ----------------------------------------------------------------

  const symbols = { create: '+', update: '~', delete: '-', replace: '-/+' };

  // renderPlan draws a plan in the `plan -json` format: its diagnostics,
  // each action with its reason and changed attributes, a mark on every
  // action that discards data (data_loss), and, for the watcher's view
  // (/plan?view=watch), on every action its policy holds for pgha apply.
  function renderPlan(p) {
    const held = {};
    for (const x of p.held || []) held[x.id] = x.reason;
    const out = [];
    for (const d of p.diagnostics || []) {
      out.push(h('div', { class: 'diag', dataset: { severity: d.severity } },
        h('strong', {}, (d.severity === 'critical' ? 'Critical: ' : 'Warning: ') + d.summary),
        d.detail ? h('pre', {}, d.detail) : null));
    }
    const actions = p.actions || [];
    const s = p.summary || {};
    const loss = actions.filter((a) => a.data_loss).length;
    out.push(h('p', { class: 'plan-summary' }, actions.length === 0
      ? 'No changes.'
      : `Plan (${p.operation}): ${s.add || 0} to add, ${s.change || 0} to change, ${s.destroy || 0} to destroy.`,
    loss ? h('span', { class: 'loss' }, loss === 1 ? '1 action discards data' : loss + ' actions discard data') : null));
    if (actions.length) {
      out.push(h('ol', { class: 'actions-list' }, actions.map((a) => h('li', {
        class: 'action', dataset: { actionId: a.id, kind: a.kind, dataLoss: String(!!a.data_loss), held: String(held[a.id] !== undefined) },
      },
      h('div', {}, h('span', { class: 'sym', 'aria-label': a.change }, symbols[a.change] || '?'), h('code', {}, a.id),
        a.data_loss ? h('span', { class: 'loss', title: 'this action discards data' }, '⚠ discards data') : null,
        held[a.id] !== undefined ? h('span', { class: 'held', title: held[a.id] }, 'held by policy') : null),
      held[a.id] !== undefined ? h('div', { class: 'hint held-reason' }, 'held for pgha apply: ' + held[a.id]) : null,
      h('div', { class: 'reason' }, a.reason),
      attrsOf(a),
      a.depends_on && a.depends_on.length ? h('div', { class: 'hint' }, 'after ' + a.depends_on.join(', ')) : null))));
    }
    return out;
  }

  function attrsOf(a) {
    const keys = [...new Set(Object.keys(a.before || {}).concat(Object.keys(a.after || {})))].sort();
    const rows = [];
    for (const k of keys) {
      const b = (a.before || {})[k];
      const af = (a.after || {})[k];
      if (b === af) continue;
      let v;
      if (b !== undefined && af !== undefined) v = b + ' → ' + af;
      else if (af !== undefined) v = '+ ' + af;
      else v = '- ' + b;
      rows.push(h('dt', {}, k), h('dd', { class: 'mono' }, v));
    }
    return rows.length ? h('dl', { class: 'details attrs' }, rows) : null;
  }

  const refreshPlan = throttle(async () => {
    const el = $('plan');
    try {
      const p = await getJSON('/plan?view=watch');
      el.replaceChildren(...renderPlan(p));
      el.dataset.state = 'loaded';
      el.dataset.actions = String((p.actions || []).length);
    } catch (e) { showError(el, e); }
  }, 3000);

  // ---- history ----------------------------------------------------------------

  const refreshHistory = throttle(async () => {
    const el = $('history');
    try {
      const list = await getJSON('/history');
      if (!list || list.length === 0) {
        el.replaceChildren(h('p', { class: 'empty' }, 'the catalog holds no history yet'));
        return;
      }
      const rows = list.map((e) => h('tr', { dataset: { kind: e.kind, generation: e.generation || '' } },
        h('td', {}, timeEl(e.time)),
        h('td', {}, h('span', { class: 'history-kind' }, e.kind)),
        h('td', { class: 'num' }, e.generation || ''),
        h('td', {},
          h('div', { class: 'reason' }, e.message),
          detailsOf(e.details))));
      el.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
        h('caption', { class: 'sr-only' }, 'Catalog history, newest first'),
        h('thead', {}, h('tr', {}, ['Time', 'Event', 'Generation', 'What and why'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows))));
      el.dataset.state = 'loaded';
    } catch (e) { showError(el, e); }
  }, 2000);

  function detailsOf(d) {
    const keys = Object.keys(d || {}).sort();
    if (!keys.length) return null;
    return h('dl', { class: 'details' }, keys.flatMap((k) => [h('dt', {}, k), h('dd', {}, d[k])]));
  }

  // ---- backups ----------------------------------------------------------------

  // verifyOf is a backup record's last verification, from the catalog
  // (verify = "passed" | "failed: <reason>", verify_mode = read |
  // restore, verified_at), and any other verify field a newer record has.
  function verifyOf(b) {
    if (!b.verify) {
      return { state: 'none', text: 'not verified', extra: otherVerify(b) };
    }
    const passed = b.verify === 'passed';
    let text = b.verify + (b.verify_mode ? ' (' + b.verify_mode + ')' : '');
    if (b.verified_at) text += ' · ' + fmtTime(b.verified_at);
    return { state: passed ? 'passed' : 'failed', text, extra: otherVerify(b) };
  }

  function otherVerify(b) {
    const known = new Set(['verify', 'verify_mode', 'verified_at']);
    return Object.keys(b).filter((k) => /verif/i.test(k) && !known.has(k)).sort().map((k) => [k, b[k]]);
  }

  function fmtRatio(r) {
    if (r === null) return '–';
    const pct = r * 100;
    return (pct >= 10 ? pct.toFixed(0) : pct >= 0.1 ? pct.toFixed(1) : pct.toPrecision(2)) + ' %';
  }

  function fmtValue(v) {
    if (v === true) return 'yes';
    if (v === false) return 'no';
    if (v && typeof v === 'object') return JSON.stringify(v);
    if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtTime(v);
    return String(v);
  }

  let lastBackups = null;

  const refreshBackups = throttle(async () => {
    const el = $('backups');
    try {
      const body = await getJSON('/backups');
      const list = (body && body.backups) || [];
      if (list.length === 0) {
        el.replaceChildren(h('p', { class: 'empty' }, 'no backups (source: ' + ((body && body.source) || '?') + ')'));
        $('backup-timeline').replaceChildren();
        return;
      }
      lastBackups = list;
      renderBackupTimeline(list);
      const rows = list.map((b) => {
        const ratio = b.database_bytes > 0 ? b.stored_bytes / b.database_bytes : null;
        const dur = Date.parse(b.finished) - Date.parse(b.started);
        const verify = verifyOf(b);
        return h('tr', { dataset: { backup: b.id, status: b.status, chain: b.root || b.id } },
          h('td', { class: 'mono' }, b.id),
          h('td', {}, b.type + (b.method ? ' · ' + b.method : '')),
          h('td', { class: 'mono' }, b.root && b.root !== b.id ? b.root : '–'),
          h('td', {}, b.node),
          h('td', {}, timeEl(b.started)),
          h('td', { class: 'num' }, dur > 0 ? fmtDuration(dur) : '–'),
          h('td', { class: 'num' }, fmtBytes(b.database_bytes)),
          h('td', { class: 'num' }, fmtBytes(b.stored_bytes)),
          h('td', { class: 'num', dataset: { ratio: ratio === null ? '' : ratio.toFixed(6) } }, fmtRatio(ratio)),
          h('td', { class: b.status === 'complete' ? 'ok' : b.status === 'failed' ? 'bad' : '' }, b.status),
          h('td', { class: 'verify ' + (verify.state === 'passed' ? 'ok' : verify.state === 'failed' ? 'bad' : 'hint'), dataset: { verify: verify.state } },
            verify.text,
            verify.extra.length ? h('dl', { class: 'details' }, verify.extra.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, fmtValue(v))])) : null));
      });
      el.replaceChildren(h('p', { class: 'hint' }, list.length + ' backups, newest first (from the ' + body.source + '); ratio is stored bytes over database bytes.'),
        h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
          h('caption', { class: 'sr-only' }, 'Backups'),
          h('thead', {}, h('tr', {}, ['ID', 'Type', 'Chain (full)', 'Node', 'Started', 'Took', 'Database', 'Stored', 'Ratio', 'Status', 'Last verify']
            .map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, rows))));
      el.dataset.state = 'loaded';
    } catch (e) { showError(el, e); }
  }, 5000);

  // renderBackupTimeline draws one row per chain (a full and what builds
  // on it), each backup a bar from its start to its end, at least a few
  // pixels wide, labelled with its type and stored size where there is
  // room (the tooltip and the table below always say everything). A
  // failed verify outlines the bar in red.
  function renderBackupTimeline(list) {
    const chains = new Map();
    for (const b of list.slice().sort((a, b) => Date.parse(a.started) - Date.parse(b.started))) {
      const root = b.root || b.id;
      if (!chains.has(root)) chains.set(root, []);
      chains.get(root).push(b);
    }
    const times = list.flatMap((b) => [Date.parse(b.started), Date.parse(b.finished)]).filter((t) => t > 0);
    let t0 = Math.min(...times);
    let t1 = Math.max(...times);
    const pad = Math.max(30 * 1000, (t1 - t0) * 0.05);
    t0 -= pad; t1 += pad;
    const el = $('backup-timeline');
    const W = Math.max(480, el.clientWidth || 900), L = 230, R = 16, row = 30, T = 8, B = 24;
    const H = T + B + row * chains.size;
    const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const g = [];
    let i = 0;
    for (const [root, bs] of chains) {
      const y = T + i * row;
      g.push(svg('text', { x: 4, y: y + row / 2 + 4 }, 'chain ' + root));
      g.push(svg('line', { class: 'axis', x1: L, x2: W - R, y1: y + row / 2, y2: y + row / 2 }));
      bs.forEach((b, j) => {
        const s = Date.parse(b.started);
        const f = Date.parse(b.finished) > 0 ? Date.parse(b.finished) : s;
        const x = X(s);
        const w = Math.max(6, X(f) - x);
        const fill = b.status === 'complete' ? (b.type === 'full' ? '#1a7f37' : '#2f81f7') : b.status === 'failed' ? '#cf222e' : '#9a6700';
        const ratio = b.database_bytes > 0 ? ' · ratio ' + fmtRatio(b.stored_bytes / b.database_bytes) : '';
        const v = verifyOf(b);
        const failed = v.state === 'failed';
        g.push(svg('rect', { x, y: y + 6, width: w, height: row - 12, rx: 3, fill, stroke: failed ? '#cf222e' : 'none', 'stroke-width': failed ? 3 : 0, 'data-backup': b.id },
          svg('title', {}, `${b.id} (${b.type}, ${b.status}) ${fmtTime(s)}: ${fmtBytes(b.stored_bytes)} stored of ${fmtBytes(b.database_bytes)}${ratio} · verify: ${v.text}`)));
        const label = (b.type === 'full' ? 'F ' : b.type === 'incremental' ? 'I ' : b.type === 'differential' ? 'D ' : '') + fmtBytes(b.stored_bytes) + (failed ? ' ✗' : '');
        const next = bs[j + 1] ? X(Date.parse(bs[j + 1].started)) : W - R;
        if (next - (x + w) > label.length * 6.5 + 6) g.push(svg('text', { x: x + w + 3, y: y + row / 2 + 4 }, label));
      });
      i++;
    }
    const day = t1 - t0 > 36 * 3600 * 1000;
    const ticks = Math.max(2, Math.min(6, Math.floor((W - L - R) / 150)));
    for (let k = 0; k <= ticks; k++) {
      const t = t0 + ((t1 - t0) * k) / ticks;
      g.push(svg('text', { x: X(t), y: H - 6, 'text-anchor': k === 0 ? 'start' : k === ticks ? 'end' : 'middle' },
        day ? new Date(t).toLocaleDateString() : fmtClock(t)));
    }
    el.setAttribute('role', 'img');
    el.setAttribute('aria-label', `Backup timeline: ${chains.size} chains, ${list.length} backups`);
    el.replaceChildren(svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H }, g));
  }

  // ---- events -----------------------------------------------------------------

  const maxEvents = 200;

  function eventItem(ev) {
    const attrs = Object.entries(ev.attrs || {}).filter(([, v]) => v !== '' && v !== null && v !== undefined)
      .map(([k, v]) => k + '=' + (typeof v === 'object' ? JSON.stringify(v) : v)).join(' ');
    return h('li', { dataset: { type: ev.type, level: ev.level || 'info' } },
      timeEl(ev.time, fmtClock(ev.time)),
      h('span', { class: 'msg' }, (ev.type === 'log' ? '' : ev.type + ': ') + (ev.message || '')),
      attrs ? h('span', { class: 'attrs' }, ' ' + attrs) : null);
  }

  function renderEvents(list) {
    $('events').replaceChildren(...list.slice(-maxEvents).reverse().map(eventItem));
  }

  function addEvent(ev) {
    const ol = $('events');
    ol.prepend(eventItem(ev));
    while (ol.children.length > maxEvents) ol.lastChild.remove();
  }

  function connect() {
    if (!window.EventSource) return;
    const es = new EventSource(api('/events'));
    const conn = $('conn');
    es.onopen = () => {
      conn.dataset.state = 'live';
      setText(conn, 'live');
      // Whatever happened while the stream was away.
      refreshStatus(); refreshPlan(); refreshHistory(); refreshBackups();
    };
    es.onerror = () => {
      conn.dataset.state = 'reconnecting';
      setText(conn, 'reconnecting…');
    };
    const parse = (m) => { try { return JSON.parse(m.data); } catch (e) { return null; } };
    es.addEventListener('status', () => { refreshStatus(); refreshSlots(); });
    for (const type of ['log', 'operation', 'apply']) {
      es.addEventListener(type, (m) => {
        const ev = parse(m);
        if (!ev) return;
        addEvent(ev);
        if (type !== 'apply') { refreshHistory(); refreshPlan(); refreshBackups(); }
      });
    }
  }

  // ---- operations ---------------------------------------------------------------

  // The token: in memory, and in sessionStorage only when asked to.
  let token = '';
  try { token = sessionStorage.getItem('pgha.token') || ''; } catch (e) { token = ''; }
  let pending = null; // {op, body}

  const opTitles = {
    switchover: 'Switchover',
    failover: 'Failover',
    failback: 'Failback',
  };

  async function openOp(op) {
    timings.click = performance.now();
    timings.op = op;
    delete timings.submit; delete timings.answered;
    const body = {};
    const q = new URLSearchParams({ operation: op });
    if (op === 'switchover') {
      body.to = $('switchover-to').value;
      q.set('to', body.to);
    } else if (op === 'failover') {
      if ($('failover-to').value) { body.to = $('failover-to').value; q.set('to', body.to); }
      if ($('failover-force').checked) { body.force = true; q.set('force', 'true'); }
    }
    pending = { op, body };
    const dlg = $('op-dialog');
    $('op-title').textContent = opTitles[op] + (body.to ? ' to ' + body.to : '') + (body.force ? ' (force)' : '');
    $('op-confirm').textContent = 'Run ' + op;
    $('op-confirm').disabled = true;
    $('op-error').hidden = true;
    $('op-loss').hidden = true;
    $('op-loss-ok').checked = false;
    $('op-token').value = token;
    try { $('op-remember').checked = !!sessionStorage.getItem('pgha.token'); } catch (e) { $('op-remember').checked = false; }
    const preview = $('op-preview');
    preview.dataset.state = 'loading';
    preview.replaceChildren(h('p', {}, 'loading the preview…'));
    if (!dlg.open) dlg.showModal();
    try {
      const p = await getJSON('/plan?' + q.toString());
      if (!pending || pending.op !== op) return;
      preview.replaceChildren(h('p', { class: 'hint' }, 'This is what ' + op + ' will do:'), ...renderPlan(p));
      preview.dataset.state = 'loaded';
      preview.dataset.actions = String((p.actions || []).length);
      // An action that discards data needs its own tick, beside the token.
      const loss = (p.actions || []).filter((a) => a.data_loss).length;
      if (loss) {
        $('op-loss-text').textContent = 'I accept that ' + (loss === 1 ? '1 action' : loss + ' actions') + ' of this ' + op + ' discard data';
        $('op-loss').hidden = false;
      }
      $('op-confirm').disabled = false;
      timings.previewed = performance.now();
      $('op-token').focus();
    } catch (e) {
      preview.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'No preview: ' + e.message));
      preview.dataset.state = 'error';
    }
  }

  async function submitOp(ev) {
    ev.preventDefault();
    if (!pending) return;
    const tok = $('op-token').value.trim();
    if (!$('op-loss').hidden && !$('op-loss-ok').checked) {
      $('op-error').textContent = 'This plan discards data: tick the box to accept it.';
      $('op-error').hidden = false;
      return;
    }
    if (!tok) {
      $('op-error').textContent = 'The API token is needed for this.';
      $('op-error').hidden = false;
      return;
    }
    token = tok;
    try {
      if ($('op-remember').checked) sessionStorage.setItem('pgha.token', tok);
      else sessionStorage.removeItem('pgha.token');
    } catch (e) { /* storage disabled: memory only */ }
    const { op, body } = pending;
    $('op-confirm').disabled = true;
    $('op-confirm').textContent = 'Running ' + op + '…';
    timings.submit = performance.now();
    let r;
    let res = null;
    try {
      r = await fetch(api('/' + op), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + tok },
        body: JSON.stringify(body),
        cache: 'no-store',
      });
      try { res = await r.json(); } catch (e) { res = null; }
    } catch (e) {
      $('op-error').textContent = op + ' could not be sent: ' + e.message;
      $('op-error').hidden = false;
      $('op-confirm').disabled = false;
      $('op-confirm').textContent = 'Run ' + op;
      return;
    }
    timings.answered = performance.now();
    timings.answers.push({ op, code: r.status, at: timings.answered });
    refreshStatus();
    if (r.status === 409) {
      // The cluster lock was held (the watcher acting, someone's apply),
      // or no plan could be made: nothing ran. The dialog stays, to run
      // it again.
      $('op-error').textContent = op + ' did not run (HTTP 409): ' + ((res && res.error) || 'conflict') + ' Nothing was changed; run it again in a moment.';
      $('op-error').hidden = false;
      $('op-confirm').disabled = false;
      $('op-confirm').textContent = 'Run ' + op + ' again';
      return;
    }
    if (r.status === 401) {
      token = '';
      try { sessionStorage.removeItem('pgha.token'); } catch (e) { /* ignore */ }
      $('op-token').value = '';
      $('op-error').textContent = 'The API refused the token (401); nothing was changed.';
      $('op-error').hidden = false;
      $('op-confirm').disabled = false;
      $('op-confirm').textContent = 'Run ' + op;
      $('op-token').focus();
      return;
    }
    pending = null;
    $('op-dialog').close();
    showOutcome(op, r.status, res);
    refreshHistory(); refreshPlan(); refreshBackups();
  }

  function showOutcome(op, code, res) {
    const el = $('op-outcome');
    el.hidden = false;
    const outcome = (res && res.outcome) || (code >= 400 ? 'errored' : 'complete');
    el.dataset.outcome = outcome;
    el.dataset.op = op;
    const parts = [h('p', {}, h('strong', {}, op + ': ' + outcome), ' (HTTP ' + code + ')')];
    if (res && res.error) parts.push(h('p', { class: 'error' }, res.error));
    if (res && res.plan) {
      parts.push(h('details', {}, h('summary', {}, 'the plan that ran'), ...renderPlan(res.plan)));
    }
    el.replaceChildren(...parts);
  }

  function init() {
    for (const b of document.querySelectorAll('button[data-op]')) {
      b.addEventListener('click', () => openOp(b.dataset.op));
    }
    $('op-form').addEventListener('submit', submitOp);
    $('op-cancel').addEventListener('click', () => { pending = null; $('op-dialog').close(); });
    $('op-dialog').addEventListener('close', () => { pending = null; });
    $('plan-refresh').addEventListener('click', () => refreshPlan());
    let resized = null;
    window.addEventListener('resize', () => {
      clearTimeout(resized);
      resized = setTimeout(() => { renderLag(); if (lastBackups) renderBackupTimeline(lastBackups); }, 150);
    });
    refreshStatus();
    refreshSlots();
    loadLag();
    refreshPlan();
    refreshHistory();
    refreshBackups();
    connect();
    // A stream that is quiet (a proxy buffering it) still shows the
    // observation's age: read the status every few seconds regardless.
    setInterval(refreshStatus, 5000);
  }

  init();
})();
