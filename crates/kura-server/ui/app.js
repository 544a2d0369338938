// Kura workspace UI: sign-in, projects, the query workspace, the trial-feasibility explorer, the
// airlock (an author's outputs and the output checkers' reviews) and the stewards' panel.
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

  // The label of a value the API returns; the value itself when the dictionary has none (a newer
  // server may send states this UI does not know yet).
  function tv(prefix, value) {
    const key = prefix + value;
    const s = t(key);
    return s === key ? String(value) : s;
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
  // Cell values of a report: whole numbers grouped, others exactly as sent.
  const fmtVal = (v) => (typeof v === 'number' && Number.isInteger(v) ? fmtNum(v) : v === null || v === undefined ? '—' : String(v));
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
    renderOutputDetail(false);
    renderExplorer();
    renderConsole();
    renderReviews();
    renderReviewDetail();
    renderDataCatalog();
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
    output: null, // {pid, oid, review, report, reportError}: the output open in the workspace
    reviews: [], // GET /api/v1/reviews
    review: null, // {pid, oid, review, report, reportError}: the review open in the checkers' view
  };

  const roles = () => (state.session && state.session.user && state.session.user.roles) || [];
  const isSteward = () => roles().includes('steward');
  const isAdmin = () => isSteward() || roles().includes('supervisor');
  const isChecker = () => roles().includes('checker');
  const isReviewer = () => isChecker() || roles().includes('supervisor');
  const myId = () => (state.session && state.session.user && state.session.user.id) || null;

  function showView(name) {
    $('#loading').hidden = true;
    $('#view-console').hidden = name !== 'console';
    if (name === 'console') $('#nav-console').setAttribute('aria-current', 'page');
    else $('#nav-console').removeAttribute('aria-current');
    for (const v of ['signin', 'projects', 'workspace', 'explorer', 'reviews']) $('#view-' + v).hidden = v !== name;
    for (const [nav, view] of [['#nav-projects', 'projects'], ['#nav-reviews', 'reviews']]) {
      if (view === name) $(nav).setAttribute('aria-current', 'page');
      else $(nav).removeAttribute('aria-current');
    }
    $('#view-catalog').hidden = name !== 'catalog';
    if (name === 'catalog') $('#nav-catalog').setAttribute('aria-current', 'page');
    else $('#nav-catalog').removeAttribute('aria-current');
  }

  function route() {
    if (!state.session) {
      showView('signin');
      renderSignin();
      return;
    }
    const hash = location.hash || '#/';
    const x = /^#\/projects\/([a-z0-9][a-z0-9-]{0,63})\/explorer$/.exec(hash);
    if (x) {
      openExplorer(x[1]);
      return;
    }
    const m = /^#\/projects\/([a-z0-9][a-z0-9-]{0,63})$/.exec(hash);
    if (m) {
      openWorkspace(m[1]);
      return;
    }
    const r = /^#\/reviews(?:\/([a-z0-9][a-z0-9-]{0,63})\/([a-z0-9][a-z0-9-]{0,63}))?$/.exec(hash);
    if (r) {
      openReviews(r[1] ? { pid: r[1], oid: r[2] } : null);
      return;
    }
    if (hash === '#/catalog') {
      openDataCatalog();
      return;
    }
    if (hash === '#/console') {
      openConsole();
      return;
    }
    // Output checkers who do nothing else start at their queue.
    if (hash !== '#/projects' && isChecker() && !isAdmin() && !roles().includes('researcher')) {
      history.replaceState(null, '', '#/reviews');
      openReviews(null);
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
    state.reviews = [];
    state.review = null;
    resetWorkspace();
    resetExplorer(null);
    resetConsole();
    renderReviews();
    renderReviewDetail();
    resetDataCatalog();
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
    $('#nav-reviews').hidden = !s || !isReviewer();
    $('#nav-console').hidden = !s || !isAdmin();
    $('#nav-catalog').hidden = !s;
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
    state.output = null;
    $('#sql-editor').value = '';
    $('#stage-title').value = '';
    $('#stage-description').value = '';
    setStatus('#stage-status', '');
    showError('#query-error', null);
    setRunning(false);
    renderWorkspace();
    renderOutputDetail(true);
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
    // The explorer runs queries: researchers of the project only (the server decides the rest).
    const explorerLink = $('#workspace-explorer-link');
    explorerLink.hidden = !canQuery();
    if (p) explorerLink.setAttribute('href', '#/projects/' + enc(p.id) + '/explorer');
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
      const meta = $('#result-meta');
      for (const k of ['queryId', 'rowCount', 'rowsShown', 'truncated', 'durationMs', 'resultSha256']) delete meta.dataset[k];
      meta.replaceChildren(el('span', { class: 'running', text: t('query.running') }));
    }
    updateStage(); // nothing is staged while a query runs
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

  // Each item opens the output panel; the inner button makes that reachable by keyboard.
  function renderOutputs() {
    const list = $('#outputs');
    const cur = state.output;
    const open = cur && cur.oid;
    list.replaceChildren(...state.outputs.map((o) => {
      // The open output's review is the freshest word on its state.
      const st = o.id === open && cur.review ? cur.review.state : o.status;
      return el('li', {
        class: 'output-item' + (o.id === open ? ' selected' : ''), 'data-output-id': o.id, 'data-query-id': o.query_id,
        'data-status': st, onclick: () => openOutput(o.id),
      },
      el('button', { type: 'button', class: 'output-open', 'aria-current': o.id === open ? 'true' : null, title: t('outputs.open') },
        el('span', { class: 'output-title', text: o.title }),
        el('span', { class: 'output-line' },
          el('span', { class: 'status-badge status-' + st, text: tv('outputStatus.', st) }),
          el('span', { class: 'output-rows', text: t('history.rows', { n: fmtNum(o.row_count) }) }),
          el('span', { class: 'output-created', text: fmtTime(o.created_at) })),
        o.description ? el('span', { class: 'output-description', text: o.description }) : null));
    }));
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
    let staged = null;
    try {
      staged = await api('POST', projectPath(pid, '/outputs'), {
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
    // The next step is the author's: describe the output and submit it.
    if (staged && staged.id && state.project && state.project.id === pid) await openOutput(staged.id);
  }

  // ===================================================================== airlock: shared rendering

  const outputPath = (pid, oid, rest) => projectPath(pid, `/outputs/${enc(oid)}${rest || ''}`);
  const REPORT_MAX_ROWS = 1000; // rows drawn in the report's table; every failing cell is listed anyway
  const REPORT_MAX_FAILURES = 500;

  // A consequential action on a static button needs a second click; blur disarms it.
  function armConfirm(button, labelKey, action) {
    button.addEventListener('click', () => {
      if (button.dataset.confirm === '1') {
        delete button.dataset.confirm;
        button.textContent = t(labelKey);
        action();
        return;
      }
      button.dataset.confirm = '1';
      button.textContent = t('airlock.confirm');
    });
    button.addEventListener('blur', () => {
      delete button.dataset.confirm;
      button.textContent = t(labelKey);
    });
  }

  function badge(st) {
    return el('span', { class: 'status-badge status-' + st, text: tv('outputStatus.', st) });
  }

  function setBadge(target, st) {
    const b = $(target);
    b.className = 'status-badge' + (st ? ' status-' + st : '');
    b.textContent = st ? tv('outputStatus.', st) : '';
    if (st) b.dataset.state = st;
    else delete b.dataset.state;
  }

  function metaList(box, items) {
    box.replaceChildren();
    for (const [label, value, cls] of items) {
      if (value === null || value === undefined || value === '') continue;
      box.append(el('dt', { text: label }), el('dd', { class: cls || null }, value));
    }
  }

  const hashCode = (h) => el('code', { class: 'hash', title: h || '' }, h || '—');

  // Why the report could not be shown: the author, checkers and supervisors may read it.
  function reportError(e) {
    return e.status === 403 || e.status === 404 ? t('report.notVisible') : e.message;
  }

  // The automatic disclosure check (kura-airlock's CheckerReport): summary, whole-output
  // refusals, the table with failing cells highlighted, every failure with its rule and reason,
  // and overlaps with the project's earlier releases.
  function renderReport(box, rep, error) {
    box.replaceChildren();
    delete box.dataset.passed;
    if (error) {
      box.append(el('p', { class: 'report-error error-text', text: error }));
      return;
    }
    if (!rep) {
      box.append(el('p', { class: 'muted', text: t('report.loading') }));
      return;
    }
    const sdc = rep.sdc || {};
    const cells = Array.isArray(sdc.cells) ? sdc.cells : [];
    const refusals = Array.isArray(sdc.refusals) ? sdc.refusals : [];
    const failing = cells.filter((c) => (c.failures || []).length);
    const passed = rep.passed === true;
    box.dataset.passed = passed ? 'true' : 'false';
    box.dataset.failingCells = String(failing.length);
    let summary;
    if (refusals.length) summary = t('report.refused');
    else if (passed) summary = t('report.passed', { n: fmtNum(cells.length) });
    else summary = t('report.failing', { n: fmtNum(failing.length), total: fmtNum(cells.length) });
    box.append(el('p', { class: 'report-summary ' + (passed ? 'report-pass' : 'report-fail') }, summary));
    box.append(el('p', { class: 'report-pack muted small' },
      t('report.pack', { pack: sdc.pack || '—', version: sdc.pack_version || '—', marker: sdc.marker || '—' })));
    if (rep.matches_submitted === false) box.append(el('p', { class: 'report-changed notice', text: t('report.changed') }));
    if (refusals.length) {
      box.append(el('ul', { class: 'report-refusals plain-list' }, ...refusals.map((f) =>
        el('li', { class: 'report-refusal', 'data-rule': f.rule }, ruleTag(f.rule), ' ', el('span', { text: f.reason })))));
    }
    const table = reportTable(sdc, cells);
    if (table) {
      box.append(el('div', { class: 'table-wrap report-wrap' }, table));
      if (table.dataset.omitted) box.append(el('p', { class: 'help', text: t('report.rowsOmitted', { n: fmtNum(Number(table.dataset.shown)) }) }));
      if (failing.length || cells.some((c) => c.action === 'suppress' || (c.action === 'round' && c.to !== c.value))) box.append(el('p', { class: 'help report-legend' },
        el('span', { class: 'legend-swatch cell-fail' }), ' ', t('report.legendFail'), ' ',
        el('span', { class: 'legend-swatch cell-changed' }), ' ', t('report.legendChanged')));
    } else if (!refusals.length) {
      box.append(el('p', { class: 'muted', text: t('report.noCells') }));
    }
    if (failing.length) {
      box.append(el('h4', { text: t('report.failures') }));
      box.append(el('ul', { class: 'report-failures plain-list' }, ...failing.slice(0, REPORT_MAX_FAILURES).map((c) =>
        el('li', { class: 'report-failure', 'data-row': c.row, 'data-measure': c.measure },
          el('span', { class: 'failure-cell' },
            typeof c.line === 'number' ? t('report.line', { n: c.line }) + ' ' : '',
            el('span', { class: 'mono', text: c.label || t('report.total') }), ' · ',
            el('span', { class: 'mono', text: c.measure_name }), ' = ', fmtVal(c.value), ' → ', actionText(c, sdc.marker)),
          el('ul', { class: 'plain-list failure-reasons' }, ...(c.failures || []).map((f) =>
            el('li', { 'data-rule': f.rule }, ruleTag(f.rule), ' ', el('span', { text: f.reason }))))))));
      if (failing.length > REPORT_MAX_FAILURES) {
        box.append(el('p', { class: 'help', text: t('report.failuresOmitted', { n: fmtNum(failing.length - REPORT_MAX_FAILURES) }) }));
      }
    }
    renderOverlaps(box, rep);
  }

  function ruleTag(rule) {
    return el('span', { class: 'rule-tag', 'data-rule': rule, title: rule }, tv('rule.', rule));
  }

  // What the protected table does with the cell.
  function actionText(c, marker) {
    if (c.action === 'suppress') return t('action.suppress', { marker: marker || '' });
    if (c.action === 'round') return t('action.round', { to: fmtVal(c.to) });
    return tv('action.', c.action || 'publish');
  }

  // Rows of the output, one column per measure. Dimension values come from the suggested
  // protected table when it lines up with the cells; otherwise each row is named by its label.
  function reportTable(sdc, cells) {
    if (!cells.length) return null;
    const byKey = new Map();
    const names = [];
    let nm = 0;
    for (const c of cells) {
      byKey.set(c.row + ':' + c.measure, c);
      names[c.measure] = c.measure_name;
      nm = Math.max(nm, c.measure + 1);
    }
    const rows = [...new Set(cells.map((c) => c.row))].sort((a, b) => a - b);
    const prot = sdc.protected;
    const ndims = prot && Array.isArray(prot.header) ? prot.header.length - nm : -1;
    const useDims = ndims >= 0 && Array.isArray(prot.rows) &&
      rows.every((r) => Array.isArray(prot.rows[r]) && prot.rows[r].length === ndims + nm);
    const dimHeads = useDims ? prot.header.slice(0, ndims) : [t('report.cell')];
    const head = el('tr', null,
      ...dimHeads.map((h) => el('th', { scope: 'col', text: h })),
      ...Array.from({ length: nm }, (_, m) => el('th', { scope: 'col', class: 'num', text: names[m] || '' })));
    const body = document.createElement('tbody');
    const shown = rows.slice(0, REPORT_MAX_ROWS);
    for (const r of shown) {
      const tr = el('tr', { 'data-row': r });
      const dims = useDims ? prot.rows[r].slice(0, ndims) : [(cells.find((c) => c.row === r) || {}).label || ''];
      for (const d of dims) tr.append(el('td', { class: 'dim', text: d }));
      for (let m = 0; m < nm; m++) {
        const c = byKey.get(r + ':' + m);
        if (!c) {
          tr.append(el('td', { class: 'num' }));
          continue;
        }
        const fails = c.failures || [];
        const rounded = c.action === 'round' && c.to !== c.value;
        const td = el('td', {
          class: 'num report-cell' + (fails.length ? ' cell-fail' : '') + (c.action === 'suppress' || rounded ? ' cell-changed' : ''),
          'data-row': r, 'data-measure': m, 'data-action': c.action || 'publish',
          'data-rules': fails.length ? fails.map((f) => f.rule).join(' ') : null,
          title: fails.length ? fails.map((f) => `[${f.rule}] ${f.reason}`).join('\n') : null,
        }, el('span', { class: 'cell-value', text: fmtVal(c.value) }));
        if (c.action === 'suppress') td.append(el('span', { class: 'cell-action', text: ' → ' + (sdc.marker || '') }));
        if (rounded) td.append(el('span', { class: 'cell-action', text: ' → ' + fmtVal(c.to) }));
        if (fails.length) td.append(el('span', { class: 'cell-rules', text: fails.map((f) => tv('rule.', f.rule)).join('・') }));
        tr.append(td);
      }
      body.append(tr);
    }
    const table = el('table', { class: 'result-table report-table' },
      el('caption', { class: 'visually-hidden', text: t('report.caption') }), el('thead', null, head), body);
    if (rows.length > shown.length) {
      table.dataset.omitted = String(rows.length - shown.length);
      table.dataset.shown = String(shown.length);
    }
    return table;
  }

  function renderOverlaps(box, rep) {
    const overlaps = Array.isArray(rep.overlaps) ? rep.overlaps : [];
    const omitted = typeof rep.overlaps_omitted === 'number' ? rep.overlaps_omitted : 0;
    const section = el('section', { class: 'report-overlaps', 'data-count': overlaps.length + omitted },
      el('h4', { text: t('overlaps.heading') }));
    box.append(section);
    if (!overlaps.length) {
      section.append(el('p', { class: 'muted small', text: t('overlaps.none') }));
      return;
    }
    section.append(el('p', { class: 'help', text: t('overlaps.help') }));
    const head = el('tr', null, ...[t('overlaps.cell'), t('overlaps.measure'), t('overlaps.value'), t('overlaps.relation'),
      t('overlaps.releasedValue'), t('overlaps.difference'), t('overlaps.release'), t('overlaps.snapshot')]
      .map((text) => el('th', { scope: 'col', text })));
    const body = el('tbody', null, ...overlaps.map((o) => el('tr', {
      class: 'overlap-item' + (o.same_snapshot && o.difference > 0 && o.difference < 10 ? ' overlap-risk' : ''),
      'data-relation': o.relation, 'data-release': o.release,
    },
    el('td', { class: 'mono', text: o.label || t('report.total') }),
    el('td', { class: 'mono', text: o.measure }),
    el('td', { class: 'num', text: fmtVal(o.value) }),
    el('td', { text: tv('relation.', o.relation) }),
    el('td', { class: 'num', text: fmtVal(o.released_value) }),
    el('td', { class: 'num', text: fmtVal(o.difference) }),
    el('td', null, el('span', { class: 'mono', text: o.release }), ' ',
      el('small', { class: 'muted', text: fmtTime(o.released_at) }),
      (o.released_definition || []).length ? el('small', { class: 'overlap-definition mono', text: o.released_definition.join(', ') }) : null),
    el('td', { text: o.same_snapshot ? t('overlaps.sameSnapshot') : t('overlaps.otherSnapshot') }))));
    section.append(el('div', { class: 'table-wrap report-wrap' }, el('table', { class: 'result-table overlap-table' },
      el('caption', { class: 'visually-hidden', text: t('overlaps.heading') }), el('thead', null, head), body)));
    if (omitted) section.append(el('p', { class: 'help', text: t('overlaps.omitted', { n: fmtNum(omitted) }) }));
  }

  // The context as given (read-only).
  function renderContext(box, ctx) {
    box.replaceChildren();
    if (!ctx) {
      box.append(el('p', { class: 'muted', text: t('ctx.none') }));
      return;
    }
    const dl = el('dl', { class: 'context-list' });
    const item = (key, value, cls) => dl.append(el('dt', { text: t(key) }),
      el('dd', { class: 'context-text ' + cls }, value && String(value).trim() ? value : el('span', { class: 'muted', text: '—' })));
    item('ctx.description', ctx.description, 'ctx-description-text');
    item('ctx.denominators', ctx.denominators, 'ctx-denominators-text');
    item('ctx.method', ctx.method, 'ctx-method-text');
    const filters = Array.isArray(ctx.population_filters) ? ctx.population_filters : [];
    item('ctx.filters', filters.length ? el('ul', { class: 'plain-list mono' }, ...filters.map((f) => el('li', { text: f }))) : '', 'ctx-filters-text');
    box.append(dl);
  }

  // The context the checkers see: the latest round's (what was submitted), else the draft's.
  function reviewContext(review) {
    const rounds = (review && review.rounds) || [];
    return rounds.length ? rounds[rounds.length - 1].context : (review && review.context) || null;
  }

  function roundStatusText(review) {
    const o = review && review.open_round;
    if (!o) return '';
    const parts = [t('round.open', { n: o.number, cast: o.votes_cast }), tv('awaiting.', o.awaiting)];
    if (o.viewer_voted) parts.push(t('round.youVoted'));
    return parts.join(' · ');
  }

  // Rounds, newest first, each with the votes the caller may see: every vote of a closed round,
  // of the open round only the caller's own (the server already applies this).
  function renderRounds(box, review) {
    box.replaceChildren();
    const rounds = ((review && review.rounds) || []).slice().reverse();
    const votes = (review && review.votes) || [];
    const open = review && review.open_round ? review.open_round.number : null;
    if (!rounds.length) {
      box.append(el('p', { class: 'muted', text: t('rounds.none') }));
      return;
    }
    for (const r of rounds) {
      const check = r.check || {};
      const mine = votes.filter((v) => v.round === r.number);
      const isOpen = r.number === open;
      const li = el('section', { class: 'round-item', 'data-round': r.number, 'data-outcome': r.outcome || (isOpen ? 'open' : '') },
        el('h4', { class: 'round-head' },
          t('rounds.round', { n: r.number }), ' ',
          r.outcome ? el('span', { class: 'status-badge status-' + r.outcome, text: tv('outcome.', r.outcome) })
            : el('span', { class: 'status-badge status-submitted', text: t('rounds.open') })),
        el('p', { class: 'muted small' },
          t('rounds.submitted', { at: fmtTime(r.submitted_at) }),
          r.closed_at ? ' · ' + t('rounds.closed', { at: fmtTime(r.closed_at) }) : '',
          typeof check.cells === 'number' ? ' · ' + t('rounds.check', { failing: fmtNum(check.failing_cells), cells: fmtNum(check.cells), pack: check.rule_pack || '—' }) : ''));
      if (mine.length) {
        li.append(el('ul', { class: 'plain-list votes' }, ...mine.map((v) => el('li', {
          class: 'vote-item', 'data-round': v.round, 'data-checker': v.checker, 'data-decision': v.decision,
        },
        el('span', { class: 'vote-line' },
          el('span', { class: 'decision-badge decision-' + v.decision, text: tv('decision.', v.decision) }),
          el('span', { class: 'vote-checker', text: v.checker === myId() ? t('vote.you', { id: v.checker }) : v.checker }),
          el('span', { class: 'muted small', text: fmtTime(v.at) })),
        v.comment ? el('span', { class: 'vote-comment', text: v.comment }) : null))));
      }
      if (isOpen) li.append(el('p', { class: 'help', text: t('rounds.blind') }));
      else if (!mine.length) li.append(el('p', { class: 'muted small', text: t('rounds.noVotes') }));
      box.append(li);
    }
  }

  // Who did what, when (vote entries carry no decision: that stays blind until the round closes).
  function renderReviewHistory(box, review) {
    box.replaceChildren(...((review && review.history) || []).slice().reverse().map((h) => el('li', {
      class: 'review-event', 'data-action': h.action, 'data-actor': h.actor, 'data-state': h.state,
    },
    el('span', { class: 'muted small event-time', text: fmtTime(h.at) }),
    el('span', { class: 'event-actor', text: h.actor === myId() ? t('vote.you', { id: h.actor }) : h.actor }),
    el('span', { class: 'event-action', text: tv('event.', h.action) }),
    h.note ? el('span', { class: 'event-note muted small', text: h.note }) : null,
    h.state ? badge(h.state) : null)));
  }

  // ===================================================================== airlock: the author's output panel

  async function openOutput(oid) {
    if (!state.project) return;
    const pid = state.project.id;
    if (!state.output || state.output.oid !== oid || state.output.pid !== pid) {
      state.output = { pid, oid, review: null, report: null, reportError: null };
      showError('#output-error', null);
      setStatus('#output-status', '');
      setStatus('#ctx-status', '');
    }
    renderOutputDetail(true);
    $('#output-detail').scrollIntoView({ block: 'start', behavior: 'smooth' });
    $('#output-detail').focus({ preventScroll: true });
    await loadOutput(true);
  }

  function closeOutput() {
    state.output = null;
    renderOutputs();
    renderOutputDetail(true);
  }

  // GETs the review and the report of the open output; drops answers for an output no longer open.
  async function loadOutput(fillForm) {
    const cur = state.output;
    if (!cur) return;
    const reviewP = api('GET', outputPath(cur.pid, cur.oid)).then((r) => {
      if (state.output !== cur) return;
      cur.review = r;
      renderOutputDetail(fillForm);
    }, (e) => {
      if (e.status !== 401 && state.output === cur) showError('#output-error', e.message, e.code);
    });
    await Promise.all([reviewP, loadOutputReport(cur)]);
  }

  async function loadOutputReport(cur) {
    try {
      const rep = await api('GET', outputPath(cur.pid, cur.oid, '/report'));
      if (state.output !== cur) return;
      cur.report = rep;
      cur.reportError = null;
    } catch (e) {
      if (e.status === 401 || state.output !== cur) return;
      cur.report = null;
      cur.reportError = reportError(e);
    }
    renderReport($('#output-report'), cur.report, cur.reportError);
  }

  const EDITABLE = ['draft', 'changes_requested'];
  const WITHDRAWABLE = ['draft', 'submitted', 'changes_requested', 'approved'];

  function renderOutputDetail(fillForm) {
    const box = $('#output-detail');
    const cur = state.output;
    box.hidden = !cur;
    if (!cur) {
      delete box.dataset.outputId;
      delete box.dataset.state;
      return;
    }
    const review = cur.review;
    const listed = state.outputs.find((o) => o.id === cur.oid) || {};
    const out = (review && review.output) || {};
    const st = review ? review.state : listed.status;
    const author = out.author || listed.author;
    const mine = !!author && author === myId();
    box.dataset.outputId = cur.oid;
    box.dataset.projectId = cur.pid;
    if (st) box.dataset.state = st;
    $('#output-detail-title').textContent = out.title || listed.title || cur.oid;
    setBadge('#output-state', st);
    $('#output-meta').textContent = [
      t('airlock.metaId', { id: cur.oid }),
      author ? t('airlock.metaAuthor', { author }) : null,
      out.staged_at || listed.created_at ? t('airlock.metaStaged', { at: fmtTime(out.staged_at || listed.created_at) }) : null,
      typeof listed.row_count === 'number' ? t('history.rows', { n: fmtNum(listed.row_count) }) : null,
    ].filter(Boolean).join(' · ');
    const known = ['draft', 'submitted', 'changes_requested', 'approved', 'released', 'rejected', 'withdrawn'];
    let guide = '';
    if (st && mine) guide = t('guide.author.' + (known.includes(st) ? st : 'other'));
    else if (st) guide = t('guide.member');
    $('#output-guide').textContent = guide;
    $('#output-guide').hidden = !guide;
    const roundText = roundStatusText(review);
    $('#output-round').textContent = roundText;
    $('#output-round').hidden = !roundText;
    $('#output-sql').textContent = out.sql || '';

    // The context form: editable by the author before submission or after changes were requested.
    const editable = !!review && mine && EDITABLE.includes(st);
    if (fillForm || !editable) fillContextForm(review ? review.context || reviewContext(review) : null);
    for (const id of ['#ctx-description', '#ctx-denominators', '#ctx-method', '#ctx-filters']) $(id).readOnly = !editable;
    $('#ctx-form').classList.toggle('readonly', !editable);
    $('#ctx-save').hidden = !editable;
    $('#ctx-help').hidden = !editable;
    $('#output-submit').hidden = !editable;
    $('#output-withdraw').hidden = !(review && mine && WITHDRAWABLE.includes(st));

    // The release: members download the protected CSV.
    const released = st === 'released';
    $('#output-release').hidden = !released;
    const member = !!(state.project && state.project.my_role);
    const link = $('#output-download');
    link.hidden = !released || !member;
    $('#output-download-note').hidden = !released || member;
    if (released) link.href = outputPath(cur.pid, cur.oid, '/download');
    else link.removeAttribute('href');
    const rel = review && review.release;
    metaList($('#output-release-info'), rel ? [
      [t('release.at'), fmtTime(rel.released_at)],
      [t('release.file'), rel.file_name, 'mono'],
      [t('release.fileSha'), hashCode(rel.file_sha256)],
      [t('release.manifestSha'), hashCode(rel.manifest_sha256)],
    ] : []);
    if (rel && rel.file_name) link.setAttribute('download', rel.file_name);

    renderOutputs();
    renderReport($('#output-report'), cur.report, cur.reportError);
    renderRounds($('#output-votes'), review);
    renderReviewHistory($('#output-history'), review);
  }

  function fillContextForm(ctx) {
    const c = ctx || {};
    $('#ctx-description').value = c.description || '';
    $('#ctx-denominators').value = c.denominators || '';
    $('#ctx-method').value = c.method || '';
    $('#ctx-filters').value = (c.population_filters || []).join('\n');
  }

  function contextFromForm() {
    return {
      description: $('#ctx-description').value,
      denominators: $('#ctx-denominators').value,
      method: $('#ctx-method').value,
      population_filters: $('#ctx-filters').value.split('\n').map((f) => f.trim()).filter(Boolean),
    };
  }

  function contextDiffers(a, b) {
    const x = a || {};
    return ['description', 'denominators', 'method'].some((k) => (x[k] || '') !== (b[k] || '')) ||
      (x.population_filters || []).join('\n') !== b.population_filters.join('\n');
  }

  function setOutputBusy(on) {
    for (const id of ['#ctx-save', '#output-submit', '#output-withdraw']) $(id).disabled = on;
  }

  // PUT .../context; true when saved.
  async function putContext(cur) {
    const review = await api('PUT', outputPath(cur.pid, cur.oid, '/context'), contextFromForm());
    if (state.output === cur && review) cur.review = review;
    return review;
  }

  async function saveContext() {
    const cur = state.output;
    if (!cur) return;
    showError('#output-error', null);
    setOutputBusy(true);
    try {
      await putContext(cur);
      if (state.output !== cur) return;
      setStatus('#ctx-status', t('ctx.saved'));
      renderOutputDetail(true);
      await loadOutputReport(cur); // the population filters feed the differencing check
    } catch (e) {
      if (e.status !== 401 && state.output === cur) showError('#output-error', e.message, e.code);
    } finally {
      setOutputBusy(false);
    }
  }

  // Saves an edited context first, so what is submitted is what the author sees.
  async function submitOutput() {
    const cur = state.output;
    if (!cur || !cur.review) return;
    showError('#output-error', null);
    setStatus('#ctx-status', '');
    setOutputBusy(true);
    try {
      if (contextDiffers(cur.review.context, contextFromForm())) await putContext(cur);
      const review = await api('POST', outputPath(cur.pid, cur.oid, '/submit'));
      if (state.output !== cur) return;
      if (review) cur.review = review;
      setStatus('#output-status', t('airlock.submitted'));
      renderOutputDetail(true);
    } catch (e) {
      if (e.status !== 401 && state.output === cur) {
        showError('#output-error', e.code === 'kura.airlock.refused' ? `${t('airlock.refused')}\n${e.message}` : e.message, e.code);
      }
    } finally {
      setOutputBusy(false);
    }
    if (state.output === cur) await Promise.all([refreshOutputs(), loadOutputReport(cur)]);
  }

  async function withdrawOutput() {
    const cur = state.output;
    if (!cur) return;
    showError('#output-error', null);
    setOutputBusy(true);
    try {
      const review = await api('POST', outputPath(cur.pid, cur.oid, '/withdraw'));
      if (state.output !== cur) return;
      if (review) cur.review = review;
      setStatus('#output-status', t('airlock.withdrawn'));
      renderOutputDetail(true);
    } catch (e) {
      if (e.status !== 401 && state.output === cur) showError('#output-error', e.message, e.code);
    } finally {
      setOutputBusy(false);
    }
    await refreshOutputs();
  }

  // ===================================================================== airlock: the checkers' view

  async function openReviews(target) {
    showView('reviews');
    showError('#reviews-error', null);
    const list = refreshReviews();
    if (!target) {
      state.review = null;
      renderReviewDetail();
      await list;
      return;
    }
    if (!state.review || state.review.pid !== target.pid || state.review.oid !== target.oid) {
      state.review = { pid: target.pid, oid: target.oid, review: null, report: null, reportError: null };
      showError('#review-error', null);
      setStatus('#review-status', '');
      $('#vote-comment').value = '';
      $('#vote-decision').value = 'approve';
    }
    renderReviewDetail();
    await Promise.all([list, loadReview()]);
  }

  async function refreshReviews() {
    try {
      const data = await api('GET', '/api/v1/reviews');
      state.reviews = (data && data.reviews) || [];
      showError('#reviews-error', null);
    } catch (e) {
      if (e.status === 401) return;
      state.reviews = [];
      showError('#reviews-error', e.message, e.code);
    }
    renderReviews();
  }

  function renderReviews() {
    const open = state.review;
    $('#reviews-empty').hidden = state.reviews.length > 0 || !state.session;
    $('#reviews').replaceChildren(...state.reviews.map((r) => {
      const o = r.output || {};
      const selected = !!open && open.oid === o.id && open.pid === o.project;
      const round = r.open_round;
      return el('li', null, el('a', {
        class: 'review-item' + (selected ? ' selected' : ''), href: `#/reviews/${enc(o.project)}/${enc(o.id)}`,
        'data-output-id': o.id, 'data-project-id': o.project, 'data-state': r.state,
        'data-awaiting': round ? round.awaiting : null, 'aria-current': selected ? 'true' : null,
      },
      el('span', { class: 'review-title', text: o.title || o.id }),
      el('span', { class: 'review-line' }, badge(r.state),
        round ? el('span', { class: 'review-awaiting', text: tv('awaiting.', round.awaiting) }) : null,
        round && round.viewer_voted ? el('span', { class: 'badge voted-badge', text: t('reviews.voted') }) : null),
      el('span', { class: 'review-sub muted small', text: t('reviews.item', { project: o.project, author: o.author, at: fmtTime(o.staged_at) }) })));
    }));
  }

  async function loadReview() {
    const cur = state.review;
    if (!cur) return;
    const reviewP = api('GET', outputPath(cur.pid, cur.oid)).then((r) => {
      if (state.review !== cur) return;
      cur.review = r;
      renderReviewDetail();
    }, (e) => {
      if (e.status !== 401 && state.review === cur) showError('#review-error', e.message, e.code);
    });
    const reportP = api('GET', outputPath(cur.pid, cur.oid, '/report')).then((rep) => {
      if (state.review !== cur) return;
      cur.report = rep;
      cur.reportError = null;
    }, (e) => {
      if (e.status === 401 || state.review !== cur) return;
      cur.report = null;
      cur.reportError = reportError(e);
    }).then(() => {
      if (state.review === cur) renderReport($('#review-report'), cur.report, cur.reportError);
    });
    await Promise.all([reviewP, reportP]);
  }

  function renderReviewDetail() {
    const box = $('#review-detail');
    const cur = state.review;
    box.hidden = !cur;
    renderReviews();
    if (!cur) {
      delete box.dataset.outputId;
      delete box.dataset.projectId;
      delete box.dataset.state;
      return;
    }
    const review = cur.review;
    const listed = (state.reviews.find((r) => r.output && r.output.id === cur.oid) || {});
    const out = (review && review.output) || listed.output || {};
    const st = review ? review.state : listed.state;
    box.dataset.outputId = cur.oid;
    box.dataset.projectId = cur.pid;
    if (st) box.dataset.state = st;
    $('#review-title').textContent = out.title || cur.oid;
    setBadge('#review-state', st);
    metaList($('#review-meta'), [
      [t('reviews.project'), el('span', { class: 'mono', text: out.project || cur.pid }), 'review-project'],
      [t('reviews.author'), out.author ? el('span', { class: 'mono', text: out.author }) : null, 'review-author'],
      [t('reviews.staged'), out.staged_at ? fmtTime(out.staged_at) : null],
      [t('reviews.queryId'), out.query_id ? el('code', { text: out.query_id }) : null],
      [t('reviews.outputSha'), out.sha256 ? hashCode(out.sha256) : null],
      [t('reviews.snapshot'), out.snapshot_sha256 ? el('code', { id: 'review-snapshot', class: 'hash', text: out.snapshot_sha256 }) : null],
      [t('release.at'), review && review.release ? fmtTime(review.release.released_at) : null],
      [t('release.file'), review && review.release ? review.release.file_name : null, 'mono'],
    ]);
    $('#review-sql').textContent = out.sql || '';
    renderContext($('#review-context'), review ? reviewContext(review) : null);
    renderReport($('#review-report'), cur.report, cur.reportError);
    const roundText = roundStatusText(review);
    $('#review-round').textContent = roundText || (st ? t('reviews.notOpen', { state: tv('outputStatus.', st) }) : '');
    renderRounds($('#review-votes'), review);
    renderReviewHistory($('#review-history'), review);

    // Only checkers vote, once per round, while it is open. The server decides everything else
    // (an author who is also a checker is refused there, with the reason shown below).
    const open = !!review && st === 'submitted' && !!review.open_round;
    const voted = open && review.open_round.viewer_voted;
    const own = !!out.author && out.author === myId();
    let note = '';
    if (!review) note = '';
    else if (!isChecker()) note = t('vote.notChecker');
    else if (!open) note = st === 'released' ? t('vote.released') : t('vote.closed', { state: tv('outputStatus.', st) });
    else if (voted) note = t('vote.alreadyVoted');
    else if (own) note = t('vote.ownOutput');
    $('#vote-note').textContent = note;
    $('#vote-note').hidden = !note;
    $('#vote-form').hidden = !review || !isChecker() || !open || voted;
  }

  async function submitVote() {
    const cur = state.review;
    if (!cur) return;
    const decision = $('#vote-decision').value;
    const comment = $('#vote-comment').value;
    showError('#review-error', null);
    setStatus('#review-status', '');
    if (decision !== 'approve' && !comment.trim()) {
      showError('#review-error', t('vote.needComment'));
      $('#vote-comment').focus();
      return;
    }
    const button = $('#vote-submit');
    button.disabled = true;
    try {
      const review = await api('POST', outputPath(cur.pid, cur.oid, '/votes'), { decision, comment });
      if (state.review !== cur) return;
      if (review) cur.review = review;
      $('#vote-comment').value = '';
      const st = review && review.state;
      if (st === 'released') setStatus('#review-status', t('vote.doneReleased'));
      else if (st === 'submitted') setStatus('#review-status', t('vote.done'));
      else setStatus('#review-status', t('vote.doneDecided', { state: tv('outputStatus.', st) }));
      renderReviewDetail();
    } catch (e) {
      if (e.status !== 401 && state.review === cur) showError('#review-error', e.message, e.code);
    } finally {
      button.disabled = false;
    }
    if (state.review === cur) await Promise.all([refreshReviews(), loadReview()]);
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

  // ===================================================================== data catalog (every signed-in user)

  // GET /api/v1/catalog and /api/v1/catalog/codes. Rendering records, for every entry, its
  // element and the text the search looks in (both languages), so typing only toggles `hidden`.
  const dataCatalog = { snapshots: null, codes: null, index: [], diseases: [], prefectures: [] };
  const catalogKey = (s) => String(s === null || s === undefined ? '' : s).normalize('NFKC').toLowerCase();
  // A manifest description in the UI's language (the other one when it is missing).
  const catalogText = (o) => (lang === 'ja' ? o.ja || o.en : o.en || o.ja) || '';

  function resetDataCatalog() {
    dataCatalog.snapshots = null;
    dataCatalog.codes = null;
    dataCatalog.index = [];
    dataCatalog.diseases = [];
    dataCatalog.prefectures = [];
    $('#catalog-search').value = '';
    $('#catalog-snapshot-list').replaceChildren();
    $('#catalog-diseases').replaceChildren();
    $('#catalog-prefectures').replaceChildren();
    $('#catalog-matches').textContent = '';
  }

  async function openDataCatalog() {
    showView('catalog');
    showError('#catalog-error', null);
    try {
      const [list, codes] = await Promise.all([api('GET', '/api/v1/catalog'), api('GET', '/api/v1/catalog/codes')]);
      dataCatalog.snapshots = (list && list.snapshots) || [];
      dataCatalog.codes = codes || {};
    } catch (e) {
      if (e.status !== 401) showError('#catalog-error', e.message, e.code);
      return;
    }
    renderDataCatalog();
  }

  function renderDataCatalog() {
    if (!dataCatalog.snapshots) return;
    dataCatalog.index = [];
    $('#catalog-snapshot-list').replaceChildren(...dataCatalog.snapshots.map(renderCatalogSnapshot));
    $('#catalog-none').hidden = dataCatalog.snapshots.length > 0;
    renderCodeLists();
    $('#view-catalog').dataset.loaded = lang;
    filterDataCatalog();
  }

  function renderCatalogSnapshot(s) {
    const entry = { text: catalogKey([s.name, s.policy, s.release_id].join(' ')), el: null, tables: [] };
    const hash = (label, cls, value) => [el('dt', { text: label }),
      el('dd', null, el('code', { class: 'catalog-hash ' + cls, title: value, text: short(value) }))];
    const meta = el('dl', { class: 'meta-list' },
      el('dt', { text: t('catalog.page.built') }), el('dd', { class: 'catalog-built', text: fmtTime(s.built_at) }),
      el('dt', { text: t('catalog.page.release') }), el('dd', { class: 'mono', text: s.release_id }),
      ...hash(t('catalog.page.databaseHash'), 'catalog-db-hash', s.sha256),
      ...hash(t('catalog.page.manifestHash'), 'catalog-manifest-hash', s.manifest_sha256),
      el('dt', { text: t('catalog.page.policy') }), el('dd', { class: 'mono', text: s.policy }));
    const tables = (s.tables || []).map((tb) => {
      const table = { text: catalogKey([tb.name, tb.en, tb.ja].join(' ')), el: null, columns: [] };
      const rounded = typeof tb.rows_rounded === 'number';
      const rows = rounded ? t('catalog.page.rows', { n: fmtNum(tb.rows_rounded) }) : t('catalog.page.rowsFew');
      const body = el('tbody', null, ...(tb.columns || []).map((c) => {
        const tr = el('tr', { class: 'catalog-entry-column', 'data-column': c.name },
          el('td', { class: 'mono', text: c.name }),
          el('td', { class: 'mono', text: c.type }),
          el('td', { class: 'catalog-desc', text: catalogText(c) }));
        table.columns.push({ el: tr, text: catalogKey([c.name, c.type, c.en, c.ja].join(' ')) });
        return tr;
      }));
      const head = el('tr', null, ...['catalog.page.column', 'catalog.page.type', 'catalog.page.description']
        .map((key) => el('th', { scope: 'col', text: t(key) })));
      table.el = el('section', { class: 'catalog-entry-table', 'data-table': tb.name },
        el('h3', null, el('span', { class: 'mono', text: tb.name }), ' ',
          el('span', { class: 'catalog-rows', 'data-rows': tb.rows_text, title: t('catalog.page.roundingNote'), text: rows })),
        el('p', { class: 'catalog-desc catalog-table-desc', text: catalogText(tb) }),
        el('div', { class: 'catalog-scroll' },
          el('table', { class: 'catalog-list-table' }, el('thead', null, head), body)));
      entry.tables.push(table);
      return table.el;
    });
    entry.el = el('section', { class: 'panel catalog-snapshot', 'data-snapshot': s.name },
      el('h2', { text: t('catalog.page.snapshot', { name: s.name }) }), meta, ...tables);
    dataCatalog.index.push(entry);
    return entry.el;
  }

  function renderCodeLists() {
    const codes = dataCatalog.codes || {};
    const regions = new Map((codes.regions || []).map((r) => [r.id, r]));
    // The name in the UI's language first, the other below it.
    const names = (ja, en) => {
      const [first, second] = lang === 'ja' ? [ja, en] : [en || ja, en ? ja : null];
      return el('td', null, el('span', { class: 'code-name', text: first }),
        second ? el('span', { class: 'code-alt muted small', text: second }) : null);
    };
    dataCatalog.diseases = (codes.diseases || []).map((d) => ({
      no: d.no,
      text: catalogKey(`${d.name_ja} ${d.name_en || ''}`),
      el: el('tr', { class: 'code-disease', 'data-no': d.no },
        el('td', { class: 'num', text: String(d.no) }), names(d.name_ja, d.name_en)),
    }));
    dataCatalog.prefectures = (codes.prefectures || []).map((p) => {
      const region = regions.get(p.region) || { ja: p.region, en: p.region };
      return {
        no: Number(p.code),
        text: catalogKey([p.name_ja, p.name_en, region.ja, region.en].join(' ')),
        el: el('tr', { class: 'code-pref', 'data-code': p.code, 'data-region': p.region },
          el('td', { class: 'mono', text: p.code }), names(p.name_ja, p.name_en),
          el('td', { text: catalogText(region) }), el('td', { class: 'num', text: fmtNum(p.population_2020) })),
      };
    });
    $('#catalog-diseases').replaceChildren(...dataCatalog.diseases.map((d) => d.el));
    $('#catalog-prefectures').replaceChildren(...dataCatalog.prefectures.map((p) => p.el));
  }

  // Shows what matches the search box: a table whose name or description matches shows all its
  // columns, otherwise only matching columns; a number matches a disease number or JIS code.
  function filterDataCatalog() {
    const q = catalogKey($('#catalog-search').value.trim());
    const number = /^\d+$/.test(q) ? Number(q) : null;
    const hit = (text) => !q || text.includes(q);
    let shown = 0;
    for (const s of dataCatalog.index) {
      const all = hit(s.text);
      let any = false;
      for (const tb of s.tables) {
        const whole = all || hit(tb.text);
        let columns = 0;
        for (const c of tb.columns) {
          c.el.hidden = !(whole || hit(c.text));
          if (!c.el.hidden) columns += 1;
        }
        tb.el.hidden = !whole && columns === 0;
        if (!tb.el.hidden) {
          any = true;
          shown += 1;
        }
      }
      s.el.hidden = !all && !any;
    }
    for (const [list, panel] of [[dataCatalog.diseases, '#catalog-diseases-panel'], [dataCatalog.prefectures, '#catalog-prefectures-panel']]) {
      let n = 0;
      for (const entry of list) {
        entry.el.hidden = !(hit(entry.text) || entry.no === number);
        if (!entry.el.hidden) n += 1;
      }
      $(panel).hidden = n === 0 && list.length > 0;
      shown += n;
    }
    $('#catalog-matches').textContent = !q ? '' : shown ? t('catalog.page.matches', { n: fmtNum(shown) }) : t('catalog.page.noMatches');
    $('#view-catalog').dataset.query = q;
  }

  // ===================================================================== feasibility explorer (a project's researchers)
  // GET and POST /api/v1/projects/{pid}/explorer (docs/explorer.md): a form of closed lists (no
  // SQL) and three views of perturbed, protected patient counts, each as a chart and as a table.
  // A suppressed cell shows its marker (`<10`, `－`) and is never drawn as a bar or a point, so
  // nothing on the page gives it a size. Each view's protected table can be staged for the airlock.

  // Multiple-choice fields, in the form's order; `ventilator` is one of any / yes / no.
  const EXPLORER_FIELDS = ['diseases', 'severity', 'age_bands', 'sex', 'regions', 'prefectures', 'diagnosis_category',
    'treatments', 'fiscal_years'];
  const EXPLORER_VIEWS = ['by_prefecture', 'by_severity', 'by_institutions'];

  // pid: the project shown; options: the GET answer; sel: field -> Set of String(key);
  // result: the last POST answer; staging: view -> {open, busy, title, output, error}.
  const ex = {
    pid: null, project: null, options: null, error: null, loadToken: null,
    sel: {}, ventilator: '', diseaseQuery: '', diseaseIndex: [],
    running: null, result: null, staging: {},
  };

  function resetExplorer(pid) {
    Object.assign(ex, {
      pid: pid || null, project: null, options: null, error: null, loadToken: null,
      sel: Object.fromEntries(EXPLORER_FIELDS.map((f) => [f, new Set()])), ventilator: '', diseaseQuery: '', diseaseIndex: [],
      running: null, result: null, staging: {},
    });
    showError('#explorer-error', null);
    $('#explorer-fields').replaceChildren();
    $('#explorer-results').replaceChildren();
    $('#explorer-meta').textContent = '';
    $('#explorer-status').textContent = '';
    setExplorerState(null);
  }

  function setExplorerState(st) {
    const view = $('#view-explorer');
    if (st) view.dataset.state = st;
    else delete view.dataset.state;
    $('#explorer-submit').disabled = !ex.options || !!ex.running;
    $('#explorer-results').setAttribute('aria-busy', st === 'running' ? 'true' : 'false');
    const status = { running: t('explorer.running'), shown: t('explorer.shown'), loading: t('explorer.loading') }[st];
    $('#explorer-status').textContent = status || '';
  }

  async function openExplorer(pid) {
    showView('explorer');
    if (ex.pid !== pid) resetExplorer(pid);
    if (ex.options) {
      renderExplorer();
      return;
    }
    const token = {};
    ex.loadToken = token;
    ex.error = null;
    renderExplorer();
    setExplorerState('loading');
    let project = null;
    try {
      // The project only names the page; the explorer's answer decides whether it can be used.
      const [p, options] = await Promise.all([
        api('GET', projectPath(pid)).catch((e) => { if (e.status === 401) throw e; return null; }),
        api('GET', projectPath(pid, '/explorer')),
      ]);
      project = p;
      if (ex.loadToken !== token) return;
      ex.options = options && typeof options === 'object' ? options : { fields: {} };
    } catch (e) {
      if (ex.loadToken !== token || e.status === 401) return;
      ex.error = e;
    }
    ex.project = project;
    renderExplorer();
    setExplorerState(ex.error ? 'error' : 'loaded');
  }

  // A label from the API in the UI's language (the other one when it is missing).
  const exLabel = (o) => (o ? catalogText(o) || String(o.key) : '');
  const exFields = () => (ex.options && ex.options.fields) || {};

  function renderExplorer() {
    if (!ex.pid) return;
    $('#explorer-back').setAttribute('href', '#/projects/' + enc(ex.pid));
    const o = ex.options;
    const title = (ex.project && (ex.project.title || ex.project.id)) || ex.pid;
    const meta = o ? [t('explorer.meta', {
      project: title, snapshot: o.snapshot || '—', hash: short(o.snapshot_sha256),
      pack: o.rule_pack || '—', version: o.rule_pack_version || '',
    })] : [title];
    if (o && typeof o.threshold === 'number') meta.push(t('explorer.threshold', { threshold: fmtNum(o.threshold) }));
    $('#explorer-meta').textContent = meta.join(' ・ ');
    showError('#explorer-error', ex.error ? explorerErrorText(ex.error) : null, ex.error && ex.error.code);
    renderExplorerForm();
    renderExplorerResult();
    $('#explorer-submit').disabled = !ex.options || !!ex.running;
    $('#view-explorer').dataset.lang = lang;
  }

  function explorerErrorText(e) {
    let head = '';
    if (e.code === 'kura.explorer.invalid') head = t('explorer.error.invalid');
    else if (e.code === 'kura.explorer.unavailable') head = t('explorer.error.unavailable');
    return head ? `${head}: ${e.message}` : e.message;
  }

  // ------------------------------------------------------------------ the form

  function renderExplorerForm() {
    const box = $('#explorer-fields');
    box.replaceChildren();
    ex.diseaseIndex = [];
    if (!ex.options) return;
    const f = exFields();
    box.append(
      diseaseField(Array.isArray(f.diseases) ? f.diseases : []),
      choiceField('severity', f.severity),
      choiceField('age_bands', f.age_bands, 'explorer-grid'),
      choiceField('sex', f.sex),
      placeField(Array.isArray(f.regions) ? f.regions : [], Array.isArray(f.prefectures) ? f.prefectures : []),
      choiceField('diagnosis_category', f.diagnosis_category),
      ventilatorField(Array.isArray(f.ventilator) ? f.ventilator : []),
      choiceField('treatments', f.treatments, 'explorer-scroll', [
        el('p', { class: 'help', text: t('explorer.treatmentsHelp') })]),
      choiceField('fiscal_years', f.fiscal_years, 'explorer-grid'));
    filterDiseases();
    renderDiseaseChips();
  }

  // One checkbox; its state lives in ex.sel, so re-rendering (a language change) keeps it.
  function choiceBox(field, o, cls, text) {
    const key = String(o.key);
    const input = el('input', {
      type: 'checkbox', class: 'explorer-choice', name: 'explorer-' + field, value: key, 'data-field': field,
      checked: ex.sel[field].has(key),
    });
    input.addEventListener('change', () => {
      if (input.checked) ex.sel[field].add(key);
      else ex.sel[field].delete(key);
      if (field === 'diseases') {
        renderDiseaseChips();
        filterDiseases();
      }
    });
    return el('label', { class: 'explorer-option' + (cls ? ' ' + cls : ''), 'data-field': field, 'data-key': key },
      input, ' ', text || el('span', { text: exLabel(o) }));
  }

  function fieldset(field, ...children) {
    return el('fieldset', { class: 'explorer-field', 'data-field': field },
      el('legend', { text: t('explorer.field.' + field) }), ...children);
  }

  function choiceField(field, list, cls, extra) {
    const items = Array.isArray(list) ? list : [];
    return fieldset(field, ...(extra || []), items.length
      ? el('div', { class: 'explorer-options' + (cls ? ' ' + cls : '') }, ...items.map((o) => choiceBox(field, o)))
      : el('p', { class: 'muted small', text: field === 'treatments' ? t('explorer.treatmentsNone') : '—' }));
  }

  // 341 diseases: a search box (number or name, either language) over a scrolling list, and the
  // chosen ones as removable chips that stay visible whatever the search shows.
  function diseaseField(list) {
    const search = el('input', {
      id: 'explorer-disease-search', type: 'search', autocomplete: 'off', spellcheck: 'false',
      placeholder: t('explorer.diseaseSearch'), 'aria-controls': 'explorer-disease-list', 'aria-describedby': 'explorer-disease-count',
    });
    search.value = ex.diseaseQuery;
    search.addEventListener('input', () => {
      ex.diseaseQuery = search.value;
      filterDiseases();
    });
    // Enter in the search box must not submit the whole form.
    search.addEventListener('keydown', (e) => { if (e.key === 'Enter') e.preventDefault(); });
    ex.diseaseIndex = list.map((o) => ({
      key: String(o.key),
      text: catalogKey(`${o.ja || ''} ${o.en || ''}`),
      el: choiceBox('diseases', o, 'explorer-disease', el('span', null,
        el('span', { class: 'mono explorer-disease-no', text: String(o.key) }), ' ', el('span', { text: exLabel(o) }))),
    }));
    return fieldset('diseases',
      el('label', { for: 'explorer-disease-search', class: 'visually-hidden', text: t('explorer.diseaseSearchLabel') }),
      search,
      el('div', { id: 'explorer-disease-chosen', class: 'explorer-chips' }),
      el('p', { id: 'explorer-disease-count', class: 'help', role: 'status' }),
      el('div', { id: 'explorer-disease-list', class: 'explorer-options explorer-scroll', role: 'group', 'aria-label': t('explorer.field.diseases') },
        ...ex.diseaseIndex.map((d) => d.el)),
      el('p', { id: 'explorer-disease-nomatch', class: 'muted small', text: t('explorer.diseaseNoMatch'), hidden: true }));
  }

  function filterDiseases() {
    const q = catalogKey(ex.diseaseQuery.trim());
    const number = /^\d+$/.test(q);
    let shown = 0;
    for (const d of ex.diseaseIndex) {
      d.el.hidden = !(!q || (number ? d.key.startsWith(q) : d.text.includes(q)));
      if (!d.el.hidden) shown += 1;
    }
    const count = $('#explorer-disease-count');
    if (!count) return;
    count.textContent = t('explorer.diseaseCount', { shown: fmtNum(shown), chosen: fmtNum(ex.sel.diseases.size) });
    $('#explorer-disease-nomatch').hidden = shown > 0;
    $('#view-explorer').dataset.diseaseQuery = q;
  }

  function renderDiseaseChips() {
    const box = $('#explorer-disease-chosen');
    if (!box) return;
    const chosen = (exFields().diseases || []).filter((o) => ex.sel.diseases.has(String(o.key)));
    box.replaceChildren(...chosen.map((o) => {
      const key = String(o.key);
      const name = `${key} ${exLabel(o)}`;
      return el('button', {
        type: 'button', class: 'secondary small-button explorer-chip', 'data-key': key, title: t('explorer.removeChoice', { name }),
        onclick: () => {
          ex.sel.diseases.delete(key);
          const d = ex.diseaseIndex.find((x) => x.key === key);
          if (d) d.el.querySelector('input').checked = false;
          renderDiseaseChips();
          filterDiseases();
        },
      }, name, ' ×');
    }));
    if (!chosen.length) box.append(el('span', { class: 'muted small', text: t('explorer.diseaseNone') }));
  }

  // Regions, each with its prefectures; the server unites the two lists.
  function placeField(regions, prefs) {
    const known = new Set(regions.map((r) => String(r.key)));
    const groups = regions.map((r) => el('div', { class: 'explorer-region', 'data-region': String(r.key) },
      choiceBox('regions', r, 'explorer-region-choice', el('span', { text: t('explorer.regionChoice', { name: exLabel(r) }) })),
      el('div', { class: 'explorer-prefs' }, ...prefs.filter((p) => String(p.region) === String(r.key)).map((p) => choiceBox('prefectures', p)))));
    const rest = prefs.filter((p) => !known.has(String(p.region)));
    if (rest.length) groups.push(el('div', { class: 'explorer-prefs' }, ...rest.map((p) => choiceBox('prefectures', p))));
    return fieldset('place', el('p', { class: 'help', text: t('explorer.placeHelp') }), ...groups);
  }

  function ventilatorField(list) {
    const choices = [{ value: '', text: t('explorer.ventilator.any') }, ...list.map((o) => ({ value: String(o.key), text: exLabel(o) }))];
    return fieldset('ventilator', el('div', { class: 'explorer-options' }, ...choices.map((c) => {
      const input = el('input', { type: 'radio', name: 'explorer-ventilator', class: 'explorer-ventilator', value: c.value, checked: ex.ventilator === c.value });
      input.addEventListener('change', () => { if (input.checked) ex.ventilator = c.value; });
      return el('label', { class: 'explorer-option', 'data-field': 'ventilator', 'data-key': c.value }, input, ' ', el('span', { text: c.text }));
    })));
  }

  function resetExplorerForm() {
    for (const f of EXPLORER_FIELDS) ex.sel[f].clear();
    ex.ventilator = '';
    ex.diseaseQuery = '';
    renderExplorerForm();
  }

  // The request: the API's own keys in its order and with its JSON types (numbers stay numbers).
  function explorerRequest() {
    const body = {};
    const fields = exFields();
    for (const f of EXPLORER_FIELDS) {
      if (!ex.sel[f].size) continue;
      body[f] = (fields[f] || []).filter((o) => ex.sel[f].has(String(o.key))).map((o) => o.key);
    }
    const vent = (fields.ventilator || []).find((o) => String(o.key) === ex.ventilator);
    if (ex.ventilator && vent) body.ventilator = vent.key;
    return body;
  }

  async function runExplorer(ev) {
    if (ev) ev.preventDefault();
    if (!ex.options || ex.running || !ex.pid) return;
    const pid = ex.pid;
    const token = {};
    ex.running = token;
    ex.result = null;
    ex.error = null;
    ex.staging = {};
    showError('#explorer-error', null);
    setExplorerState('running');
    renderExplorerResult();
    try {
      const r = await api('POST', projectPath(pid, '/explorer'), explorerRequest());
      if (ex.running !== token) return;
      ex.result = r && typeof r === 'object' ? r : null;
    } catch (e) {
      if (ex.running !== token || e.status === 401) return;
      ex.error = e;
    }
    ex.running = null;
    renderExplorer();
    setExplorerState(ex.error ? 'error' : ex.result ? 'shown' : 'loaded');
  }

  // ------------------------------------------------------------------ the results

  const isSuppressed = (c) => !!c && typeof c === 'object' && c.suppressed === true;
  const isPublished = (c) => !!c && typeof c === 'object' && !isSuppressed(c) && typeof c.value === 'number';
  const seriesOf = (v) => (Array.isArray(v.series) ? v.series : []).map((s) => ({
    key: String((s.label && s.label.key) || ''), label: exLabel(s.label), values: Array.isArray(s.values) ? s.values : [], total: s.total || null,
  }));

  function suppressedTitle(marker) {
    return String(marker).startsWith('<') ? t('explorer.suppressedLt', { marker }) : t('explorer.suppressedOther', { marker });
  }

  function renderExplorerResult() {
    const box = $('#explorer-results');
    box.replaceChildren();
    const res = ex.result;
    const r = res && res.result;
    if (ex.running) {
      box.append(el('p', { class: 'running', text: t('explorer.running') }));
      return;
    }
    if (!r || typeof r !== 'object') {
      if (ex.options) box.append(el('p', { class: 'muted', text: t('explorer.noResult') }));
      return;
    }
    box.append(
      el('p', { id: 'explorer-summary', class: 'explorer-summary' }, t('explorer.result.summary', {
        pack: r.rule_pack || '—', version: r.rule_pack_version || '', id: short(res.id), ms: fmtNum(res.duration_ms),
      })),
      appliedFilters(r.filters),
      ...EXPLORER_VIEWS.filter((v) => r[v] && typeof r[v] === 'object').map((v) => renderExplorerView(v, r[v])),
      el('section', { id: 'explorer-method', class: 'note explorer-method' },
        el('h3', { text: t('explorer.method.heading') }),
        el('p', { text: t('explorer.method.text', { pack: r.rule_pack || '—', marker: (ex.options && ex.options.marker) || '－' }) }),
        r.method ? el('details', null, el('summary', { text: t('explorer.method.server') }),
          el('p', { class: 'explorer-method-server', lang: 'en', text: String(r.method) })) : null));
  }

  // The canonical filters the server applied, with the form's labels.
  function appliedFilters(filters) {
    const f = filters && typeof filters === 'object' ? filters : {};
    const fields = exFields();
    const name = (field, v) => exLabel((fields[field] || []).find((o) => String(o.key) === String(v))) || String(v);
    const dl = el('dl', { class: 'meta-list explorer-filters' });
    for (const field of ['diseases', 'severity', 'age_bands', 'sex', 'regions', 'prefectures', 'diagnosis_category', 'treatments', 'fiscal_years']) {
      const values = Array.isArray(f[field]) ? f[field] : [];
      if (!values.length) continue;
      const text = values.map((v) => (field === 'diseases' ? `${v} ${name(field, v)}` : name(field, v))).join('、');
      dl.append(el('dt', { text: t('explorer.field.' + field) }), el('dd', { 'data-field': field, text }));
    }
    if (typeof f.ventilator === 'boolean') {
      dl.append(el('dt', { text: t('explorer.field.ventilator') }), el('dd', { 'data-field': 'ventilator', text: name('ventilator', f.ventilator) }));
    }
    return el('section', { class: 'explorer-applied' }, el('h3', { text: t('explorer.result.filters') }),
      dl.childElementCount ? dl : el('p', { class: 'muted small', text: t('explorer.result.noFilters') }));
  }

  function renderExplorerView(name, v) {
    const title = t('explorer.view.' + name);
    const x = (Array.isArray(v.x) ? v.x : []).map((c) => ({ key: String(c.key), label: exLabel(c) }));
    const series = seriesOf(v);
    const counted = series.reduce((a, s) => a + s.values.filter(isSuppressed).length + (isSuppressed(s.total) ? 1 : 0), 0);
    const n = typeof v.suppressed_cells === 'number' ? v.suppressed_cells : counted;
    const chart = el('figure', { class: 'explorer-chart', 'data-view': name });
    if (name === 'by_severity') lineChart(chart, title, x, series);
    else hbarChart(chart, title, x, series);
    return el('section', {
      class: 'panel explorer-view', 'data-view': name, 'data-query-id': v.query_id || null, 'data-suppressed-cells': n,
      'aria-labelledby': `explorer-${name}-heading`,
    },
    el('div', { class: 'detail-head' },
      el('h3', { id: `explorer-${name}-heading`, text: title }),
      el('span', { class: 'badge explorer-suppressed-count', 'data-view': name, 'data-count': n, text: t('explorer.suppressedCells', { n: fmtNum(n) }) })),
    el('div', { class: 'explorer-view-grid' + (series.length > 2 ? ' explorer-view-stacked' : '') }, chart,
      el('div', { class: 'table-wrap explorer-table-wrap' }, explorerTable(name, title, x, series))),
    stageBlock(name, v, title));
  }

  function shownCell(c, xKey, sKey) {
    const at = { 'data-x': xKey, 'data-series': sKey };
    if (isSuppressed(c)) {
      const marker = String(c.display || '');
      return el('td', { ...at, class: 'num cell-suppressed', 'data-suppressed': 'true', title: suppressedTitle(marker) }, marker);
    }
    if (isPublished(c)) return el('td', { ...at, class: 'num', 'data-suppressed': 'false', 'data-value': c.value }, fmtNum(c.value));
    return el('td', { ...at, class: 'num' }, '—');
  }

  // One row per category, one column per series, and the totals last.
  function explorerTable(name, title, x, series) {
    const head = el('tr', null, el('th', { scope: 'col', text: t('explorer.dim.' + name) }),
      ...series.map((s) => el('th', { scope: 'col', class: 'num', 'data-series': s.key, text: s.label })));
    const rows = x.map((c, i) => el('tr', { 'data-x': c.key },
      el('th', { scope: 'row', text: c.label }), ...series.map((s) => shownCell(s.values[i], c.key, s.key))));
    if (series.some((s) => s.total)) {
      rows.push(el('tr', { class: 'explorer-total-row', 'data-x': 'total' }, el('th', { scope: 'row', text: t('explorer.total') }),
        ...series.map((s) => (s.total ? shownCell(s.total, 'total', s.key) : el('td', { class: 'num', 'data-x': 'total', 'data-series': s.key })))));
    }
    return el('table', { class: 'result-table explorer-table', 'data-view': name },
      el('caption', { class: 'visually-hidden', text: t('explorer.tableCaption', { view: title }) }),
      el('thead', null, head), el('tbody', null, ...rows));
  }

  function chartTicks(max) {
    const mid = Math.round(max / 2);
    return mid > 0 && mid < max ? [0, mid, max] : [0, max];
  }

  function chartLegend(series, lines) {
    return el('ul', { class: 'chart-legend' }, ...series.map((s, k) => el('li', { 'data-series': s.key },
      el('span', { class: `legend-swatch series-${k % 8}` + (lines && s.key === 'TOTAL' ? ' legend-total' : '') }), ' ', s.label)));
  }

  // Horizontal bars, one row per category: a published cell is a rect whose length is its value
  // (0 included), a suppressed one only its marker at the axis.
  function hbarChart(box, title, x, series) {
    const barH = 14;
    const rowH = Math.max(19, barH * series.length + 5);
    const W = 560; const left = 112; const right = 60; const top = 8; const bottom = 26;
    const H = top + bottom + rowH * Math.max(x.length, 1);
    const plotW = W - left - right;
    const max = Math.max(1, ...series.flatMap((s) => s.values.filter(isPublished).map((c) => c.value)));
    const xx = (v) => left + (v / max) * plotW;
    const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg explorer-svg', role: 'img', 'aria-label': title });
    chart.append(svg('title', null, title));
    for (const v of chartTicks(max)) {
      chart.append(svg('line', { x1: xx(v).toFixed(2), x2: xx(v).toFixed(2), y1: top, y2: H - bottom, class: 'chart-grid' }),
        svg('text', { x: xx(v).toFixed(2), y: H - 8, class: 'chart-label chart-label-x' }, fmtNum(v)));
    }
    x.forEach((c, i) => {
      const y0 = top + i * rowH;
      chart.append(svg('text', { x: left - 6, y: (y0 + rowH / 2 + 4).toFixed(2), class: 'explorer-axis-label' }, c.label));
      series.forEach((s, k) => {
        const cell = s.values[i];
        const y = y0 + (rowH - barH * series.length) / 2 + k * barH;
        if (isPublished(cell)) {
          chart.append(svg('rect', {
            x: left, y: y.toFixed(2), width: (xx(cell.value) - left).toFixed(2), height: barH - 2,
            class: `chart-bar series-${k % 8} explorer-bar`, 'data-x': c.key, 'data-series': s.key, 'data-value': cell.value,
          }, svg('title', null, `${c.label} · ${s.label}: ${fmtNum(cell.value)}`)));
          chart.append(svg('text', { x: (xx(cell.value) + 4).toFixed(2), y: (y + barH - 3).toFixed(2), class: 'explorer-bar-value' }, fmtNum(cell.value)));
        } else if (isSuppressed(cell)) {
          chart.append(svg('text', {
            x: left + 4, y: (y + barH - 3).toFixed(2), class: 'explorer-bar-suppressed', 'data-x': c.key, 'data-series': s.key,
          }, String(cell.display || ''), svg('title', null, `${c.label} · ${s.label}: ${suppressedTitle(cell.display || '')}`)));
        }
      });
    });
    chart.append(svg('line', { x1: left, x2: left, y1: top, y2: H - bottom, class: 'chart-axis' }));
    const marker = (ex.options && ex.options.marker) || '－';
    box.replaceChildren(chart, series.length > 1 ? chartLegend(series, false) : '',
      el('figcaption', { class: 'help', text: t('explorer.chartBars', { marker }) }));
  }

  // One line per series over the categories; a suppressed point breaks its line (a gap, not 0).
  function lineChart(box, title, x, series) {
    const W = 640; const H = 280; const left = 56; const right = 44; const top = 14; const bottom = 30;
    const plotW = W - left - right; const plotH = H - top - bottom;
    const n = x.length;
    const max = Math.max(1, ...series.flatMap((s) => s.values.filter(isPublished).map((c) => c.value)));
    const xx = (i) => (n <= 1 ? left + plotW / 2 : left + (i * plotW) / (n - 1));
    const yy = (v) => top + plotH - (v / max) * plotH;
    const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg explorer-svg', role: 'img', 'aria-label': title });
    chart.append(svg('title', null, title));
    for (const v of chartTicks(max)) {
      chart.append(svg('line', { x1: left, x2: W - right, y1: yy(v).toFixed(2), y2: yy(v).toFixed(2), class: 'chart-grid' }),
        svg('text', { x: left - 4, y: (yy(v) + 4).toFixed(2), class: 'chart-label chart-label-y' }, fmtNum(v)));
    }
    const step = Math.max(1, Math.ceil(n / 8));
    x.forEach((c, i) => {
      if (i % step === 0) chart.append(svg('text', { x: xx(i).toFixed(2), y: H - 9, class: 'chart-label chart-label-x' }, c.label));
    });
    chart.append(svg('line', { x1: left, x2: W - right, y1: yy(0), y2: yy(0), class: 'chart-axis' }));
    series.forEach((s, k) => {
      const runs = [];
      let run = [];
      x.forEach((c, i) => {
        const cell = s.values[i];
        if (isPublished(cell)) run.push([xx(i), yy(cell.value)]);
        else if (run.length) {
          runs.push(run);
          run = [];
        }
      });
      if (run.length) runs.push(run);
      const d = runs.filter((r) => r.length > 1)
        .map((r) => r.map(([px, py], j) => `${j ? 'L' : 'M'}${px.toFixed(2)},${py.toFixed(2)}`).join(' ')).join(' ');
      const cls = `series-${k % 8}` + (s.key === 'TOTAL' ? ' explorer-line-total' : '');
      if (d) chart.append(svg('path', { d, class: `chart-line explorer-line ${cls}`, 'data-series': s.key }));
      x.forEach((c, i) => {
        const cell = s.values[i];
        if (!isPublished(cell)) return;
        chart.append(svg('circle', {
          cx: xx(i).toFixed(2), cy: yy(cell.value).toFixed(2), r: 3.5, class: `chart-point explorer-point ${cls}`,
          'data-x': c.key, 'data-series': s.key, 'data-value': cell.value,
        }, svg('title', null, `${c.label} · ${s.label}: ${fmtNum(cell.value)}`)));
      });
    });
    box.replaceChildren(chart, chartLegend(series, true), el('figcaption', { class: 'help', text: t('explorer.chartGap') }));
  }

  // ------------------------------------------------------------------ staging a view

  function stageBlock(name, v, title) {
    const st = ex.staging[name] || {};
    const can = typeof v.query_id === 'string' && v.query_id !== '';
    const inputId = `explorer-stage-title-${name}`;
    const input = el('input', { id: inputId, type: 'text', maxlength: '200', class: 'explorer-stage-title', 'data-view': name });
    input.value = st.title !== undefined ? st.title : title;
    input.addEventListener('input', () => { (ex.staging[name] = ex.staging[name] || {}).title = input.value; });
    const form = el('form', { class: 'explorer-stage-form', 'data-view': name, hidden: !st.open, novalidate: true },
      el('label', { for: inputId, text: t('explorer.stage.title') }), input,
      el('div', { class: 'detail-actions' },
        el('button', { type: 'submit', class: 'primary explorer-stage-submit', 'data-view': name, disabled: !!st.busy, text: t('explorer.stage.submit') }),
        el('button', {
          type: 'button', class: 'secondary explorer-stage-cancel', 'data-view': name, text: t('explorer.stage.cancel'),
          onclick: () => {
            Object.assign(ex.staging[name] = ex.staging[name] || {}, { open: false, error: null });
            renderExplorerResult();
          },
        })));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      stageView(name);
    });
    const status = el('p', {
      class: 'form-status explorer-stage-status', role: 'status', 'data-view': name,
      'data-output-id': st.output ? st.output.id : null, 'data-status': st.output ? st.output.status : null,
    });
    if (st.output) {
      status.append(t('explorer.stage.done', { id: st.output.id, status: tv('outputStatus.', st.output.status) }), ' ',
        el('a', { class: 'explorer-stage-link', href: '#/projects/' + enc(ex.pid), text: t('explorer.stage.openWorkspace') }));
    } else if (st.error) {
      status.classList.add('error-text');
      status.append(st.error.message || '');
      if (st.error.code) status.append(' ', el('small', { class: 'error-code', text: st.error.code }));
    } else if (!can) {
      status.append(t('explorer.stage.unavailable'));
    }
    const open = el('button', {
      type: 'button', class: 'secondary explorer-stage-open', 'data-view': name, disabled: !can || !!st.open || !!st.busy,
      text: t('explorer.stage.open'),
      onclick: () => {
        Object.assign(ex.staging[name] = ex.staging[name] || {}, { open: true, error: null });
        renderExplorerResult();
        const again = document.getElementById(inputId);
        if (again) again.focus();
      },
    });
    return el('div', { class: 'explorer-stage', 'data-view': name },
      el('div', { class: 'detail-actions' }, open, el('span', { class: 'help', text: t('explorer.stage.help') })), form, status);
  }

  async function stageView(name) {
    const res = ex.result;
    const v = res && res.result && res.result[name];
    if (!v || !v.query_id || !ex.pid) return;
    const st = ex.staging[name] = ex.staging[name] || {};
    const title = (st.title !== undefined ? st.title : t('explorer.view.' + name)).trim();
    if (!title) {
      st.error = { message: t('explorer.stage.needTitle') };
      renderExplorerResult();
      return;
    }
    const pid = ex.pid;
    st.busy = true;
    st.error = null;
    renderExplorerResult();
    try {
      const o = await api('POST', projectPath(pid, '/outputs'), { query_id: v.query_id, title });
      if (ex.result !== res) return;
      st.output = o && typeof o === 'object' ? o : { id: '—', status: 'draft' };
      st.open = false;
    } catch (e) {
      if (e.status === 401 || ex.result !== res) return;
      st.error = e;
    } finally {
      st.busy = false;
    }
    if (ex.result === res) renderExplorerResult();
  }

  // ===================================================================== supervisor console (supervisors, stewards; read-only)
  // The audit log browser, one entry with its inclusion proof, the latest checkpoint, "verify
  // now", and the usage dashboard: charts are SVG built element by element (no library, no
  // inline styles: colours come from classes) and each chart has the same numbers as a table.

  const AUDIT_TYPES = ['signin', 'signin.failed', 'signout', 'query.submitted', 'query.completed', 'query.refused',
    'result.viewed', 'output.staged', 'export.requested', 'review.decision', 'output.released', 'output.downloaded',
    'admin.action', 'access.denied', 'snapshot.built', 'operator.note', 'audit.verified', 'explorer.run'];
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const AUDIT_PAGE = 100;

  // entries: the list shown; filter: the query of its first page; detail: {index, data, error};
  // checkpoint, verify, usage: the last answers of those endpoints.
  const cons = { entries: [], matched: 0, nextBefore: null, filter: {}, detail: null, checkpoint: null, verify: null, usage: null };

  function resetConsole() {
    Object.assign(cons, { entries: [], matched: 0, nextBefore: null, filter: {}, detail: null, checkpoint: null, verify: null, usage: null });
    $('#audit-filter').reset();
    renderConsole();
  }

  function renderConsole() {
    renderAuditEntries();
    renderEntryDetail();
    renderCheckpoint();
    renderVerify();
    renderUsage();
  }

  async function openConsole() {
    showView('console');
    showError('#console-error', null);
    if (!isAdmin()) {
      showError('#console-error', t('console.notAllowed'));
      return;
    }
    await Promise.all([searchAudit(false), loadCheckpoint(), loadUsage()]);
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) e.setAttribute(k, String(v));
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  // ------------------------------------------------------------------ audit log browser

  function auditFilter() {
    const f = {};
    for (const [name, id] of [['actor', '#audit-filter-actor'], ['project', '#audit-filter-project'], ['type', '#audit-filter-type']]) {
      const v = $(id).value.trim();
      if (v) f[name] = v;
    }
    for (const [name, id] of [['since', '#audit-filter-since'], ['until', '#audit-filter-until']]) {
      const v = $(id).value;
      const d = v ? new Date(v) : null;
      if (d && !Number.isNaN(d.getTime())) f[name] = d.toISOString();
    }
    return f;
  }

  async function searchAudit(more) {
    if (!more) cons.filter = auditFilter();
    const params = new URLSearchParams(cons.filter);
    params.set('limit', String(AUDIT_PAGE));
    if (more && cons.nextBefore !== null) params.set('before', String(cons.nextBefore));
    showError('#console-error', null);
    const button = $('#audit-search');
    button.disabled = true;
    try {
      const data = await api('GET', '/api/v1/audit/entries?' + params.toString());
      const entries = (data && data.entries) || [];
      cons.entries = more ? cons.entries.concat(entries) : entries;
      if (!more) cons.matched = (data && data.matched) || 0;
      cons.nextBefore = data && data.next_before !== undefined ? data.next_before : null;
    } catch (e) {
      if (e.status !== 401) showError('#console-error', e.message, e.code);
    } finally {
      button.disabled = false;
    }
    renderAuditEntries();
  }

  // One line about what an entry says, from the payload fields most types carry.
  function payloadSummary(e) {
    if (e.payload_sealed) return t('console.entry.sealedShort');
    const p = e.payload;
    if (p === null || p === undefined) return e.payload_erased ? t('console.entry.erasedShort') : '';
    if (typeof p !== 'object') return String(p);
    const parts = [];
    for (const k of ['action', 'decision', 'phase', 'status', 'result', 'rule', 'reason', 'method', 'rows', 'intact']) {
      if (p[k] !== undefined && p[k] !== null && typeof p[k] !== 'object') parts.push(`${k}: ${p[k]}`);
    }
    if (typeof p.sql === 'string') parts.push(firstLine(p.sql));
    const s = parts.join(' · ');
    return s.length > 200 ? s.slice(0, 200) + '…' : s;
  }

  function renderAuditEntries() {
    const shown = cons.entries.length;
    $('#audit-count').textContent = state.session && isAdmin()
      ? t('console.audit.count', { shown: fmtNum(shown), matched: fmtNum(cons.matched) }) : '';
    const open = cons.detail && cons.detail.index;
    $('#audit-entries').replaceChildren(...cons.entries.map((e) => el('li', {
      class: 'audit-entry' + (e.index === open ? ' selected' : ''), 'data-index': e.index, 'data-type': e.type,
    }, el('button', { type: 'button', class: 'audit-entry-open', onclick: () => openEntry(e.index) },
      el('span', { class: 'audit-index mono', text: '#' + e.index }),
      el('span', { class: 'audit-time', text: fmtTime(e.timestamp) }),
      el('span', { class: 'audit-type mono', text: e.type }),
      el('span', { class: 'audit-actor', text: e.actor }),
      e.project ? el('span', { class: 'audit-project mono', text: e.project }) : null,
      el('span', { class: 'audit-summary', text: payloadSummary(e) })))));
    $('#audit-more').hidden = cons.nextBefore === null || cons.nextBefore === undefined;
  }

  // Opens one entry; a proof the next checkpoint will cover is fetched again a few times.
  async function openEntry(index, attempt = 0) {
    const cur = attempt && cons.detail && cons.detail.index === index ? cons.detail : { index, data: null, error: null };
    cons.detail = cur;
    if (!attempt) {
      renderEntryDetail();
      renderAuditEntries();
    }
    try {
      cur.data = await api('GET', `/api/v1/audit/entries/${enc(index)}`);
      cur.error = null;
    } catch (e) {
      if (e.status === 401) return;
      cur.error = e;
    }
    if (cons.detail !== cur) return;
    renderEntryDetail();
    if (!attempt) $('#audit-entry-detail').focus();
    const pending = cur.data && cur.data.proof && cur.data.proof.valid === null;
    if (pending && attempt < 5) setTimeout(() => { if (cons.detail === cur) openEntry(index, attempt + 1); }, 1200);
  }

  function closeEntry() {
    cons.detail = null;
    renderEntryDetail();
    renderAuditEntries();
  }

  function renderEntryDetail() {
    const box = $('#audit-entry-detail');
    const cur = cons.detail;
    box.hidden = !cur;
    if (!cur) {
      delete box.dataset.index;
      delete box.dataset.proof;
      return;
    }
    box.dataset.index = cur.index;
    $('#audit-entry-title').textContent = t('console.entry.title', { index: cur.index });
    showError('#audit-entry-error', cur.error && cur.error.message, cur.error && cur.error.code);
    const d = cur.data;
    const e = d && d.entry;
    const meta = $('#audit-entry-meta');
    meta.replaceChildren();
    if (e) {
      const row = (label, value, cls) => meta.append(el('dt', { text: label }), el('dd', { class: cls, text: value === null || value === undefined || value === '' ? '—' : String(value) }));
      row(t('console.entry.time'), fmtTime(e.timestamp));
      row(t('console.entry.type'), e.type, 'mono');
      row(t('console.entry.actor'), e.actor, 'mono');
      row(t('console.entry.session'), e.session ? short(e.session) : null, 'mono');
      row(t('console.entry.project'), e.project, 'mono');
      row(t('console.entry.objects'), (e.objects || []).join(', '), 'mono');
      row(t('console.entry.leafHash'), e.leaf_hash, 'mono hash');
    }
    let payload = '';
    if (e) {
      if (e.payload_sealed) payload = t('console.entry.sealed');
      else if (e.payload_erased) payload = t('console.entry.erased');
      else payload = JSON.stringify(e.payload, null, 2);
    }
    $('#audit-entry-payload').textContent = payload;
    const proof = d && d.proof;
    const status = $('#audit-entry-proof-status');
    let kind = '';
    let text = d ? '' : t('console.loading');
    if (proof && proof.valid === true) {
      kind = 'valid';
      text = t('console.entry.proofValid', { size: fmtNum(proof.checkpoint_size) });
    } else if (proof && proof.valid === false) {
      kind = 'invalid';
      text = t('console.entry.proofInvalid', { error: proof.error || '' });
    } else if (proof) {
      kind = 'pending';
      text = t('console.entry.proofPending');
    }
    status.textContent = text;
    status.className = 'proof-status' + (kind ? ' proof-' + kind : '');
    if (kind) box.dataset.proof = kind;
    else delete box.dataset.proof;
    $('#audit-entry-proof').textContent = (d && d.receipt) || '';
    $('#audit-entry-proof').hidden = !(d && d.receipt);
  }

  // ------------------------------------------------------------------ checkpoint and verification

  async function loadCheckpoint() {
    try {
      cons.checkpoint = await api('GET', '/api/v1/audit/checkpoint');
    } catch (e) {
      if (e.status !== 401) showError('#console-error', e.message, e.code);
    }
    renderCheckpoint();
  }

  function renderCheckpoint() {
    const box = $('#audit-checkpoint');
    const c = cons.checkpoint;
    if (!c) {
      box.replaceChildren();
      delete box.dataset.size;
      return;
    }
    const cp = c.checkpoint;
    box.dataset.size = cp ? cp.size : 0;
    box.replaceChildren(
      el('p', { class: 'small', text: cp ? t('console.checkpoint.size', { size: fmtNum(cp.size), entries: fmtNum(c.entries) }) : t('console.checkpoint.none') }),
      cp ? el('pre', { class: 'sql-block mono checkpoint-note', text: cp.note }) : null,
      el('p', { class: 'help', text: t('console.checkpoint.key') }),
      el('code', { class: 'verifier-key', text: c.verifier_key || '' }));
  }

  async function runVerify() {
    const button = $('#audit-verify');
    const box = $('#audit-verify-result');
    button.disabled = true;
    cons.verify = null;
    box.hidden = false;
    delete box.dataset.intact;
    box.className = 'verify-result';
    box.setAttribute('aria-busy', 'true');
    box.replaceChildren(el('span', { class: 'running', text: t('console.verify.running') }));
    try {
      cons.verify = await api('POST', '/api/v1/audit/verify');
      renderVerify();
    } catch (e) {
      if (e.status !== 401) box.replaceChildren(el('span', { class: 'error-message', text: e.message }), ' ', el('small', { class: 'error-code', text: e.code }));
    } finally {
      button.disabled = false;
      box.setAttribute('aria-busy', 'false');
    }
    await loadCheckpoint();
  }

  function renderVerify() {
    const box = $('#audit-verify-result');
    const r = cons.verify;
    if (!r) {
      if (box.getAttribute('aria-busy') !== 'true') box.hidden = true;
      return;
    }
    box.hidden = false;
    box.dataset.intact = r.intact ? 'true' : 'false';
    box.className = 'verify-result ' + (r.intact ? 'verify-ok' : 'verify-bad');
    const parts = [
      el('strong', { class: 'verify-verdict', text: r.intact ? t('console.verify.intact') : t('console.verify.tampered') }),
      el('p', { text: t('console.verify.stats', { entries: fmtNum(r.entries), checkpoints: fmtNum(r.checkpoints), ms: fmtNum(r.duration_ms) }) }),
    ];
    if (r.problem) {
      parts.push(el('p', { class: 'verify-problem', text: t('console.verify.problem', { index: r.problem.index, what: r.problem.what }) }),
        el('button', { type: 'button', class: 'secondary small-button', text: t('console.verify.openProblem'), onclick: () => openEntry(r.problem.index) }));
    }
    if (r.conflict) parts.push(el('p', { class: 'verify-problem', text: r.conflict.what }));
    parts.push(el('p', { class: 'help', text: t('console.verify.at', { time: fmtTime(r.verified_at) }) }));
    box.replaceChildren(...parts);
  }

  // ------------------------------------------------------------------ usage dashboard

  async function loadUsage() {
    const days = $('#usage-days').value || '30';
    setStatus('#usage-status', t('console.loading'));
    try {
      cons.usage = await api('GET', '/api/v1/audit/usage?days=' + enc(days));
      setStatus('#usage-status', '');
    } catch (e) {
      if (e.status !== 401) setStatus('#usage-status', e.message, true, e.code);
    }
    renderUsage();
  }

  const sum = (obj) => Object.values(obj || {}).reduce((a, b) => a + b, 0);
  const hours = (s) => (typeof s === 'number' ? Math.round((s / 3600) * 10) / 10 : null);
  const fmtHours = (s) => (typeof s === 'number' ? t('console.hours', { h: (Math.round((s / 3600) * 10) / 10).toLocaleString(locale()) }) : '—');

  // A bar chart of one value per day and series, stacked or side by side.
  // series: [{label, values: [number|null per day]}]; the legend and every bar's title say what it is.
  function barChart(box, title, dates, series, stacked) {
    const W = 480; const H = 200; const left = 44; const right = 24; const top = 12; const bottom = 26;
    const plotW = W - left - right; const plotH = H - top - bottom;
    const n = Math.max(dates.length, 1);
    const totals = dates.map((_, i) => (stacked
      ? series.reduce((a, s) => a + (s.values[i] || 0), 0)
      : Math.max(0, ...series.map((s) => s.values[i] || 0))));
    const max = Math.max(1, ...totals);
    const y = (v) => top + plotH - (v / max) * plotH;
    const band = plotW / n;
    const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': title });
    chart.append(svg('title', null, title));
    // Counts get whole-number ticks; hours may be fractional.
    const whole = series.every((s) => s.values.every((v) => v === null || v === undefined || Number.isInteger(v)));
    const mid = whole ? Math.round(max / 2) : max / 2;
    const ticks = mid > 0 && mid < max ? [0, mid, max] : [0, max];
    for (const v of ticks) {
      const yy = y(v);
      chart.append(svg('line', { x1: left, x2: W - right, y1: yy, y2: yy, class: 'chart-grid' }),
        svg('text', { x: left - 4, y: yy + 4, class: 'chart-label chart-label-y' }, (Math.round(v * 10) / 10).toLocaleString(locale())));
    }
    const step = Math.max(1, Math.ceil(n / 6));
    dates.forEach((date, i) => {
      const x0 = left + i * band;
      let base = 0;
      series.forEach((s, k) => {
        const v = s.values[i] || 0;
        if (!v) return;
        const w = stacked ? Math.max(band * 0.7, 1) : Math.max((band * 0.8) / series.length, 1);
        const x = stacked ? x0 + band * 0.15 : x0 + band * 0.1 + k * w;
        const yTop = y(stacked ? base + v : v);
        const yBottom = y(stacked ? base : 0);
        chart.append(svg('rect', { x: x.toFixed(2), y: yTop.toFixed(2), width: w.toFixed(2), height: Math.max(yBottom - yTop, 0.5).toFixed(2), class: `chart-bar series-${k % 8}`, 'data-date': date, 'data-series': s.label },
          svg('title', null, `${date} · ${s.label}: ${v.toLocaleString(locale())}`)));
        if (stacked) base += v;
      });
      if (i % step === 0) chart.append(svg('text', { x: (x0 + band / 2).toFixed(2), y: H - 8, class: 'chart-label chart-label-x' }, date.slice(5)));
    });
    chart.append(svg('line', { x1: left, x2: W - right, y1: y(0), y2: y(0), class: 'chart-axis' }));
    const legend = el('ul', { class: 'chart-legend' }, ...series.map((s, k) => el('li', null,
      el('span', { class: `legend-swatch series-${k % 8}` }), ' ', s.label)));
    box.replaceChildren(chart, legend);
  }

  function renderUsage() {
    const u = cons.usage;
    const ids = ['#usage-chart-queries', '#usage-chart-exports', '#usage-chart-turnaround', '#usage-chart-signins', '#usage-totals', '#usage-flags', '#usage-table'];
    if (!u) {
      for (const id of ids) $(id).replaceChildren();
      $('#usage-flags-empty').hidden = true;
      delete $('#usage').dataset.days;
      return;
    }
    $('#usage').dataset.days = u.days.length;
    const days = u.days;
    const dates = days.map((d) => d.date);
    const tot = u.totals;
    const dl = $('#usage-totals');
    dl.replaceChildren();
    const total = (label, value) => dl.append(el('div', { class: 'usage-total' }, el('dt', { text: label }), el('dd', { text: value })));
    total(t('console.usage.queries'), fmtNum(sum(tot.queries)));
    total(t('console.usage.refusals'), fmtNum(tot.refusals));
    total(t('console.usage.exports'), fmtNum(tot.export_requests));
    total(t('console.usage.releases'), fmtNum(tot.releases));
    total(t('console.usage.openReviews'), fmtNum(tot.reviews_open));
    total(t('console.usage.turnaroundMedian'), fmtHours(tot.turnaround.median_seconds));
    total(t('console.usage.turnaroundMax'), fmtHours(tot.turnaround.max_seconds));
    total(t('console.usage.failedSignins'), fmtNum(tot.failed_signins));

    const projects = Object.keys(tot.queries || {}).sort();
    barChart($('#usage-chart-queries'), t('console.chart.queries'), dates,
      projects.map((p) => ({ label: p, values: days.map((d) => (d.queries || {})[p] || 0) })), true);
    barChart($('#usage-chart-exports'), t('console.chart.exports'), dates, [
      { label: t('console.usage.exports'), values: days.map((d) => d.export_requests) },
      { label: t('console.usage.exportRefused'), values: days.map((d) => d.export_refused) },
      { label: t('console.usage.approve'), values: days.map((d) => d.decisions.approve) },
      { label: t('console.usage.requestChanges'), values: days.map((d) => d.decisions.request_changes) },
      { label: t('console.usage.reject'), values: days.map((d) => d.decisions.reject) },
      { label: t('console.usage.releases'), values: days.map((d) => d.releases) },
    ], false);
    barChart($('#usage-chart-turnaround'), t('console.chart.turnaround'), dates, [
      { label: t('console.usage.turnaroundMedian'), values: days.map((d) => hours(d.turnaround.median_seconds)) },
      { label: t('console.usage.turnaroundMax'), values: days.map((d) => hours(d.turnaround.max_seconds)) },
    ], false);
    barChart($('#usage-chart-signins'), t('console.chart.signins'), dates, [
      { label: t('console.usage.failedSignins'), values: days.map((d) => d.failed_signins) },
      { label: t('console.usage.refusals'), values: days.map((d) => d.refusals) },
    ], false);

    renderFlags(u.flags || []);

    const head = [t('console.usage.date'), ...projects.map((p) => `${t('console.usage.queries')}: ${p}`), t('console.usage.refusals'),
      t('console.usage.exports'), t('console.usage.exportRefused'), t('console.usage.approve'), t('console.usage.requestChanges'),
      t('console.usage.reject'), t('console.usage.sealed'), t('console.usage.releases'), t('console.usage.turnaroundMedian'),
      t('console.usage.turnaroundMax'), t('console.usage.failedSignins')];
    const num = (v) => el('td', { class: 'num', text: fmtNum(v) });
    $('#usage-table').replaceChildren(
      el('thead', null, el('tr', null, ...head.map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', null, ...days.map((d) => el('tr', null, el('td', { class: 'mono', text: d.date }),
        ...projects.map((p) => num((d.queries || {})[p] || 0)), num(d.refusals), num(d.export_requests), num(d.export_refused),
        num(d.decisions.approve), num(d.decisions.request_changes), num(d.decisions.reject), num(d.decisions.sealed),
        num(d.releases), el('td', { class: 'num', text: fmtHours(d.turnaround.median_seconds) }),
        el('td', { class: 'num', text: fmtHours(d.turnaround.max_seconds) }), num(d.failed_signins)))));
  }

  function renderFlags(flags) {
    const labels = {
      differencing: [t('console.flag.differencing'), t('console.flag.differencingHelp')],
      small_groups: [t('console.flag.smallGroups'), t('console.flag.smallGroupsHelp')],
      unusual_hours: [t('console.flag.unusualHours'), t('console.flag.unusualHoursHelp')],
    };
    $('#usage-flags-empty').hidden = flags.length > 0;
    $('#usage-flags').replaceChildren(...flags.map((f) => {
      const [label, help] = labels[f.kind] || [f.kind, ''];
      const values = f.values && f.values.length
        ? el('p', { class: 'small flag-values' }, f.kind === 'small_groups' ? t('console.flag.rows') : t('console.flag.values'), ' ',
          el('span', { class: 'mono', text: f.values.join(' / ') })) : null;
      return el('li', { class: 'usage-flag', 'data-kind': f.kind, 'data-actor': f.actor },
        el('div', { class: 'flag-head' },
          el('span', { class: 'badge flag-badge', text: label }),
          el('span', { class: 'flag-actor mono', text: f.actor }),
          f.project ? el('span', { class: 'flag-project mono', text: f.project }) : null,
          el('span', { class: 'flag-when small', text: t('console.flag.when', { count: f.count, first: fmtTime(f.first), last: fmtTime(f.last) }) })),
        help ? el('p', { class: 'help', text: help }) : null,
        f.shape ? el('pre', { class: 'sql-block mono flag-shape', text: f.shape }) : null,
        values,
        el('p', { class: 'flag-entries small' }, t('console.flag.entries'), ' ',
          ...(f.entries || []).map((i) => el('button', { type: 'button', class: 'link-button mono flag-entry', 'data-index': i, text: '#' + i, onclick: () => openEntry(i) }))));
    }));
  }

  function bindConsole() {
    const select = $('#audit-filter-type');
    for (const type of AUDIT_TYPES) select.append(el('option', { value: type, text: type }));
    $('#audit-filter').addEventListener('submit', (e) => { e.preventDefault(); searchAudit(false); });
    $('#audit-reset').addEventListener('click', () => { $('#audit-filter').reset(); searchAudit(false); });
    $('#audit-more').addEventListener('click', () => searchAudit(true));
    $('#audit-entry-close').addEventListener('click', closeEntry);
    $('#audit-verify').addEventListener('click', runVerify);
    $('#usage-days').addEventListener('change', loadUsage);
    $('#usage-refresh').addEventListener('click', () => Promise.all([loadUsage(), loadCheckpoint()]));
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
    $('#output-close').addEventListener('click', closeOutput);
    $('#output-refresh').addEventListener('click', () => loadOutput(false));
    $('#ctx-form').addEventListener('submit', (e) => { e.preventDefault(); saveContext(); });
    $('#output-submit').addEventListener('click', submitOutput);
    armConfirm($('#output-withdraw'), 'airlock.withdraw', withdrawOutput);
    $('#reviews-refresh').addEventListener('click', refreshReviews);
    $('#review-refresh').addEventListener('click', () => loadReview());
    $('#vote-form').addEventListener('submit', (e) => { e.preventDefault(); submitVote(); });
    $('#catalog-search').addEventListener('input', filterDataCatalog);
    $('#explorer-form').addEventListener('submit', runExplorer);
    $('#explorer-reset').addEventListener('click', resetExplorerForm);
    bindConsole();
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
