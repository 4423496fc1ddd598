// rbee console: reads the queen's API with the key kept in this tab.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY = 'rbee-api-key';
const views = ['cluster', 'models', 'activity', 'playground'];
const state = { snap: null, history: [], chat: [], logs: null, pg: null, events: null, authed: false };

// ---- the API ----

class APIError extends Error {
  constructor(status, env) {
    const e = (env && env.error) || {};
    super(e.message || ('HTTP ' + status));
    this.status = status; this.code = e.code || ''; this.hint = (e.details && e.details.hint) || '';
  }
}

function headers(extra) {
  const h = Object.assign({ 'Accept': 'application/json' }, extra || {});
  const key = sessionStorage.getItem(KEY);
  if (key) h['Authorization'] = 'Bearer ' + key;
  return h;
}

async function call(path, opts) {
  opts = opts || {};
  const init = { method: opts.method || 'GET', headers: headers(opts.body ? { 'Content-Type': 'application/json' } : null), signal: opts.signal };
  if (opts.body) init.body = JSON.stringify(opts.body);
  const resp = await fetch(path, init);
  if (!resp.ok) {
    let env = null;
    try { env = await resp.json(); } catch (_) { /* not JSON */ }
    const err = new APIError(resp.status, env);
    if (resp.status === 401) needKey(err);
    throw err;
  }
  return resp;
}

async function json(path, opts) { return (await call(path, opts)).json(); }

// sse reads a text/event-stream answer, calling onEvent(name, data) per
// event until the stream ends or the signal aborts it.
async function sse(resp, onEvent) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i); buf = buf.slice(i + 2);
      let name = 'message'; const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}

// ---- login ----

function needKey(err) {
  state.authed = false;
  for (const ctl of [state.events, state.logs, state.pg]) if (ctl) ctl.abort();
  state.snap = null; state.chat = []; state.history = [];
  clearData();
  for (const v of views) $('view-' + v).hidden = true;
  $('login').hidden = false;
  document.querySelector('nav').hidden = true;
  $('login-err').textContent = sessionStorage.getItem(KEY) && err ? 'That key was refused: ' + err.message : '';
  $('logout').hidden = true;
  setConn('signed out', 'warn');
  $('login-key').focus();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $('login-key').value.trim());
  $('login-key').value = '';
  start();
});

$('logout').addEventListener('click', () => { sessionStorage.removeItem(KEY); needKey(null); });

function clearData() {
  for (const k of Object.keys(rendered)) delete rendered[k];
  for (const id of ['nodes', 'downloads', 'pg-history', 'pg-models']) $(id).replaceChildren();
  for (const id of ['pull-node', 'logs-node']) $(id).replaceChildren();
  $('pg-node').replaceChildren(el('option', { value: 'auto', text: 'auto' }));
  for (const id of ['workers', 'catalog', 'tasks']) $(id).tBodies[0].replaceChildren();
  $('logs').textContent = ''; $('pg-output').textContent = ''; $('pg-stats').textContent = '';
}

// ---- views ----

function show() {
  if (!state.authed) return;
  let v = location.hash.slice(1);
  if (!views.includes(v)) v = 'cluster';
  for (const name of views) {
    $('view-' + name).hidden = name !== v;
    const a = $('nav-' + name);
    if (name === v) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (v === 'models') loadCatalog();
  if (v === 'activity') drawChart();
  if (v === 'playground') loadModels();
}
window.addEventListener('hashchange', show);

function setConn(text, cls) { const c = $('conn'); c.textContent = text; c.className = 'badge ' + (cls || ''); }

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

function row(cells, attrs) {
  return el('tr', attrs, ...cells.map((c) => c instanceof Node ? el('td', null, c) : el('td', { text: String(c) })));
}

const mb = (n) => n >= 1024 ? (n / 1024).toFixed(1) + ' GiB' : n + ' MiB';
const bytes = (n) => n >= 1e9 ? (n / 1e9).toFixed(2) + ' GB' : n >= 1e6 ? (n / 1e6).toFixed(1) + ' MB' : n >= 1e3 ? (n / 1e3).toFixed(1) + ' kB' : n + ' B';
function ago(unix) {
  if (!unix) return 'never';
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  return s < 60 ? s + ' s ago' : s < 3600 ? Math.round(s / 60) + ' min ago' : s < 86400 ? Math.round(s / 3600) + ' h ago' : new Date(unix * 1000).toLocaleString();
}
const stateClass = { idle: 'ok', busy: 'warn', loading: 'warn', failed: 'bad', stopping: 'muted', running: 'ok', queued: 'warn', preparing: 'muted' };

// ---- the snapshot stream ----

async function follow() {
  let delay = 1000;
  for (;;) {
    const ctl = new AbortController();
    state.events = ctl;
    try {
      const resp = await call('/v2/events', { signal: ctl.signal });
      if (!state.authed) {
        state.authed = true;
        $('login').hidden = true; document.querySelector('nav').hidden = false;
        $('logout').hidden = !sessionStorage.getItem(KEY);
        show();
      }
      setConn('live', 'ok');
      delay = 1000;
      await sse(resp, (name, data) => { if (name === 'snapshot') render(JSON.parse(data)); });
    } catch (err) {
      if (err instanceof APIError && err.status === 401) return;
      if (ctl.signal.aborted) return;
    }
    setConn('reconnecting…', 'bad');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

function render(s) {
  state.snap = s;
  renderNodes(s); renderWorkers(s); renderTasks(s); renderDownloads(s); nodeOptions(s);
}

// changed reports whether v differs from what was rendered under key.
const rendered = {};
function changed(key, v) {
  const j = JSON.stringify(v);
  if (rendered[key] === j) return false;
  rendered[key] = j;
  return true;
}

function renderNodes(s) {
  if (!changed('nodes', [s.nodes, s.workers.map((w) => w.node)])) return;
  $('nodes').replaceChildren(...s.nodes.map((n) => {
    const status = n.reachable ? ['reachable', 'ok'] : n.error ? ['unreachable', 'bad'] : ['not running', 'muted'];
    const dl = el('dl');
    const add = (k, v) => { dl.append(el('dt', { text: k }), el('dd', { text: v })); };
    add('Where', n.local ? 'this machine' : (n.ssh_host || '?') + ' (ssh)');
    if (!n.local) add('Last contact', ago(n.last_connected_unix));
    if (n.info) {
      add('Hive', 'v' + n.info.version);
      add('RAM free', mb(n.info.ram_available_mb));
      add('CPUs', String(n.info.cpus));
      add('Devices', ['cpu'].concat((n.info.devices || []).map((d) => d.backend + ':' + d.index + ' (' + mb(d.vram_mb) + ' free)')).join(', '));
    }
    const workers = s.workers.filter((w) => w.node === n.name).length;
    add('Workers', String(workers));
    if (n.error) add('Error', n.error.message);
    return el('article', { class: 'card', 'data-node': n.name },
      el('h3', null, el('span', { text: n.name }), el('span', { class: 'badge ' + status[1], text: status[0] })), dl);
  }));
}

// syncRows updates a table body in place: one row per item, found by its
// key, so that rows (and the focus on their buttons) survive updates.
function syncRows(tbody, items, key, make, cells) {
  const old = new Map(Array.from(tbody.rows, (tr) => [tr.dataset.id, tr]));
  const rows = items.map((it) => {
    let tr = old.get(key(it));
    if (!tr) { tr = make(it); tr.dataset.id = key(it); }
    cells(it).forEach((v, i) => {
      const td = tr.cells[i];
      if (td.textContent !== String(v)) td.textContent = String(v);
    });
    return tr;
  });
  rows.forEach((tr, i) => { if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null); });
  while (tbody.rows.length > rows.length) tbody.deleteRow(rows.length);
}

function emptyRow(n, modelCol) {
  const tr = el('tr');
  for (let i = 0; i < n; i++) tr.append(el('td', i === modelCol ? { class: 'model' } : null));
  return tr;
}

function renderWorkers(s) {
  syncRows($('workers').tBodies[0], s.workers, (w) => w.node + '/' + w.id, (w) => {
    const tr = emptyRow(9, 2);
    const stop = el('button', { type: 'button', text: 'Stop', 'aria-label': 'Stop worker ' + w.id });
    stop.addEventListener('click', () => stopWorker(w.id, stop));
    tr.cells[8].append(stop);
    return tr;
  }, (w) => [w.id, w.node, w.model_ref, w.backend + ':' + w.device, w.state, w.slots_busy + '/' + w.slots_total,
    w.queue_depth, w.tokens_per_second.toFixed(1)]);
  colourStates($('workers'));
  $('workers-empty').hidden = s.workers.length > 0;
}

// colourStates colours the state column (the fifth) of a table.
function colourStates(table) {
  for (const tr of table.tBodies[0].rows) tr.cells[4].className = stateClass[tr.cells[4].textContent.split(' ')[0]] || '';
}

async function stopWorker(id, btn) {
  btn.disabled = true;
  try { await json('/v2/workers/shutdown', { method: 'POST', body: { worker_id: id } }); } catch (err) { btn.disabled = false; btn.title = err.message; }
}

function renderTasks(s) {
  const now = Date.now();
  syncRows($('tasks').tBodies[0], s.tasks, (t) => t.id, () => emptyRow(8, 2), (t) => [t.id, t.node, t.model, t.worker_id || '—',
    t.state + (t.position ? ' #' + t.position : ''), t.tokens, t.first_token_ms ? t.first_token_ms + ' ms' : '—',
    Math.round((now - Date.parse(t.started)) / 1000) + ' s']);
  colourStates($('tasks'));
  $('tasks-empty').hidden = s.tasks.length > 0;
}

function renderDownloads(s) {
  if (!changed('downloads', s.downloads)) return;
  $('downloads').replaceChildren(...s.downloads.map((d) => {
    const p = el('progress', { max: String(d.bytes_total || 1), value: String(d.bytes_downloaded), 'aria-label': 'Download of ' + d.model_ref });
    const pct = d.bytes_total ? Math.floor(100 * d.bytes_downloaded / d.bytes_total) + '% of ' + bytes(d.bytes_total) : bytes(d.bytes_downloaded);
    return el('div', { class: 'dl' }, el('div', { text: d.model_ref + ' → ' + d.node + ': ' + pct + (d.speed_mbps ? ' at ' + d.speed_mbps.toFixed(1) + ' MB/s' : '') }), p);
  }));
}

// nodeOptions keeps the node pickers in step with the cluster.
function nodeOptions(s) {
  const names = s.nodes.map((n) => n.name);
  for (const [id, first] of [['pull-node', null], ['logs-node', null], ['pg-node', 'auto']]) {
    const sel = $(id);
    const want = (first ? [first] : []).concat(names);
    const have = Array.from(sel.options, (o) => o.value);
    if (want.join('\n') === have.join('\n')) continue;
    const cur = sel.value;
    sel.replaceChildren(...want.map((n) => el('option', { value: n, text: n })));
    if (want.includes(cur)) sel.value = cur;
  }
}

// ---- chart: cluster tokens/s and queue depth, one sample a second ----

setInterval(() => {
  if (!state.snap) return;
  state.history.push({ tps: state.snap.tokens_per_second, qd: state.snap.queue_depth });
  if (state.history.length > 300) state.history.shift();
  $('tps-now').textContent = state.snap.tokens_per_second.toFixed(1);
  $('qd-now').textContent = String(state.snap.queue_depth);
  if (!$('view-activity').hidden) { drawChart(); renderTasks(state.snap); }
}, 1000);

function drawChart() {
  const c = $('chart');
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth || 640, h = c.clientHeight || 160;
  if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
  const g = c.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const hist = state.history;
  const muted = css.getPropertyValue('--muted').trim();
  g.strokeStyle = muted; g.lineWidth = 1; g.beginPath(); g.moveTo(0, h - 4.5); g.lineTo(w, h - 4.5); g.stroke();
  g.fillStyle = muted; g.font = '11px system-ui, sans-serif';
  // The window grows with the history from one minute to five.
  const span = Math.min(300, Math.max(60, hist.length));
  g.fillText(span < 120 ? span + ' s ago' : Math.round(span / 60) + ' min ago', 4, h - 8);
  g.fillText('now', w - 26, h - 8);
  const line = (key, color, label, y0) => {
    const top = Math.max(1, ...hist.map((p) => p[key]));
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    hist.forEach((p, i) => {
      const x = w - (hist.length - 1 - i) * (w / (span - 1)), y = h - 4 - (p[key] / top) * (h - 24);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    g.fillStyle = color; g.fillText(label + ' max ' + (Number.isInteger(top) ? top : top.toFixed(1)), 4, y0);
  };
  line('tps', css.getPropertyValue('--accent').trim(), 'tokens/s', 14);
  line('qd', css.getPropertyValue('--focus').trim(), 'queue', 28);
}

// ---- models ----

async function loadCatalog() {
  try {
    const data = await json('/v2/models');
    const rows = [];
    const down = [];
    for (const n of data.nodes) {
      if (n.error) down.push(n.node + ': ' + n.error.message);
      for (const m of n.models) {
        const meta = m.meta || {};
        const tr = row([n.node, m.reference, meta.quantization || '?', bytes(m.size_bytes), meta.architecture || '?']);
        tr.cells[1].className = 'model';
        rows.push(tr);
      }
    }
    $('catalog').tBodies[0].replaceChildren(...rows);
    $('catalog-note').textContent = (rows.length ? '' : 'No models in the catalogs of running hives. ') + down.join('; ');
  } catch (err) {
    $('catalog-note').textContent = 'Could not list the catalogs: ' + err.message;
  }
}

$('pull-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const btn = ev.submitter || ev.target.querySelector('button');
  const node = $('pull-node').value || 'local', ref = $('pull-ref').value.trim();
  btn.disabled = true;
  $('pull-status').textContent = 'Pulling ' + ref + ' onto ' + node + '…';
  try {
    const resp = await call('/v2/models/download', { method: 'POST', body: { node, model_ref: ref } });
    let failed = null, complete = false;
    await sse(resp, (name, data) => {
      if (data === '[DONE]') return;
      const d = JSON.parse(data);
      if (name === 'error') failed = d;
      else if (name === 'progress' && d.stage === 'complete') complete = true;
      else if (name === 'narration') $('pull-status').textContent = d.human;
    });
    $('pull-status').textContent = failed ? 'Pull failed: ' + failed.message : complete ? ref + ' is on ' + node + '.' : 'The pull ended early.';
    loadCatalog();
  } catch (err) {
    $('pull-status').textContent = 'Pull failed: ' + err.message;
  } finally { btn.disabled = false; }
});

// ---- logs ----

$('logs-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (state.logs) state.logs.abort();
  const ctl = new AbortController();
  state.logs = ctl;
  const out = $('logs');
  out.textContent = '';
  $('logs-stop').disabled = false; $('logs-go').disabled = true;
  const lines = [];
  try {
    const resp = await call('/v2/logs?follow=true&lines=100&node=' + encodeURIComponent($('logs-node').value), { signal: ctl.signal });
    await sse(resp, (name, data) => {
      if (data === '[DONE]') return;
      const d = JSON.parse(data);
      lines.push(name === 'error' ? '! ' + d.message : '[' + d.source + '] ' + d.line);
      if (lines.length > 500) lines.splice(0, lines.length - 500);
      const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.textContent = lines.join('\n');
      if (atEnd) out.scrollTop = out.scrollHeight;
    });
  } catch (err) {
    if (!ctl.signal.aborted) lines.push('! ' + err.message);
    out.textContent = lines.join('\n');
  } finally {
    if (state.logs === ctl) { state.logs = null; $('logs-stop').disabled = true; $('logs-go').disabled = false; }
  }
});
$('logs-stop').addEventListener('click', () => { if (state.logs) state.logs.abort(); });

// ---- playground ----

async function loadModels() {
  try {
    const data = await json('/v1/models');
    $('pg-models').replaceChildren(...data.data.map((m) => el('option', { value: m.id })));
    if (!$('pg-model').value && data.data.length) $('pg-model').value = data.data[0].id;
  } catch (_) { /* shown when a prompt is sent */ }
}

function pgMode() { return document.querySelector('input[name="pg-mode"]:checked').value; }

function renderHistory() {
  $('pg-history').replaceChildren(...state.chat.map((m) => el('p', { class: 'msg' }, el('b', { text: m.role }), m.content)));
}

$('pg-clear').addEventListener('click', () => { state.chat = []; renderHistory(); $('pg-output').textContent = ''; $('pg-stats').textContent = ''; });
$('pg-stop-btn').addEventListener('click', () => { if (state.pg) state.pg.abort(); });

$('pg-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const chat = pgMode() === 'chat';
  const prompt = $('pg-prompt').value;
  const body = { model: $('pg-model').value.trim(), stream: true, stream_options: { include_usage: true } };
  // An empty field is left out: the queen's default applies.
  for (const [field, id] of [['temperature', 'pg-temp'], ['max_tokens', 'pg-max'], ['top_p', 'pg-topp'], ['seed', 'pg-seed']]) {
    if ($(id).value.trim() !== '') body[field] = Number($(id).value);
  }
  const stop = $('pg-stop').value.split('\n').filter((s) => s !== '');
  if (stop.length) body.stop = stop;
  // A schema constrains the answer to JSON valid against it; {} asks for
  // any JSON value. It is checked here only for being JSON: the queen says
  // which keywords it cannot enforce.
  const schema = $('pg-schema').value.trim();
  if (schema !== '') {
    let doc;
    try { doc = JSON.parse(schema); } catch (err) { $('pg-stats').textContent = 'The JSON schema is not JSON: ' + err.message; return; }
    body.response_format = JSON.stringify(doc) === '{}' ? { type: 'json_object' }
      : { type: 'json_schema', json_schema: { name: 'playground', schema: doc } };
  }
  if ($('pg-node').value !== 'auto') body.node = $('pg-node').value;
  if (chat) { body.messages = state.chat.concat([{ role: 'user', content: prompt }]); } else { body.prompt = prompt; }
  const out = $('pg-output'), stats = $('pg-stats');
  out.textContent = ''; stats.textContent = 'Waiting for the first token…';
  const ctl = new AbortController();
  state.pg = ctl;
  $('pg-send').disabled = true; $('pg-stop-btn').disabled = false;
  const t0 = performance.now();
  let first = 0, pieces = 0, usage = null, finish = '', failed = null, text = '';
  try {
    const resp = await call(chat ? '/v1/chat/completions' : '/v1/completions', { method: 'POST', body, signal: ctl.signal });
    const worker = resp.headers.get('X-Rbee-Worker') || '?', node = resp.headers.get('X-Rbee-Node') || '?';
    await sse(resp, (_, data) => {
      if (data === '[DONE]') return;
      const d = JSON.parse(data);
      if (d.error) { failed = d.error; return; }
      if (d.usage) usage = d.usage;
      const c = d.choices && d.choices[0];
      if (!c) return;
      const piece = chat ? (c.delta && c.delta.content) || '' : c.text || '';
      if (piece) {
        if (!first) first = performance.now();
        pieces++; text += piece; out.textContent = text; out.scrollTop = out.scrollHeight;
      }
      if (c.finish_reason) finish = c.finish_reason;
    });
    // A JSON answer is shown indented once complete (the model may have
    // spent many tokens on whitespace between the values).
    let formatted = false;
    if (body.response_format && !failed && finish === 'stop') {
      try { out.textContent = JSON.stringify(JSON.parse(text), null, 2); out.scrollTop = 0; formatted = true; } catch (_) { /* shown as it came */ }
    }
    const n = usage ? usage.completion_tokens : pieces;
    const secs = first ? (performance.now() - first) / 1000 : 0;
    const tps = n > 1 && secs > 0 ? ((n - 1) / secs).toFixed(1) : '—';
    stats.textContent = failed ? 'Failed: ' + failed.message : n + ' tokens, ' + tps + ' tokens/s, first token after ' +
      Math.round((first || performance.now()) - t0) + ' ms, served by worker ' + worker + ' on ' + node + (finish ? ' (' + finish + ')' : '') + (formatted ? ', JSON shown indented' : '');
    if (chat && !failed) { state.chat.push({ role: 'user', content: prompt }, { role: 'assistant', content: text }); renderHistory(); $('pg-prompt').value = ''; }
  } catch (err) {
    stats.textContent = ctl.signal.aborted ? 'Stopped after ' + pieces + ' tokens.' : 'Failed: ' + err.message + (err.hint ? ' (' + err.hint + ')' : '');
  } finally {
    state.pg = null; $('pg-send').disabled = false; $('pg-stop-btn').disabled = true;
  }
});

// ---- start ----

function start() {
  $('login').hidden = true;
  setConn('connecting…', '');
  follow();
  loadModels();
}
start();
