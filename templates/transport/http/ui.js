// The dashboard's script (ui.html): reads promises, tasks and schedules through the protocol
// (POST / envelopes, as any client) and a promise's callbacks and listeners through
// POST /ui/waiters, and shows them. No framework, no build step. Every text from the server is
// put into the page as text (append of a string, textContent), never parsed as HTML.
'use strict';
(() => {
  const VERSION = '2026-04-01';
  const PAGE = 50; // rows per page of a list
  const TREE_LIMIT = 1000; // promises the tree view reads at most
  const REFRESH_MS = 5000;
  const JWT = document.body.dataset.auth === 'jwt';
  const TOKEN_KEY = 'resonate-dashboard-token';
  const PROMISE_STATES = ['pending', 'resolved', 'rejected', 'rejected_canceled', 'rejected_timedout'];
  const TASK_STATES = ['pending', 'acquired', 'suspended', 'halted', 'fulfilled'];
  const REASONS = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Payload Too Large', 422: 'Unprocessable', 500: 'Internal Server Error', 503: 'Service Unavailable' };
  const $ = (id) => document.getElementById(id);
  let corr = 0;

  /** A refused or failed request: its status and what to tell the operator. */
  class Refused extends Error {
    constructor(status, data) {
      const text = typeof data === 'string' && data ? data : REASONS[status] || 'error';
      let hint = '';
      if (status === 401) hint = JWT ? ' — this server needs a valid token: paste a JWT into Token above' : '';
      if (status === 403) hint = ' — the token does not cover this (searches need an admin token or prefix "")';
      super(`${status} ${REASONS[status] || ''}: ${text}${hint}`.replace('  ', ' '));
      this.status = status;
    }
  }

  const token = () => (JWT ? sessionStorage.getItem(TOKEN_KEY) || '' : '');

  async function post(path, body, headers) {
    let res;
    try {
      res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body), cache: 'no-store' });
    } catch (e) {
      throw new Refused(0, `server unreachable (${e.message})`);
    }
    let json = null;
    try { json = await res.json(); } catch { /* not JSON: judged by the HTTP status */ }
    return { res, json };
  }

  /** One protocol request; answers {status, data} when its status is in `ok`, else throws. */
  async function call(kind, data, ok = [200]) {
    const head = { corrId: `ui-${++corr}`, version: VERSION };
    if (token()) head.auth = token();
    const { res, json } = await post('/', { kind, head, data });
    const status = json && json.head ? json.head.status : res.status;
    if (!ok.includes(status)) throw new Refused(status, json ? json.data : res.statusText);
    return { status, data: json.data };
  }

  /** The callbacks and listeners of a promise (not in the protocol: spec/choices.yaml dashboard-waiters). */
  async function waiters(id) {
    const { res, json } = await post('/ui/waiters', { id }, token() ? { Authorization: `Bearer ${token()}` } : {});
    if (res.status !== 200) throw new Refused(res.status, json);
    return json;
  }

  // --- Building the page -------------------------------------------------------------------

  /** An element; string children become text nodes, attributes are set as attributes. */
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (typeof v === 'function') e.addEventListener(k, v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids.flat(Infinity)) {
      if (k !== undefined && k !== null && k !== false) e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }

  const promiseLink = (id) => h('a', { href: `#promise/${encodeURIComponent(id)}`, class: 'mono' }, id);
  const badge = (state) => h('span', { class: `state ${state}` }, state);
  const pad = (n) => String(n).padStart(2, '0');
  function time(ms) {
    if (ms === undefined || ms === null) return '';
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return String(ms);
    const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return h('span', { title: `${ms} ms` }, text);
  }
  const tagList = (tags) => Object.entries(tags || {}).sort().map(([k, v]) => h('span', { class: 'tag mono' }, `${k}=${v}`));

  /** A value's data as text when it is base64 of UTF-8 (the SDKs' habit), with the raw form. */
  function value(v) {
    if (!v || (v.data === undefined && !v.headers)) return h('span', { class: 'muted' }, '(empty)');
    const raw = v.data === undefined ? '' : String(v.data);
    let text = null;
    try {
      const bytes = Uint8Array.from(atob(raw), (c) => c.charCodeAt(0));
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch { /* not base64 of UTF-8: shown raw */ }
    const headers = v.headers && Object.keys(v.headers).length ? h('div', {}, tagList(v.headers)) : null;
    if (text !== null && raw !== '') return h('div', {}, headers, h('pre', { class: 'mono' }, text), h('div', { class: 'muted mono' }, `base64: ${raw}`));
    return h('div', {}, headers, h('pre', { class: 'mono' }, raw));
  }

  function parseTags(text) {
    const tags = {};
    for (const part of (text || '').split(',')) {
      if (!part.trim()) continue;
      const eq = part.indexOf('=');
      if (eq < 1) throw new Refused(400, `tags: write key=value pairs separated by commas, not "${part.trim()}"`);
      tags[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
    }
    return tags;
  }

  const stateMatches = (state, wanted) => !wanted || state === wanted || (wanted === 'rejected' && state.startsWith('rejected'));
  const tagsMatch = (have, want) => Object.entries(want).every(([k, v]) => (have || {})[k] === v);

  // --- Lists: search by id prefix, state and tags ---------------------------------------------

  /**
   * One page of a search narrowed to ids starting with `prefix`. The protocol lists ids after a
   * cursor in id order, so the ids with a prefix are the prefix itself (read with *.get) and the
   * run of ids right after it: the first page starts at cursor = prefix and the run ends at the
   * first id without the prefix.
   */
  async function pageOf(kind, listKey, params, cursor, filters, matches) {
    const prefix = params.get('prefix') || '';
    const items = [];
    if (!cursor && prefix) {
      const got = await call(`${kind}.get`, { id: prefix }, [200, 404]);
      const record = got.status === 200 ? got.data[kind] : null;
      if (record && matches(record)) items.push(record);
      cursor = prefix;
    }
    const data = { limit: PAGE, ...filters };
    if (cursor) data.cursor = cursor;
    const found = await call(`${kind}.search`, data);
    const list = found.data[listKey] || [];
    const end = prefix ? list.findIndex((r) => !r.id.startsWith(prefix)) : -1;
    if (end >= 0) return { items: items.concat(list.slice(0, end)), cursor: null };
    return { items: items.concat(list), cursor: found.data.cursor || null };
  }

  function promisePage(params, cursor) {
    const state = params.get('state') || '';
    const tags = parseTags(params.get('tags'));
    const filters = {};
    if (state) filters.state = state;
    if (Object.keys(tags).length) filters.tags = tags;
    return pageOf('promise', 'promises', params, cursor, filters, (p) => stateMatches(p.state, state) && tagsMatch(p.tags, tags));
  }

  function taskPage(params, cursor) {
    const state = params.get('state') || '';
    return pageOf('task', 'tasks', params, cursor, state ? { state } : {}, (t) => !state || t.state === state);
  }

  function schedulePage(params, cursor) {
    const tags = parseTags(params.get('tags'));
    const filters = Object.keys(tags).length ? { tags } : {};
    return pageOf('schedule', 'schedules', params, cursor, filters, (s) => tagsMatch(s.promiseTags, tags));
  }

  const PROMISE_COLUMNS = [
    ['id', (p) => promiseLink(p.id)],
    ['state', (p) => badge(p.state)],
    ['created', (p) => time(p.createdAt)],
    ['timeout', (p) => time(p.timeoutAt)],
    ['settled', (p) => time(p.settledAt)],
    ['tags', (p) => tagList(p.tags)],
  ];
  const TASK_COLUMNS = [
    ['id', (t) => promiseLink(t.id)],
    ['state', (t) => badge(t.state)],
    ['version', (t) => t.version],
    ['resumes', (t) => t.resumes],
    ['pid', (t) => t.pid || ''],
    ['ttl (ms)', (t) => (t.ttl === undefined ? '' : t.ttl)],
  ];
  const SCHEDULE_COLUMNS = [
    ['id', (s) => h('span', { class: 'mono' }, s.id)],
    ['cron', (s) => h('span', { class: 'mono' }, s.cron)],
    ['promise id', (s) => h('span', { class: 'mono' }, s.promiseId)],
    ['promise timeout (ms)', (s) => s.promiseTimeout],
    ['next run', (s) => time(s.nextRunAt)],
    ['last run', (s) => time(s.lastRunAt)],
    ['promise tags', (s) => tagList(s.promiseTags)],
  ];

  /** A table of search results with a More button while the search has more. */
  async function list(page, columns, params) {
    const body = h('tbody');
    const count = h('p', { class: 'muted', id: 'count' });
    const more = h('button', { type: 'button', id: 'more' }, 'More');
    let cursor = null;
    let shown = 0;
    const add = (got) => {
      for (const r of got.items) body.append(h('tr', { 'data-id': r.id }, columns.map(([, cell]) => h('td', {}, cell(r)))));
      shown += got.items.length;
      cursor = got.cursor;
      more.hidden = !cursor;
      count.textContent = shown === 0 ? 'Nothing matches.' : `${shown}${cursor ? '+' : ''} shown`;
    };
    more.addEventListener('click', async () => {
      current.paged = true; // auto-refresh would start again at page one
      try { add(await page(params, cursor)); } catch (e) { showError(e); }
    });
    add(await page(params, null));
    const head = h('thead', {}, h('tr', {}, columns.map(([name]) => h('th', {}, name))));
    return h('div', {}, count, h('table', { class: 'list' }, head, body), more);
  }

  /** The search form of a list: its fields are the route's parameters. */
  function searchForm(route, fields, params) {
    const inputs = fields.map(([name, label, choices]) => {
      const input = choices
        ? h('select', { name }, h('option', { value: '' }, 'any'), choices.map((c) => h('option', { value: c }, c)))
        : h('input', { name, size: name === 'tags' ? 30 : 20, placeholder: label });
      input.value = params.get(name) || '';
      return h('label', {}, label, input);
    });
    const form = h('form', { id: 'search', 'data-key': location.hash }, inputs, h('button', { type: 'submit' }, 'Search'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (String(v).trim()) q.set(k, String(v).trim());
      const hash = `#${route}${q.toString() ? `?${q}` : ''}`;
      if (location.hash === hash) show(); else location.hash = hash;
    });
    return form;
  }

  // --- One promise, and the call tree under it ------------------------------------------------

  async function promiseView(params, id) {
    const p = (await call('promise.get', { id })).data.promise;
    const [task, w] = await Promise.all([call('task.get', { id }, [200, 404]), waiters(id)]);
    const parent = p.tags && p.tags['resonate:parent'];
    const origin = p.tags && p.tags['resonate:origin'];
    const rows = [
      ['id', h('span', { class: 'mono', id: 'promise-id' }, p.id)],
      ['state', h('span', { id: 'promise-state' }, badge(p.state))],
      ['created', time(p.createdAt)],
      ['timeout', time(p.timeoutAt)],
      ['settled', time(p.settledAt)],
      ['tags', h('span', { id: 'promise-tags' }, tagList(p.tags))],
      ['param', value(p.param)],
      ['value', value(p.value)],
    ];
    if (parent && parent !== p.id) rows.push(['parent', promiseLink(parent)]);
    if (origin && origin !== p.id) rows.push(['origin', promiseLink(origin)]);
    const dl = (pairs, attrs) => h('dl', attrs, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    let taskPart = h('p', { class: 'muted', id: 'task' }, 'No task (the promise has no resonate:target).');
    if (task.status === 200) {
      const t = task.data.task;
      taskPart = dl([
        ['state', h('span', { id: 'task-state' }, badge(t.state))],
        ['version', t.version],
        ['resumes', t.resumes],
        ['pid', t.pid || ''],
        ['ttl (ms)', t.ttl === undefined ? '' : t.ttl],
      ], { id: 'task' });
    }
    const items = (xs, id, each, none) => (xs.length ? h('ul', { id }, xs.map((x) => h('li', {}, each(x)))) : h('p', { class: 'muted', id }, none));
    return h('div', {},
      h('h2', {}, 'Promise ', h('span', { class: 'mono' }, p.id), ' · ', h('a', { href: `#tree/${encodeURIComponent(p.id)}`, id: 'tree-link' }, 'call tree')),
      dl(rows, { id: 'promise' }),
      h('h2', {}, 'Task'), taskPart,
      h('h2', {}, 'Callbacks (tasks resumed when it settles)'),
      items(w.callbacks, 'callbacks', promiseLink, 'None.'),
      h('h2', {}, 'Listeners (addresses notified when it settles)'),
      items(w.listeners, 'listeners', (a) => h('span', { class: 'mono' }, a), 'None.'));
  }

  /** The promises tagged resonate:parent = id (all pages), but not the promise itself. */
  async function childrenOf(id) {
    const out = [];
    let cursor = null;
    do {
      const data = { tags: { 'resonate:parent': id }, limit: 1000 };
      if (cursor) data.cursor = cursor;
      const found = (await call('promise.search', data)).data;
      out.push(...found.promises.filter((p) => p.id !== id));
      cursor = found.cursor;
    } while (cursor && out.length < TREE_LIMIT);
    return out;
  }

  async function treeView(params, root) {
    const top = (await call('promise.get', { id: root })).data.promise;
    const kids = new Map();
    const seen = new Set([top.id]);
    let level = [top];
    let truncated = false;
    while (level.length) {
      if (seen.size >= TREE_LIMIT) { truncated = true; break; }
      const next = [];
      for (let i = 0; i < level.length; i += 8) {
        const batch = level.slice(i, i + 8);
        const found = await Promise.all(batch.map((p) => childrenOf(p.id)));
        batch.forEach((p, j) => {
          const fresh = found[j].filter((c) => !seen.has(c.id));
          fresh.forEach((c) => seen.add(c.id));
          fresh.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
          kids.set(p.id, fresh);
          next.push(...fresh);
        });
      }
      level = next;
    }
    const node = (p) => {
      const under = kids.get(p.id) || [];
      return h('li', { 'data-id': p.id }, promiseLink(p.id), ' ', badge(p.state),
        under.length ? h('ul', { class: 'tree' }, under.map(node)) : null);
    };
    return h('div', {},
      h('h2', {}, 'Call tree under ', promiseLink(top.id), h('span', { class: 'muted' }, ` · ${seen.size} promise${seen.size === 1 ? '' : 's'}, children by resonate:parent`)),
      h('ul', { class: 'tree root', id: 'tree' }, node(top)),
      truncated ? h('p', { class: 'muted' }, `Only the first ${TREE_LIMIT} promises are shown.`) : null);
  }

  // --- Routes, errors, refresh ------------------------------------------------------------------

  const ROUTES = {
    promises: {
      form: (q) => searchForm('promises', [['prefix', 'id prefix'], ['state', 'state', PROMISE_STATES], ['tags', 'tags (k=v, …)']], q),
      load: (q) => list(promisePage, PROMISE_COLUMNS, q),
    },
    tasks: {
      form: (q) => searchForm('tasks', [['prefix', 'id prefix'], ['state', 'state', TASK_STATES]], q),
      load: (q) => list(taskPage, TASK_COLUMNS, q),
    },
    schedules: {
      form: (q) => searchForm('schedules', [['prefix', 'id prefix'], ['tags', 'promise tags (k=v, …)']], q),
      load: (q) => list(schedulePage, SCHEDULE_COLUMNS, q),
    },
    promise: { nav: 'promises', load: promiseView },
    tree: { nav: 'promises', load: treeView },
  };

  /** `#name/arg?params` of the address. */
  function route() {
    const raw = location.hash.slice(1) || 'promises';
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const slash = path.indexOf('/');
    let arg = slash < 0 ? '' : path.slice(slash + 1);
    try { arg = decodeURIComponent(arg); } catch { /* kept as written */ }
    const name = slash < 0 ? path : path.slice(0, slash);
    return { name: ROUTES[name] ? name : 'promises', arg, params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
  }

  function showError(e) {
    const box = $('status');
    box.textContent = e instanceof Refused ? e.message : `Error: ${e && e.message ? e.message : e}`;
    box.hidden = false;
  }

  let current = null;

  /** Shows the route of the address; on a new route, its form first. Refreshes keep the form. */
  async function show() {
    const r = route();
    const spec = ROUTES[r.name];
    if (!current || current.key !== location.hash) {
      current = { key: location.hash, paged: false, busy: false, loaded: false };
      $('form').replaceChildren(...(spec.form ? [spec.form(r.params)] : []));
      for (const n of ['promises', 'tasks', 'schedules']) $(`nav-${n}`).classList.toggle('active', (spec.nav || r.name) === n);
    }
    const mine = current;
    if (mine.busy) return;
    mine.busy = true;
    try {
      const node = await spec.load(r.params, r.arg);
      if (current !== mine) return;
      $('view').replaceChildren(node);
      $('status').hidden = true;
      mine.loaded = true;
      $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (current !== mine) return;
      showError(e);
      if (!mine.loaded) $('view').replaceChildren();
    } finally {
      mine.busy = false;
    }
  }

  window.addEventListener('hashchange', show);
  $('reload').addEventListener('click', () => { if (current) current.paged = false; show(); });
  if (JWT) {
    $('token').value = token();
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
      current = null;
      show();
    });
  }
  setInterval(() => {
    if ($('auto').checked && !document.hidden && current && !current.paged) show();
  }, REFRESH_MS);
  show();
})();
