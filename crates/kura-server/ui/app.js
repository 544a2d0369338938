// Kura workspace UI: sign-in, projects, the query workspace and the stewards' panel.
// Runs under a strict CSP: no inline code or styles; untrusted text only ever goes through
// textContent (never innerHTML). Uses docs/api.md and nothing else.
'use strict';

(function () {
  // ===================================================================== helpers

  const $ = (sel) => document.querySelector(sel);
  const $$ = (sel) => Array.from(document.querySelectorAll(sel));
  const enc = encodeURIComponent;

  // Builds an element; strings among children become text nodes, so data is never parsed as HTML.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
    return e;
  }

  function short(hash) {
    return typeof hash === 'string' && hash.length > 12 ? hash.slice(0, 12) + '…' : hash || '—';
  }

  function firstLine(sql) {
    const line = String(sql || '').trim().split('\n')[0];
    return line.length > 120 ? line.slice(0, 120) + '…' : line;
  }

  function newUuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // Unambiguous characters; rejection sampling keeps every character equally likely.
  function generatePassword(length) {
    const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789';
    const limit = 256 - (256 % alphabet.length);
    let out = '';
    while (out.length < length) {
      for (const x of crypto.getRandomValues(new Uint8Array(length * 2))) {
        if (x < limit && out.length < length) out += alphabet[x % alphabet.length];
      }
    }
    return out;
  }

  function quoteIdent(name) {
    return /^[a-z_][a-z0-9_]*$/.test(name) ? name : '"' + name.replace(/"/g, '""') + '"';
  }

  const NUMERIC_TYPE =
    /^(u?int(eger)?\d*|tinyint|smallint|bigint|hugeint|utinyint|usmallint|ubigint|uhugeint|float\d*|real|double|decimal\d*|numeric)(\(|\s|$)/i;

  // ===================================================================== i18n

  const DICTS = globalThis.KURA_I18N || { ja: {}, en: {} };
  const LANG_KEY = 'kura.lang';

  // localStorage throws in some private modes; the choice then lasts for this page only.
  function stored(value) {
    try {
      if (value === undefined) return localStorage.getItem(LANG_KEY);
      localStorage.setItem(LANG_KEY, value);
    } catch (_) {
      return null;
    }
    return value;
  }

  function initialLang() {
    const saved = stored();
    if (saved && DICTS[saved]) return saved;
    return String(navigator.language || '').toLowerCase().startsWith('ja') ? 'ja' : 'en';
  }

  let lang = initialLang();

  function t(key, vars) {
    let s = DICTS[lang] && DICTS[lang][key];
    if (s === undefined) s = DICTS.en && DICTS.en[key];
    if (s === undefined) return key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
    return s;
  }

  const locale = () => (lang === 'ja' ? 'ja-JP' : 'en-GB');

  function fmtTime(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return '—';
    const opts = { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' };
    return d.toLocaleString(locale(), opts);
  }

  function fmtDate(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return '—';
    return d.toLocaleDateString(locale(), { year: 'numeric', month: '2-digit', day: '2-digit' });
  }

  const fmtNum = (n) => (typeof n === 'number' ? n.toLocaleString(locale()) : '—');
  const roleName = (r) => t('role.' + r);

  function applyStaticText() {
    document.documentElement.lang = lang;
    document.title = t('app.title');
    for (const e of $$('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of $$('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
    $('#sql-editor').placeholder = t('editor.placeholder');
    $('#lang-toggle').value = lang;
  }

  function setLang(next) {
    if (!DICTS[next]) return;
    lang = next;
    stored(next);
    applyStaticText();
    renderHeader();
    if (state.config && !state.session) renderSignin();
    renderProjects();
    renderAccounts();
    renderMembers();
    renderWorkspace();
  }

  // ===================================================================== api client

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  // opts.login: the local sign-in (CSRF value "login"); opts.keep401: the caller handles 401 itself.
  async function api(method, path, body, opts = {}) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store', redirect: 'error' };
    if (method !== 'GET') {
      headers['X-Kura-CSRF'] = opts.login ? 'login' : (state.session && state.session.csrf_token) || '';
      if (method !== 'DELETE') {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body === undefined ? {} : body);
      }
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, 'kura.network', t('error.network'));
    }
    let data = null;
    if (res.status !== 204 && (res.headers.get('Content-Type') || '').includes('json')) {
      try {
        data = await res.json();
      } catch (_) {
        data = null;
      }
    }
    if (res.ok) return data;
    const err = (data && data.error) || {};
    const message = err.message || t('error.http', { status: res.status });
    const e = new ApiError(res.status, err.code || 'kura.http.' + res.status, message, res.headers.get('Retry-After'));
    if (res.status === 401 && !opts.keep401) signedOut(true);
    throw e;
  }

  const projectPath = (pid, rest) => `/api/v1/projects/${enc(pid)}${rest || ''}`;

  // ===================================================================== state and routing

  const state = {
    config: null, // GET /api/v1/config
    session: null, // GET /api/v1/session; null when signed out
    projects: [], accounts: [], members: [], // projects view and admin panel
    project: null, catalog: null, history: [], outputs: [], result: null, // the open workspace
    lastCompleted: null, // {id, sql}: what "stage" submits
    running: null, // {id, pid} while a query runs
    signinMessage: null,
  };

  const roles = () => (state.session && state.session.user && state.session.user.roles) || [];
  const isSteward = () => roles().includes('steward');
  const isAdmin = () => isSteward() || roles().includes('supervisor');

  function showView(name) {
    $('#loading').hidden = true;
    for (const v of ['signin', 'projects', 'workspace']) $('#view-' + v).hidden = v !== name;
  }

  function route() {
    if (!state.session) {
      showView('signin');
      renderSignin();
      return;
    }
    const hash = location.hash || '#/';
    const m = /^#\/projects\/([a-z0-9][a-z0-9-]{0,63})$/.exec(hash);
    if (m) {
      openWorkspace(m[1]);
      return;
    }
    if (hash !== '#/projects') history.replaceState(null, '', '#/projects');
    openProjects();
  }

  function projectState(p) {
    const now = Date.now();
    if (p.starts && new Date(p.starts).getTime() > now) return 'upcoming';
    if (p.expires && new Date(p.expires).getTime() <= now) return 'expired';
    return 'active';
  }

  function showError(target, message, code) {
    const box = $(target);
    box.replaceChildren();
    box.hidden = !message;
    if (!message) return;
    box.append(el('span', { class: 'error-message', text: message }));
    if (code) box.append(' ', el('small', { class: 'error-code', text: code }));
  }

  function setStatus(target, message, isError, code) {
    const box = $(target);
    box.replaceChildren(message || '');
    box.classList.toggle('error-text', !!isError);
    if (code) box.append(' ', el('small', { class: 'error-code', text: code }));
  }

  // ===================================================================== sign-in and header

  function renderSignin() {
    const cfg = state.config;
    const local = !!(cfg && cfg.local_accounts);
    const oidc = !!(cfg && cfg.oidc && cfg.oidc.enabled);
    $('#login-form').hidden = !local;
    $('#oidc-block').hidden = !oidc;
    $('#oidc-signin').textContent = oidc ? cfg.oidc.label || t('signin.oidcDefault') : '';
    $('#signin-or').hidden = !(local && oidc);
    $('#signin-none').hidden = !cfg || local || oidc;
    const msg = state.signinMessage;
    showError('#signin-error', msg && msg.text, msg && msg.code);
  }

  function signinMessage(text, code) {
    state.signinMessage = text ? { text, code } : null;
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const username = $('#login-username').value.trim();
    const password = $('#login-password').value;
    if (!username || !password) {
      showError('#signin-error', t('signin.missing'));
      return;
    }
    const button = $('#login-submit');
    button.disabled = true;
    try {
      const session = await api('POST', '/api/v1/session', { username, password }, { login: true, keep401: true });
      $('#login-password').value = '';
      signedIn(session);
    } catch (e) {
      if (e.status === 401) showError('#signin-error', t('signin.failed'));
      else if (e.status === 429) {
        const text = e.retryAfter ? t('signin.rateLimitedRetry', { s: e.retryAfter }) : t('signin.rateLimited');
        showError('#signin-error', text, e.code);
      } else showError('#signin-error', e.message, e.code);
    } finally {
      button.disabled = false;
    }
  }

  function signedIn(session) {
    state.session = session;
    signinMessage(null);
    showError('#signin-error', null);
    renderHeader();
    route();
  }

  // Drops everything from the last session; "expired" is a 401 seen while signed in.
  function signedOut(expired) {
    const was = !!state.session;
    state.session = null;
    state.projects = [];
    state.accounts = [];
    state.members = [];
    resetWorkspace();
    $('#new-account').hidden = true;
    $('#new-account-password').textContent = '';
    if (was) signinMessage(expired ? t('signin.expired') : t('signin.signedOut'));
    renderHeader();
    route();
  }

  async function onSignout() {
    try {
      await api('DELETE', '/api/v1/session', undefined, { keep401: true });
    } catch (_) {
      // Signing out locally is still right: the session is unusable or already gone.
    }
    history.replaceState(null, '', '#/');
    signedOut(false);
  }

  function renderHeader() {
    const s = state.session;
    const user = $('#current-user');
    for (const id of ['#current-user', '#signout', '#nav-projects']) $(id).hidden = !s;
    user.replaceChildren();
    if (!s) return;
    user.dataset.userId = s.user.id;
    user.append(el('span', { class: 'user-name', text: s.user.name || s.user.id }), ' ',
      el('span', { class: 'user-roles', text: (s.user.roles || []).map(roleName).join('・') }));
  }

  // ===================================================================== projects view

  async function openProjects() {
    showView('projects');
    showError('#projects-error', null);
    try {
      const data = await api('GET', '/api/v1/projects');
      state.projects = (data && data.projects) || [];
    } catch (e) {
      if (e.status !== 401) showError('#projects-error', e.message, e.code);
      return;
    }
    renderProjects();
    $('#admin').hidden = !isAdmin();
    if (isAdmin()) loadAdmin();
  }

  function renderProjects() {
    $('#projects-empty').hidden = state.projects.length > 0 || !state.session;
    $('#projects').replaceChildren(...state.projects.map((p) => {
      const st = projectState(p);
      const open = () => { location.hash = '#/projects/' + enc(p.id); };
      return el('li', null, el('button', {
        type: 'button', class: 'project-item' + (st === 'active' ? '' : ' inactive'),
        'data-project-id': p.id, 'data-state': st, onclick: open,
      },
      el('span', { class: 'project-title', text: p.title || p.id }),
      el('span', { class: 'project-id mono', text: p.id }),
      el('span', { class: 'project-dates', text: t('projects.period', { starts: fmtDate(p.starts), expires: fmtDate(p.expires) }) }),
      el('span', { class: 'project-role', text: p.my_role ? roleName(p.my_role) : t('projects.notMember') }),
      st === 'active' ? null : el('span', { class: 'badge', text: t('projects.state.' + st) })));
    }));
    fillMemberProjectSelect();
  }

  // ===================================================================== workspace view

  function resetWorkspace() {
    state.project = null;
    state.catalog = null;
    state.history = [];
    state.outputs = [];
    state.result = null;
    state.lastCompleted = null;
    state.running = null;
    $('#sql-editor').value = '';
    $('#stage-title').value = '';
    $('#stage-description').value = '';
    setStatus('#stage-status', '');
    showError('#query-error', null);
    setRunning(false);
    renderWorkspace();
  }

  async function openWorkspace(pid) {
    if (state.project && state.project.id !== pid) resetWorkspace();
    showView('workspace');
    let project;
    try {
      project = await api('GET', projectPath(pid));
    } catch (e) {
      if (e.status === 401) return;
      resetWorkspace();
      $('#project-title').textContent = pid;
      $('#workspace-grid').hidden = true;
      setNotice(e.status === 404 ? t('workspace.notFound') : e.message);
      return;
    }
    state.project = project;
    $('#workspace-grid').hidden = false;
    renderWorkspace();
    const loads = [refreshOutputs()];
    if (project.my_role) loads.push(refreshCatalog(), refreshHistory());
    await Promise.all(loads);
  }

  function setNotice(text) {
    $('#workspace-notice').textContent = text || '';
    $('#workspace-notice').hidden = !text;
  }

  const canQuery = () => !!(state.project && state.project.my_role === 'researcher');

  function renderWorkspace() {
    const p = state.project;
    renderCatalog();
    renderResult();
    renderHistory();
    renderOutputs();
    updateStage();
    if (!p) return;
    const role = p.my_role ? roleName(p.my_role) : t('projects.notMember');
    $('#project-title').textContent = p.title || p.id;
    $('#project-meta').textContent = t('workspace.meta', { id: p.id, starts: fmtDate(p.starts), expires: fmtDate(p.expires), role });
    const st = projectState(p);
    if (!p.my_role) setNotice(t('workspace.notMember'));
    else if (st !== 'active') setNotice(t('workspace.inactive.' + st));
    else if (!canQuery()) setNotice(t('workspace.observer'));
    else setNotice(null);
    $('#sql-editor').readOnly = !canQuery();
    $('#run-query').disabled = !canQuery() || !!state.running;
  }

  // GETs one part of the open project; drops the answer if the user has moved to another project.
  async function loadProjectPart(rest, assign, render) {
    if (!state.project) return;
    const pid = state.project.id;
    try {
      const data = await api('GET', projectPath(pid, rest));
      if (state.project && state.project.id === pid) assign(data || {});
    } catch (e) {
      if (e.status === 401) return;
      if (rest === '/catalog') setNotice(e.message);
    }
    render();
  }

  const refreshCatalog = () => loadProjectPart('/catalog', (d) => { state.catalog = d; }, renderCatalog);
  const refreshOutputs = () => loadProjectPart('/outputs', (d) => { state.outputs = d.outputs || []; }, renderOutputs);
  const refreshHistory = () => (state.project && state.project.my_role
    ? loadProjectPart('/queries', (d) => { state.history = d.queries || []; }, renderHistory)
    : Promise.resolve());

  function renderCatalog() {
    const box = $('#catalog');
    const c = state.catalog;
    box.replaceChildren();
    $('#catalog-snapshot').textContent = c && c.snapshot
      ? t('catalog.snapshot', { name: c.snapshot.name, hash: short(c.snapshot.sha256), built: fmtDate(c.snapshot.built_at) })
      : '';
    if (!c) return;
    const insertButton = (cls, table, name, ...content) => el('button', {
      type: 'button', class: cls, 'data-table': table, 'data-column': cls === 'catalog-column' ? name : null,
      title: t('catalog.insert', { name }), onclick: () => insertText(quoteIdent(name)),
    }, ...content);
    for (const table of c.tables || []) {
      const columns = (table.columns || []).map((col) => el('li', null, insertButton('catalog-column', table.name, col.name,
        el('span', { class: 'col-name', text: col.name }), el('span', { class: 'col-type', text: col.type }))));
      box.append(el('section', { class: 'catalog-table', 'data-table': table.name },
        el('h3', null, insertButton('catalog-table-name', table.name, table.name, table.name), ' ',
          el('span', { class: 'muted small', text: t('catalog.rows', { n: fmtNum(table.rows) }) })),
        el('ul', { class: 'catalog-columns' }, ...columns)));
    }
    if (!(c.tables || []).length) box.append(el('p', { class: 'muted', text: t('catalog.empty') }));
  }

  function insertText(text) {
    const ta = $('#sql-editor');
    if (ta.readOnly) return;
    const start = ta.selectionStart;
    const end = ta.selectionEnd;
    const before = ta.value.slice(0, start);
    const sep = /[\w"]$/.test(before) ? ' ' : '';
    ta.setRangeText(sep + text, start, end, 'end');
    ta.focus();
  }

  // ---- running and cancelling queries

  function setRunning(on) {
    $('#run-query').disabled = on || !canQuery();
    $('#cancel-query').disabled = !on;
    $('#result').setAttribute('aria-busy', on ? 'true' : 'false');
    if (on) {
      $('#result-table').replaceChildren();
      $('#result-meta').replaceChildren(el('span', { class: 'running', text: t('query.running') }));
    }
  }

  async function runQuery() {
    if (state.running || !canQuery()) return;
    const sql = $('#sql-editor').value;
    if (!sql.trim()) {
      showError('#query-error', t('query.empty'));
      return;
    }
    const pid = state.project.id;
    const token = { id: newUuid(), pid };
    state.running = token;
    state.result = null;
    showError('#query-error', null);
    setRunning(true);
    try {
      const r = await api('POST', projectPath(pid, '/queries'), { sql, id: token.id });
      if (state.running === token) {
        state.result = r;
        state.lastCompleted = { id: r.id || token.id, sql };
      }
    } catch (e) {
      if (state.running === token && e.status !== 401) {
        const head = t('query.error.' + e.code);
        showError('#query-error', head === 'query.error.' + e.code ? e.message : `${head}: ${e.message}`, e.code);
      }
    } finally {
      if (state.running === token) {
        state.running = null;
        setRunning(false);
        renderResult();
        updateStage();
        if (state.session) await Promise.all([refreshHistory(), refreshOutputs()]);
      }
    }
  }

  async function cancelQuery() {
    const r = state.running;
    if (!r) return;
    $('#cancel-query').disabled = true;
    try {
      await api('POST', projectPath(r.pid, `/queries/${enc(r.id)}/cancel`));
    } catch (e) {
      if (e.status === 401) return;
      showError('#query-error', e.message, e.code);
      if (state.running === r) $('#cancel-query').disabled = false;
    }
  }

  function renderResult() {
    const table = $('#result-table');
    const meta = $('#result-meta');
    const r = state.result;
    if (state.running) return;
    table.replaceChildren();
    meta.replaceChildren();
    for (const k of ['queryId', 'rowCount', 'rowsShown', 'truncated', 'durationMs', 'resultSha256']) delete meta.dataset[k];
    if (!r) return;
    const columns = r.columns || [];
    const numeric = columns.map((c) => NUMERIC_TYPE.test(String(c.type || '')));
    const limit = typeof r.rows_shown === 'number' ? r.rows_shown : (r.rows || []).length;
    const rows = (r.rows || []).slice(0, limit);
    const head = el('tr', null, ...columns.map((c, i) =>
      el('th', { scope: 'col', class: numeric[i] ? 'num' : null, title: c.type }, c.name)));
    const body = document.createElement('tbody');
    for (const row of rows) {
      const tr = document.createElement('tr');
      row.forEach((v, i) => {
        const td = document.createElement('td');
        if (v === null || v === undefined) {
          td.className = numeric[i] ? 'null num' : 'null';
          td.textContent = 'NULL';
        } else {
          td.textContent = typeof v === 'object' ? JSON.stringify(v) : String(v);
          if (numeric[i] || typeof v === 'number') td.className = 'num';
        }
        tr.append(td);
      });
      body.append(tr);
    }
    table.append(el('caption', { class: 'visually-hidden', text: t('result.caption') }), el('thead', null, head), body);
    Object.assign(meta.dataset, { queryId: r.id, rowCount: r.row_count, rowsShown: rows.length,
      truncated: r.truncated ? 'true' : 'false', durationMs: r.duration_ms, resultSha256: r.result_sha256 });
    const parts = [
      el('span', { class: 'meta-rows', text: t('result.rowCount', { n: fmtNum(r.row_count) }) }),
      el('span', { class: 'meta-shown', text: t('result.rowsShown', { n: fmtNum(rows.length) }) }),
      r.truncated ? el('span', { class: 'meta-truncated', text: t('result.truncated', { n: fmtNum(rows.length) }) }) : null,
      el('span', { class: 'meta-duration', text: t('result.duration', { n: fmtNum(r.duration_ms) }) }),
      el('span', { class: 'meta-hash', title: r.result_sha256 || '' }, t('result.hash') + ' ',
        el('code', { text: short(r.result_sha256) })),
    ];
    meta.append(...parts.filter(Boolean));
  }

  // ---- history

  function renderHistory() {
    const list = $('#history');
    list.replaceChildren();
    for (const q of state.history) {
      const err = q.error && typeof q.error === 'object' ? q.error.message || q.error.code : q.error;
      const stats = [
        typeof q.duration_ms === 'number' ? t('result.duration', { n: fmtNum(q.duration_ms) }) : null,
        typeof q.row_count === 'number' ? t('history.rows', { n: fmtNum(q.row_count) }) : null,
      ].filter(Boolean).join(' · ');
      // The whole item loads the SQL; the inner button makes that reachable by keyboard.
      const load = () => { if (canQuery()) $('#sql-editor').value = q.sql || ''; };
      const view = (ev) => { ev.stopPropagation(); viewResult(q); };
      list.append(el('li', { class: 'history-item', 'data-query-id': q.id, 'data-status': q.status, onclick: load },
        el('button', { type: 'button', class: 'history-load', title: t('history.load') },
          el('span', { class: 'history-line' },
            el('span', { class: 'status-badge status-' + q.status, text: t('status.' + q.status) }),
            el('span', { class: 'history-time', text: fmtTime(q.started_at) })),
          stats ? el('span', { class: 'history-stats', text: stats }) : null,
          el('span', { class: 'history-sql mono', text: firstLine(q.sql) })),
        err ? el('small', { class: 'history-error', text: err }) : null,
        q.status === 'completed'
          ? el('button', { type: 'button', class: 'history-view-result link-button', text: t('history.viewResult'), onclick: view })
          : null));
    }
    if (!state.history.length && state.project && state.project.my_role) {
      list.append(el('li', { class: 'muted', text: t('history.empty') }));
    }
  }

  async function viewResult(q) {
    if (state.running || !state.project) return;
    const pid = state.project.id;
    showError('#query-error', null);
    try {
      const r = await api('GET', projectPath(pid, `/queries/${enc(q.id)}/result`));
      if (!state.project || state.project.id !== pid) return;
      state.result = r;
      state.lastCompleted = { id: r.id || q.id, sql: q.sql };
      renderResult();
      updateStage();
    } catch (e) {
      if (e.status !== 401) showError('#query-error', e.message, e.code);
    }
  }

  // ---- staged outputs

  function renderOutputs() {
    const list = $('#outputs');
    list.replaceChildren(...state.outputs.map((o) => el('li',
      { class: 'output-item', 'data-output-id': o.id, 'data-query-id': o.query_id, 'data-status': o.status },
      el('span', { class: 'output-title', text: o.title }),
      el('span', { class: 'output-line' },
        el('span', { class: 'status-badge status-' + o.status, text: t('outputStatus.' + o.status) }),
        el('span', { class: 'output-rows', text: t('history.rows', { n: fmtNum(o.row_count) }) }),
        el('span', { class: 'output-created', text: fmtTime(o.created_at) })),
      o.description ? el('span', { class: 'output-description', text: o.description }) : null)));
    if (!state.outputs.length && state.project) list.append(el('li', { class: 'muted', text: t('outputs.empty') }));
  }

  function updateStage() {
    const lc = state.lastCompleted;
    $('#stage-output').disabled = !lc || !canQuery() || !!state.running;
    $('#stage-target').textContent = lc
      ? t('stage.target', { sql: firstLine(lc.sql), id: String(lc.id).slice(0, 8) })
      : t('stage.none');
  }

  async function stageOutput() {
    const lc = state.lastCompleted;
    if (!lc || !state.project) return;
    const title = $('#stage-title').value.trim();
    if (!title) {
      setStatus('#stage-status', t('stage.needTitle'), true);
      $('#stage-title').focus();
      return;
    }
    const pid = state.project.id;
    const button = $('#stage-output');
    button.disabled = true;
    try {
      await api('POST', projectPath(pid, '/outputs'), {
        query_id: lc.id,
        title,
        description: $('#stage-description').value,
      });
      setStatus('#stage-status', t('stage.done'));
      $('#stage-title').value = '';
      $('#stage-description').value = '';
    } catch (e) {
      if (e.status !== 401) setStatus('#stage-status', e.message, true, e.code);
    } finally {
      updateStage();
    }
    await Promise.all([refreshHistory(), refreshOutputs()]);
  }

  // ===================================================================== admin (stewards; supervisors read-only)

  async function loadAdmin() {
    const steward = isSteward();
    for (const e of $$('.steward-only')) e.hidden = !steward;
    $('#admin-readonly').hidden = steward;
    fillMemberProjectSelect();
    await Promise.all([refreshAccounts(), refreshMembers()]);
  }

  function fillMemberProjectSelect() {
    const select = $('#member-project');
    const current = select.value;
    select.replaceChildren(...state.projects.map((p) => el('option', { value: p.id }, `${p.title || p.id} (${p.id})`)));
    if (state.projects.some((p) => p.id === current)) select.value = current;
  }

  async function refreshAccounts() {
    try {
      const data = await api('GET', '/api/v1/accounts');
      state.accounts = (data && data.accounts) || [];
    } catch (e) {
      if (e.status !== 401) setStatus('#acct-status', e.message, true, e.code);
    }
    renderAccounts();
  }

  // A consequential action needs a second click on the same button.
  function confirmButton(cls, label, action) {
    const b = el('button', { type: 'button', class: 'secondary small-button ' + cls, text: label });
    b.addEventListener('click', () => {
      if (b.dataset.confirm === '1') {
        b.disabled = true;
        action();
        return;
      }
      b.dataset.confirm = '1';
      b.textContent = t('admin.confirm');
    });
    b.addEventListener('blur', () => {
      delete b.dataset.confirm;
      b.textContent = label;
    });
    return b;
  }

  function renderAccounts() {
    $('#accounts').replaceChildren(...state.accounts.map((a) => {
      const self = state.session && a.id === state.session.user.id;
      const disable = isSteward() && !a.disabled && !self
        ? confirmButton('account-disable', t('admin.disable'), () => disableAccount(a.id)) : null;
      return el('li', { class: 'account-item' + (a.disabled ? ' inactive' : ''), 'data-account-id': a.id },
        el('span', { class: 'account-name', text: `${a.name} (${a.id})` }),
        el('span', { class: 'muted small', text: `${(a.roles || []).map(roleName).join('・')} · ${t('source.' + a.source)}` }),
        a.disabled ? el('span', { class: 'badge', text: t('admin.disabled') }) : null,
        disable);
    }));
  }

  async function disableAccount(uid) {
    try {
      await api('POST', `/api/v1/accounts/${enc(uid)}/disable`);
      setStatus('#acct-status', t('admin.accountDisabled', { id: uid }));
    } catch (e) {
      if (e.status !== 401) setStatus('#acct-status', e.message, true, e.code);
    }
    await refreshAccounts();
  }

  async function refreshMembers() {
    const pid = $('#member-project').value;
    state.members = [];
    if (pid) {
      try {
        const p = await api('GET', projectPath(pid));
        state.members = (p && p.members) || [];
      } catch (e) {
        if (e.status !== 401) setStatus('#member-status', e.message, true, e.code);
      }
    }
    renderMembers();
  }

  function renderMembers() {
    const pid = $('#member-project').value;
    $('#members').replaceChildren(...state.members.map((m) => el('li', { class: 'member-item', 'data-user-id': m.user },
      el('span', { class: 'member-name', text: `${m.name || m.user} (${m.user})` }),
      el('span', { class: 'muted small', text: `${roleName(m.role)} · ${t('admin.until', { date: fmtDate(m.expires) })}` }),
      isSteward() ? confirmButton('member-remove', t('admin.removeMember'), () => removeMember(pid, m.user)) : null)));
  }

  async function removeMember(pid, uid) {
    try {
      await api('DELETE', projectPath(pid, `/members/${enc(uid)}`));
      setStatus('#member-status', t('admin.memberRemoved', { id: uid }));
    } catch (e) {
      if (e.status !== 401) setStatus('#member-status', e.message, true, e.code);
    }
    await refreshMembers();
  }

  // "table: col_a, col_b" per line.
  function parseTables(text) {
    const tables = {};
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line) continue;
      const m = /^([^:]+):(.*)$/.exec(line);
      if (!m) return null;
      const cols = m[2].split(',').map((c) => c.trim()).filter(Boolean);
      if (!cols.length) return null;
      tables[m[1].trim()] = cols;
    }
    return Object.keys(tables).length ? tables : null;
  }

  const ID_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;
  const dayStart = (d) => `${d}T00:00:00Z`;
  const dayEnd = (d) => `${d}T23:59:59Z`;

  async function onCreateProject(ev) {
    ev.preventDefault();
    const v = (id) => $(id).value.trim();
    const tables = parseTables($('#np-tables').value);
    if (!ID_RE.test(v('#np-id'))) return setStatus('#np-status', t('admin.badId'), true);
    if (!v('#np-title') || !v('#np-snapshot') || !v('#np-starts') || !v('#np-expires')) {
      return setStatus('#np-status', t('admin.missing'), true);
    }
    if (!tables) return setStatus('#np-status', t('admin.badTables'), true);
    try {
      await api('POST', '/api/v1/projects', {
        id: v('#np-id'),
        title: v('#np-title'),
        description: $('#np-description').value,
        snapshot: v('#np-snapshot'),
        tables,
        starts: dayStart(v('#np-starts')),
        expires: dayEnd(v('#np-expires')),
      });
      setStatus('#np-status', t('admin.projectCreated', { id: v('#np-id') }));
      $('#admin-create-project').reset();
      await openProjects();
    } catch (e) {
      if (e.status !== 401) setStatus('#np-status', e.message, true, e.code);
    }
  }

  async function onAddMember(ev) {
    ev.preventDefault();
    const pid = $('#member-project').value;
    const uid = $('#member-user').value.trim();
    const expires = $('#member-expires').value;
    if (!pid || !ID_RE.test(uid) || !expires) return setStatus('#member-status', t('admin.missing'), true);
    try {
      await api('PUT', projectPath(pid, `/members/${enc(uid)}`), { role: $('#member-role').value, expires: dayEnd(expires) });
      setStatus('#member-status', t('admin.memberAdded', { id: uid }));
      $('#member-user').value = '';
    } catch (e) {
      if (e.status !== 401) setStatus('#member-status', e.message, true, e.code);
    }
    await refreshMembers();
  }

  async function onCreateAccount(ev) {
    ev.preventDefault();
    const id = $('#acct-id').value.trim();
    const name = $('#acct-name').value.trim();
    const chosen = $$('.acct-role').filter((c) => c.checked).map((c) => c.value);
    $('#new-account').hidden = true;
    $('#new-account-password').textContent = '';
    if (!ID_RE.test(id)) return setStatus('#acct-status', t('admin.badId'), true);
    if (!name || !chosen.length) return setStatus('#acct-status', t('admin.missing'), true);
    const password = generatePassword(20);
    try {
      await api('POST', '/api/v1/accounts', { id, name, roles: chosen, password });
      setStatus('#acct-status', t('admin.accountCreated', { id }));
      $('#admin-create-account').reset();
      $('#new-account-password').textContent = password;
      $('#new-account').hidden = false;
    } catch (e) {
      if (e.status !== 401) setStatus('#acct-status', e.message, true, e.code);
    }
    await refreshAccounts();
  }

  // ===================================================================== boot

  function bind() {
    $('#lang-toggle').addEventListener('change', (e) => setLang(e.target.value));
    $('#login-form').addEventListener('submit', onLogin);
    $('#signout').addEventListener('click', onSignout);
    $('#run-query').addEventListener('click', runQuery);
    $('#cancel-query').addEventListener('click', cancelQuery);
    $('#stage-output').addEventListener('click', stageOutput);
    $('#sql-editor').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        runQuery();
      }
    });
    $('#admin-create-project').addEventListener('submit', onCreateProject);
    $('#admin-add-member').addEventListener('submit', onAddMember);
    $('#admin-create-account').addEventListener('submit', onCreateAccount);
    $('#member-project').addEventListener('change', refreshMembers);
    window.addEventListener('hashchange', route);
  }

  async function boot() {
    applyStaticText();
    bind();
    const params = new URLSearchParams(location.search);
    const oidcError = params.get('signin_error');
    if (oidcError !== null) {
      history.replaceState(null, '', location.pathname + location.hash);
      signinMessage(t('signin.oidcFailed'), oidcError.slice(0, 100));
    }
    try {
      state.config = await api('GET', '/api/v1/config', undefined, { keep401: true });
    } catch (e) {
      signinMessage(t('signin.configFailed'), e.code);
    }
    try {
      state.session = await api('GET', '/api/v1/session', undefined, { keep401: true });
    } catch (e) {
      state.session = null;
      if (e.status !== 401 && !state.signinMessage) signinMessage(e.message, e.code);
    }
    renderHeader();
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
