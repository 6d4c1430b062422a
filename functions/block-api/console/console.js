// The operator console (SPEC B90). Plain browser JavaScript with no
// dependencies: every screen calls the same /v1/ API a CRM calls, with the
// operator's bearer token. The token lives in session storage only (never a
// cookie, so the API can never be driven by a forged cross-site request).
'use strict';

const TOKEN_KEY = 'wa-blocklist.token';
const VERIFIER_KEY = 'wa-blocklist.pkce';
const DRAFTS_KEY = 'wa-blocklist.drafts';
const PAGE_SIZE = 25;
const BATCH_SIZE = 1000; // POST /v1/blocks:batch takes at most 1,000 numbers.
const MAX_IMPORT_BYTES = 4 * 1024 * 1024; // POST /v1/imports takes at most 4 MiB.

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

let config = { oauth: null };

// ---- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// Calls the API. A 401 (no token, an expired or a refused one) asks the
// operator to log in again and then repeats the call, so nothing typed is
// lost. Other errors throw an ApiError carrying the API's error body.
async function api(method, path, { body, accept, contentType } = {}) {
  for (;;) {
    if (!token()) {
      await askLogin('Log in to use the console.');
      continue;
    }
    const headers = { Authorization: `Bearer ${token()}`, Accept: accept || 'application/json' };
    let payload;
    if (body !== undefined) {
      headers['Content-Type'] = contentType || 'application/json';
      payload = typeof body === 'string' || body instanceof Blob ? body : JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload, credentials: 'omit' });
    } catch (e) {
      throw new ApiError(0, 'network', `The API could not be reached (${e.message}). Check the connection and try again.`);
    }
    if (response.status === 401) {
      await askLogin('Your session has ended. Log in again to continue; what you typed is kept.');
      continue;
    }
    const text = await response.text();
    if (!response.ok) {
      let error = {};
      try { error = JSON.parse(text).error || {}; } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, error.code || `http_${response.status}`,
        error.message || `The API answered ${response.status}.`, error.field);
    }
    if (accept === 'text/csv') return { text, next: response.headers.get('X-Next-Cursor') };
    return text ? JSON.parse(text) : null;
  }
}

const enc = encodeURIComponent;
const query = (params) => {
  const pairs = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== '');
  return pairs.length ? `?${pairs.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&')}` : '';
};

// Shows an error under the form it belongs to, naming the field.
function showError(formId, error) {
  const slot = $(`[data-error-for="${formId}"]`);
  if (!slot) return;
  if (!error) { slot.textContent = ''; return; }
  const field = error.field ? ` (${error.field})` : '';
  slot.textContent = error instanceof ApiError ? `${error.message}${field} [${error.code}]` : String(error.message || error);
  const form = document.getElementById(formId);
  const input = error.field && form && form.elements[error.field];
  if (input && input.focus) input.focus();
}

function notify(message) {
  const notice = $('#notice');
  notice.textContent = message;
  notice.hidden = false;
}

// Runs a form's action with its errors shown beside it and its submit
// button disabled meanwhile.
function onSubmit(formId, action) {
  const form = document.getElementById(formId);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = $('button[type=submit]', form);
    showError(formId, null);
    if (button) button.disabled = true;
    try {
      await action(form);
    } catch (error) {
      showError(formId, error);
    } finally {
      if (button) button.disabled = false;
    }
  });
}

const value = (form, name) => (form.elements[name].value || '').trim();
const list = (text) => text.split(/[,\n;]/).map((s) => s.trim()).filter(Boolean);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');

function cell(row, text, label) {
  const td = row.insertCell();
  td.textContent = text ?? '';
  td.dataset.label = label;
  return td;
}

function button(label, onClick, className) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (className) b.className = className;
  b.addEventListener('click', onClick);
  return b;
}

// ---- Login -------------------------------------------------------------------

function claims() {
  try {
    const part = token().split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch (_) {
    return {};
  }
}

// Scopes as the API reads them; Cognito names a resource server's scopes
// `blocklist/read`, which the API takes as `blocklist:read`.
function scopes() {
  const c = claims();
  const raw = [].concat(c.scope || [], c.scp || []).join(' ');
  return raw.split(/[ ,]+/).filter(Boolean).map((s) => (s.includes(':') ? s : s.replace('/', ':')));
}

function showWho() {
  const c = claims();
  const who = $('#who');
  if (!token()) { who.textContent = 'Not logged in'; $('#logout').hidden = true; return; }
  const until = c.exp ? `, until ${new Date(c.exp * 1000).toLocaleString()}` : '';
  who.textContent = `${c.sub || 'unknown'}${until}`;
  $('#logout').hidden = false;
  const have = scopes();
  for (const tab of $$('[data-needs]')) tab.hidden = !have.includes(tab.dataset.needs);
}

let loginWaiters = [];

// Resolves once the operator has supplied a token. With an OAuth issuer
// configured, the login redirects, after keeping every draft.
function askLogin(why) {
  const dialog = $('#login');
  $('#login-why').textContent = why;
  $('#login-error').textContent = '';
  $('#login-oauth').hidden = !config.oauth;
  if (!dialog.open) dialog.showModal();
  return new Promise((resolve) => loginWaiters.push(resolve));
}

function useToken(raw) {
  const text = raw.trim();
  const fromLink = text.match(/[#&]token=([^&\s]+)/);
  const candidate = fromLink ? decodeURIComponent(fromLink[1]) : text;
  if (candidate.split('.').length !== 3) {
    $('#login-error').textContent = 'That is not a token: paste the JWT or the whole console link.';
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  showWho();
  $('#login').close();
  const waiters = loginWaiters;
  loginWaiters = [];
  waiters.forEach((resolve) => resolve());
  return true;
}

// Kept across the login's round trip to the issuer: every form's values
// and the view shown.
function saveDrafts() {
  const forms = {};
  for (const form of $$('form[data-draft]')) {
    forms[form.id] = {};
    for (const el of form.elements) {
      if (!el.name) continue;
      forms[form.id][el.name] = el.type === 'checkbox' ? el.checked : el.value;
    }
  }
  sessionStorage.setItem(DRAFTS_KEY, JSON.stringify({ forms, view: currentView }));
}

// Puts back what saveDrafts kept; answers the view to show.
function restoreDrafts() {
  const raw = sessionStorage.getItem(DRAFTS_KEY);
  if (!raw) return 'blocked';
  sessionStorage.removeItem(DRAFTS_KEY);
  const { forms, view } = JSON.parse(raw);
  for (const [id, fields] of Object.entries(forms || {})) {
    const form = document.getElementById(id);
    if (!form) continue;
    for (const [name, v] of Object.entries(fields)) {
      const el = form.elements[name];
      if (!el) continue;
      if (el.type === 'checkbox') el.checked = v; else el.value = v;
    }
  }
  return view || 'blocked';
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const redirectUri = () => `${location.origin}/console`;

// OAuth 2.0 authorization code with PKCE (RFC 7636), S256.
async function startOAuth() {
  saveDrafts();
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem(VERIFIER_KEY, JSON.stringify({ verifier, state }));
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const o = config.oauth;
  // An authorize URL may carry a query of its own (`?p=policy`).
  const join = (url, q) => (url.includes('?') ? `${url}&${q.slice(1)}` : `${url}${q}`);
  location.assign(join(o.authorize_url, query({
    response_type: 'code', client_id: o.client_id, redirect_uri: redirectUri(), scope: o.scopes,
    state, code_challenge: challenge, code_challenge_method: 'S256',
  })));
}

async function finishOAuth(params) {
  const saved = JSON.parse(sessionStorage.getItem(VERIFIER_KEY) || '{}');
  sessionStorage.removeItem(VERIFIER_KEY);
  history.replaceState(null, '', location.pathname);
  if (params.get('error')) throw new Error(`The login was refused: ${params.get('error_description') || params.get('error')}`);
  if (!saved.state || saved.state !== params.get('state')) throw new Error('The login answer does not match the login this page started; log in again.');
  const response = await fetch(config.oauth.token_url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: params.get('code'), client_id: config.oauth.client_id,
      redirect_uri: redirectUri(), code_verifier: saved.verifier,
    }),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || !answer.access_token) throw new Error(`The login could not be completed: ${answer.error || response.status}`);
  sessionStorage.setItem(TOKEN_KEY, answer.access_token);
}

// ---- Views -----------------------------------------------------------------

const loaders = {};
// Where a view's loading error is shown: beside the form that drives it.
const ERROR_SLOT = { blocked: 'filters', chart: 'chart-range', rules: 'rule' };

let currentView = 'blocked';

function show(view) {
  currentView = view;
  $('#notice').hidden = true;
  for (const tab of $$('[role=tab]')) tab.setAttribute('aria-selected', String(tab.dataset.view === view));
  for (const section of $$('main section[data-view]')) section.hidden = section.dataset.view !== view;
  if (loaders[view]) loaders[view]().catch((error) => showError(ERROR_SLOT[view] || view, error));
}

// The blocked list: a page of blocks, each with its contact.
const blocks = { cursors: [], next: null };

function blockFilters() {
  const form = $('#filters');
  const day = (name, end) => {
    const v = value(form, name);
    return v ? `${v}T${end ? '23:59:59' : '00:00:00'}Z` : undefined;
  };
  return {
    q: value(form, 'q'), scope: value(form, 'scope'), source: value(form, 'source'),
    category: value(form, 'category'), group: value(form, 'group'),
    since: day('since', false), until: day('until', true),
  };
}

async function contactOf(subject) {
  try {
    return await api('GET', `/v1/contacts/${enc(subject)}`);
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

async function loadBlocks(cursor) {
  showError('filters', null);
  const page = await api('GET', `/v1/blocks${query({ ...blockFilters(), limit: PAGE_SIZE, cursor })}`);
  const subjects = [...new Set(page.items.map((b) => b.subject))];
  const contacts = new Map(await Promise.all(subjects.map(async (s) => [s, await contactOf(s)])));
  const body = $('#blocks tbody');
  body.replaceChildren();
  for (const block of page.items) {
    const contact = contacts.get(block.subject) || {};
    const row = body.insertRow();
    cell(row, block.subject, 'Number');
    cell(row, contact.name, 'Name');
    cell(row, contact.email, 'Email');
    cell(row, contact.category, 'Category');
    cell(row, (contact.secondary_numbers || []).join(', '), 'Secondary numbers');
    cell(row, (contact.groups || []).join(', '), 'Groups');
    cell(row, block.expires_at ? `blocked until ${when(block.expires_at)}` : 'blocked', 'Status');
    cell(row, when(block.blocked_at), 'Blocked at');
    cell(row, block.scope, 'Scope');
    cell(row, block.source, 'Source');
    cell(row, block.reason, 'Reason');
    const actions = cell(row, '', 'Actions');
    actions.className = 'row-actions';
    actions.append(
      button('Unblock', () => unblockRow(block)),
      button('Edit contact', () => editContact(block.subject), 'quiet'),
      button('Add to group', () => addToGroup(block.subject), 'quiet'),
      button('History', () => openHistory(block.subject), 'quiet'),
    );
  }
  $('#blocks-empty').hidden = page.items.length > 0;
  blocks.next = page.next_cursor;
  $('#blocks-next').disabled = !page.next_cursor;
  $('#blocks-first').disabled = blocks.cursors.length === 0;
}

loaders.blocked = () => loadBlocks(blocks.cursors[blocks.cursors.length - 1]);

// A small modal form; resolves with the values, or null when cancelled.
// The action runs inside, so an API error stays in the dialog with the
// values typed.
function ask(title, fields, action) {
  const dialog = $('#ask');
  $('#ask-title').textContent = title;
  $('#ask-error').textContent = '';
  const box = $('#ask-fields');
  box.replaceChildren();
  for (const f of fields) {
    const label = document.createElement('label');
    label.textContent = `${f.label} `;
    const input = document.createElement(f.type === 'select' ? 'select' : 'input');
    input.name = f.name;
    if (f.type === 'select') {
      for (const o of f.options) input.add(new Option(o, o));
    } else {
      input.type = f.type || 'text';
    }
    if (f.required) input.required = true;
    input.value = f.value ?? '';
    label.append(input);
    box.append(label);
  }
  const form = $('#ask-form');
  return new Promise((resolve) => {
    const done = (result) => {
      form.onsubmit = null;
      $('#ask-cancel').onclick = null;
      dialog.close();
      resolve(result);
    };
    $('#ask-cancel').onclick = () => done(null);
    dialog.oncancel = () => done(null);
    form.onsubmit = async (event) => {
      event.preventDefault();
      const values = {};
      for (const f of fields) values[f.name] = form.elements[f.name].value.trim();
      $('#ask-ok').disabled = true;
      try {
        done(await action(values));
      } catch (error) {
        $('#ask-error').textContent = `${error.message}${error.code ? ` [${error.code}]` : ''}`;
      } finally {
        $('#ask-ok').disabled = false;
      }
    };
    dialog.showModal();
    const first = $('input, select', box);
    if (first) first.focus();
  });
}

async function unblockRow(block) {
  const done = await ask(`Unblock ${block.subject} (${block.scope})`,
    [{ name: 'reason', label: 'Reason', required: true }],
    (v) => api('DELETE', `/v1/blocks/${enc(block.subject)}`, { body: { reason: v.reason, scope: block.scope } }));
  if (done !== null) { notify(`${block.subject} is unblocked in ${block.scope}.`); await loaders.blocked(); }
}

function contactBody(contact, changes) {
  return {
    name: contact.name ?? null, email: contact.email ?? null, category: contact.category ?? null,
    groups: contact.groups || [], secondary_numbers: contact.secondary_numbers || [], ...changes,
  };
}

async function editContact(subject) {
  const contact = (await contactOf(subject)) || {};
  const saved = await ask(`Contact ${subject}`, [
    { name: 'name', label: 'Name', value: contact.name },
    { name: 'email', label: 'Email', type: 'email', value: contact.email },
    { name: 'category', label: 'Category', value: contact.category },
    { name: 'groups', label: 'Groups (comma separated)', value: (contact.groups || []).join(', ') },
    { name: 'secondary_numbers', label: 'Secondary numbers (comma separated)', value: (contact.secondary_numbers || []).join(', ') },
  ], (v) => api('PUT', `/v1/contacts/${enc(subject)}`, {
    body: contactBody(contact, {
      name: v.name || null, email: v.email || null, category: v.category || null,
      groups: list(v.groups), secondary_numbers: list(v.secondary_numbers),
    }),
  }));
  if (saved !== null) { notify(`The contact of ${subject} is saved.`); await loaders.blocked(); }
}

async function addToGroup(subject) {
  const contact = (await contactOf(subject)) || {};
  const saved = await ask(`Add ${subject} to a group`, [{ name: 'group', label: 'Group', required: true }],
    (v) => api('PUT', `/v1/contacts/${enc(subject)}`, {
      body: contactBody(contact, { groups: [...new Set([...(contact.groups || []), v.group])] }),
    }));
  if (saved !== null) { notify(`${subject} is in the group.`); await loaders.blocked(); }
}

// History: the number's audit events, newest first, as a timeline.
const historyState = { subject: null, next: null };

async function loadHistory(subject, cursor) {
  const page = await api('GET', `/v1/numbers/${enc(subject)}/history${query({ limit: 50, cursor })}`);
  const list = $('#timeline');
  if (!cursor) list.replaceChildren();
  for (const event of page.items) {
    const item = document.createElement('li');
    const time = document.createElement('time');
    time.dateTime = event.at;
    time.textContent = when(event.at);
    const what = document.createElement('strong');
    what.textContent = event.action.replace(/_/g, ' ');
    const detail = document.createElement('span');
    detail.textContent = [event.scope && `scope ${event.scope}`, event.actor && `by ${event.actor}`, event.reason && `“${event.reason}”`]
      .filter(Boolean).join(' · ');
    item.append(time, ' ', what, ' ', detail);
    list.append(item);
  }
  if (!cursor && page.items.length === 0) {
    const item = document.createElement('li');
    item.textContent = 'No events for this number.';
    list.append(item);
  }
  historyState.subject = subject;
  historyState.next = page.next_cursor;
  $('#history-next').disabled = !page.next_cursor;
}

function openHistory(subject) {
  $('#history').elements.number.value = subject;
  show('history');
  loadHistory(subject).catch((error) => showError('history', error));
}

// Bulk: a pasted list in batches of 1,000.
function numbersFrom(text) {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  if (lines.length && /^"?number"?\s*(,|$)/i.test(lines[0])) lines.shift();
  // A pasted spreadsheet row: the number is its first cell.
  return lines.map((l) => l.split(/[,;\t]/)[0].replace(/^"|"$/g, '').trim()).filter(Boolean);
}

function showRowResults(rows) {
  const table = $('#bulk-results');
  const body = $('tbody', table);
  body.replaceChildren();
  for (const r of rows) {
    const row = body.insertRow();
    cell(row, r.row, 'Row');
    cell(row, r.number, 'Number');
    cell(row, r.status, 'Result');
    cell(row, r.error ? r.error.message : '', 'Detail');
    if (r.error) row.className = 'failed';
  }
  table.hidden = rows.length === 0;
}

const tally = (rows) => {
  const counts = {};
  for (const r of rows) counts[r.status] = (counts[r.status] || 0) + 1;
  return Object.entries(counts).map(([k, n]) => `${n} ${k.replace(/_/g, ' ')}`).join(', ');
};

onSubmit('bulk', async (form) => {
  const numbers = numbersFrom(form.elements.numbers.value);
  if (numbers.length === 0) throw new Error('Paste at least one number.');
  const progress = $('#bulk-progress');
  const rows = [];
  for (let start = 0; start < numbers.length; start += BATCH_SIZE) {
    progress.textContent = `Working: ${start} of ${numbers.length}…`;
    const answer = await api('POST', '/v1/blocks:batch', {
      body: { action: value(form, 'action'), numbers: numbers.slice(start, start + BATCH_SIZE), reason: value(form, 'reason'), scope: value(form, 'scope') || undefined },
    });
    answer.results.forEach((r, i) => rows.push({ row: start + i + 1, ...r }));
  }
  progress.textContent = `Done: ${numbers.length} numbers. ${tally(rows)}.`;
  showRowResults(rows);
});

// A CSV file goes to the import API, which works through it in batches.
onSubmit('import', async (form) => {
  const file = form.elements.file.files[0];
  if (!file) throw new Error('Choose a CSV file.');
  // The API's limit (413 above it), said before a long upload.
  if (file.size > MAX_IMPORT_BYTES) {
    throw new Error(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; a file may have at most 4 MB and 100,000 rows. Split it and import each part.`);
  }
  const progress = $('#bulk-progress');
  $('#import-results').hidden = true;
  progress.textContent = `Uploading ${file.name}…`;
  let job = await api('POST', '/v1/imports', { body: file, contentType: 'text/csv' });
  while (job.status !== 'done') {
    // A stalled import may still resume (its chunks are retried): keep
    // looking, less often.
    progress.textContent = job.status === 'stalled'
      ? `The import of ${file.name} has made no progress for an hour (${job.rows_done} of ${job.rows} rows); it goes on if its retries succeed. Rows not done show as pending in the results.`
      : `Importing ${file.name}: ${job.rows_done} of ${job.rows} rows…`;
    await new Promise((r) => setTimeout(r, job.status === 'stalled' ? 30000 : 1000));
    job = await api('GET', `/v1/imports/${enc(job.id)}`);
  }
  const counts = Object.entries(job.counts).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k.replace(/_/g, ' ')}`).join(', ');
  progress.textContent = `Imported ${file.name}: ${job.rows} rows. ${counts}.`;
  const link = $('#import-results');
  link.href = URL.createObjectURL(new Blob([await csvOfEveryPage(`/v1/imports/${enc(job.id)}/results`)], { type: 'text/csv' }));
  link.hidden = false;
  // The rows not blocked, the first 1,000 of them on the page (all in the file).
  const failed = [];
  let cursor;
  do {
    const page = await api('GET', `/v1/imports/${enc(job.id)}/results${query({ status: 'failed', limit: 200, cursor })}`);
    failed.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && failed.length < 1000);
  showRowResults(failed.map((r) => ({ row: r.row, number: r.number, status: r.status, error: r.error })));
});

// Every page of a CSV export, one header row: an export stops at 5 MB (a
// Lambda answer's size) and names where the rest starts.
async function csvOfEveryPage(path, params = {}) {
  let cursor;
  let text = '';
  do {
    const part = await api('GET', `${path}${query({ ...params, cursor })}`, { accept: 'text/csv' });
    text += cursor ? part.text.slice(part.text.indexOf('\n') + 1) : part.text;
    cursor = part.next;
  } while (cursor);
  return text;
}

// Review queue (B16).
const review = { next: null };

async function loadReview(cursor) {
  const page = await api('GET', `/v1/blocks${query({ review: 'due', limit: PAGE_SIZE, cursor })}`);
  const body = $('#review tbody');
  if (!cursor) body.replaceChildren();
  for (const block of page.items) {
    const row = body.insertRow();
    cell(row, block.subject, 'Number');
    cell(row, block.scope, 'Scope');
    cell(row, block.reason, 'Reason');
    cell(row, when(block.blocked_at), 'Blocked at');
    cell(row, when(block.review_due_at), 'Due');
    const actions = cell(row, '', 'Actions');
    actions.className = 'row-actions';
    const decide = (decision) => async () => {
      const done = await ask(`${decision === 'keep' ? 'Keep' : 'Unblock'} ${block.subject} (${block.scope})`,
        [{ name: 'reason', label: 'Reason', required: true }],
        (v) => api('POST', `/v1/blocks/${enc(block.subject)}/review`, { body: { scope: block.scope, decision, reason: v.reason } }));
      if (done !== null) { notify(`${block.subject}: ${decision === 'keep' ? 'kept until its next review' : 'unblocked'}.`); await loadReview(); }
    };
    actions.append(button('Keep', decide('keep')), button('Unblock', decide('unblock'), 'quiet'));
  }
  $('#review-empty').hidden = body.rows.length > 0;
  review.next = page.next_cursor;
  $('#review-next').disabled = !page.next_cursor;
}

loaders.review = () => loadReview();

// The chart of the daily counters, with the unblock rate.
const SERIES = [
  ['blocked', 'Blocked'], ['unblocked', 'Unblocked'], ['auto_blocked', 'Automatic'],
  ['inbound_suppressed', 'Suppressed'], ['outbound_refused', 'Refused'],
];
const rate = (unblocked, blocked) => (blocked ? `${Math.round((100 * unblocked) / blocked)}%` : '–');

function drawChart(days) {
  const width = 720;
  const height = 240;
  const pad = 32;
  const max = Math.max(1, ...days.flatMap((d) => SERIES.map(([k]) => d[k])));
  const x = (i) => pad + (i * (width - 2 * pad)) / Math.max(1, days.length - 1);
  const y = (v) => height - pad - (v * (height - 2 * pad)) / max;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Blocked, unblocked, automatic, suppressed and refused per day');
  const axis = document.createElementNS(ns, 'path');
  axis.setAttribute('d', `M${pad},${pad} V${height - pad} H${width - pad}`);
  axis.setAttribute('class', 'axis');
  svg.append(axis);
  const label = (x, y, text, anchor) => {
    const t = document.createElementNS(ns, 'text');
    t.setAttribute('x', x);
    t.setAttribute('y', y);
    t.setAttribute('text-anchor', anchor);
    t.textContent = text;
    svg.append(t);
  };
  label(pad - 4, pad + 4, String(max), 'end');
  label(pad - 4, height - pad, '0', 'end');
  if (days.length) {
    label(pad, height - pad + 16, days[0].date, 'start');
    label(width - pad, height - pad + 16, days[days.length - 1].date, 'end');
  }
  SERIES.forEach(([key], s) => {
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', days.map((d, i) => `${x(i)},${y(d[key])}`).join(' '));
    line.setAttribute('class', `series s${s}`);
    svg.append(line);
  });
  const legend = document.createElement('ul');
  legend.className = 'legend';
  SERIES.forEach(([, label], s) => {
    const item = document.createElement('li');
    item.className = `s${s}`;
    item.textContent = label;
    legend.append(item);
  });
  $('#chart').replaceChildren(svg, legend);
}

const isoDay = (date) => date.toISOString().slice(0, 10);

async function loadChart() {
  const form = $('#chart-range');
  if (!value(form, 'to')) form.elements.to.value = isoDay(new Date());
  if (!value(form, 'from')) form.elements.from.value = isoDay(new Date(Date.now() - 29 * 86400000));
  const stats = await api('GET', `/v1/stats${query({ from: value(form, 'from'), to: value(form, 'to') })}`);
  drawChart(stats.days);
  const body = $('#chart-table tbody');
  body.replaceChildren();
  for (const d of stats.days) {
    const row = body.insertRow();
    cell(row, d.date, 'Day');
    SERIES.forEach(([key, label]) => cell(row, d[key], label));
    cell(row, rate(d.unblocked, d.blocked), 'Unblock rate');
  }
  const sum = (k) => stats.days.reduce((n, d) => n + d[k], 0);
  $('#chart-summary').textContent = `${stats.currently_blocked} blocked now. In these days: ${sum('blocked')} blocked, ${sum('unblocked')} unblocked (unblock rate ${rate(sum('unblocked'), sum('blocked'))}), ${sum('auto_blocked')} automatic, ${sum('inbound_suppressed')} messages suppressed, ${sum('outbound_refused')} sends refused.`;
}

loaders.chart = loadChart;

// Rules (B84).
async function loadRules() {
  const body = $('#rules tbody');
  body.replaceChildren();
  let cursor;
  do {
    const page = await api('GET', `/v1/rules${query({ cursor })}`);
    for (const rule of page.items) {
      const row = body.insertRow();
      cell(row, rule.id, 'Id');
      cell(row, rule.prefix, 'Prefix');
      cell(row, rule.scope, 'Scope');
      cell(row, rule.reason, 'Reason');
      cell(row, rule.actor, 'By');
      cell(row, when(rule.created_at), 'Created');
      const actions = cell(row, '', 'Actions');
      actions.append(button('Remove', async () => {
        const done = await ask(`Remove rule ${rule.id} (${rule.prefix})`, [{ name: 'reason', label: 'Reason', required: true }],
          (v) => api('DELETE', `/v1/rules/${enc(rule.id)}`, { body: { reason: v.reason } }));
        if (done !== null) { notify(`Rule ${rule.id} is removed.`); await loadRules(); }
      }, 'quiet'));
    }
    cursor = page.next_cursor;
  } while (cursor);
  $('#rules-empty').hidden = body.rows.length > 0;
}

loaders.rules = loadRules;

onSubmit('rule', async (form) => {
  const id = value(form, 'id');
  await api('PUT', `/v1/rules/${enc(id)}`, {
    body: { id, prefix: value(form, 'prefix'), scope: value(form, 'scope') || 'all', reason: value(form, 'reason'), action: 'block' },
  });
  notify(`Rule ${id} is saved.`);
  form.reset();
  await loadRules();
});

// Consent (B80).
async function loadConsent(subject) {
  const answer = await api('GET', `/v1/consents/${enc(subject)}`);
  const body = $('#consents tbody');
  body.replaceChildren();
  for (const c of answer.consents) {
    const row = body.insertRow();
    cell(row, c.phone_number_id, 'Scope');
    cell(row, c.marketing, 'Marketing');
    cell(row, c.all, 'All messages');
    cell(row, c.source, 'Source');
    cell(row, when(c.at), 'At');
  }
  if (answer.consents.length === 0) {
    const row = body.insertRow();
    const td = cell(row, 'No consent recorded: opted in everywhere.', 'Scope');
    td.colSpan = 5;
  }
  $('#consents').hidden = false;
  $('#consent').hidden = false;
  $('#consent').dataset.subject = answer.subject;
}

onSubmit('consent-lookup', (form) => loadConsent(value(form, 'number')));
onSubmit('consent', async (form) => {
  const subject = form.dataset.subject;
  const body = { phone_number_id: value(form, 'phone_number_id') || 'all' };
  if (value(form, 'marketing')) body.marketing = value(form, 'marketing');
  if (value(form, 'all')) body.all = value(form, 'all');
  await api('PUT', `/v1/consents/${enc(subject)}`, { body });
  notify(`Consent of ${subject} is saved.`);
  await loadConsent(subject);
});

// Settings (admin).
let settingsShown = null;

async function loadSettings() {
  const target = value($('#settings-target'), 'target') || 'default';
  const s = await api('GET', `/v1/settings/${enc(target)}`);
  const form = $('#settings');
  const set = (name, v) => {
    const el = form.elements[name];
    if (el.type === 'checkbox') el.checked = Boolean(v); else el.value = Array.isArray(v) ? v.join(', ') : (v ?? '');
  };
  set('allow_unknown_numbers', s.allow_unknown_numbers);
  set('auto_block.enabled', s.auto_block.enabled);
  set('auto_block.error_codes', s.auto_block.error_codes);
  set('auto_block.threshold', s.auto_block.threshold);
  set('auto_block.window_days', s.auto_block.window_days);
  for (const k of ['platform_block', 'carry_blocks_on_change', 'review_after_days', 'opt_out_keywords', 'opt_in_keywords', 'opt_out_reply', 'opt_in_reply']) set(k, s[k]);
  form.hidden = false;
  settingsShown = s.phone_number_id;
}

loaders.settings = loadSettings;
onSubmit('settings-target', loadSettings);
onSubmit('settings', async (form) => {
  const el = form.elements;
  const days = el.review_after_days.value.trim();
  const number = (name) => Number(el[name].value);
  const body = {
    allow_unknown_numbers: el.allow_unknown_numbers.checked,
    auto_block: {
      enabled: el['auto_block.enabled'].checked,
      error_codes: list(el['auto_block.error_codes'].value).map(Number),
      threshold: number('auto_block.threshold'),
      window_days: number('auto_block.window_days'),
    },
    carry_blocks_on_change: el.carry_blocks_on_change.checked,
    review_after_days: days === '' ? null : Number(days),
    opt_out_keywords: list(el.opt_out_keywords.value),
    opt_in_keywords: list(el.opt_in_keywords.value),
    opt_out_reply: el.opt_out_reply.value,
    opt_in_reply: el.opt_in_reply.value,
  };
  // `platform_block` exists for business numbers only.
  if (settingsShown !== 'default' || el.platform_block.checked) body.platform_block = el.platform_block.checked;
  await api('PUT', `/v1/settings/${enc(settingsShown)}`, { body });
  notify(`Settings of ${settingsShown} are saved.`);
  await loadSettings();
});

// ---- Wiring ----------------------------------------------------------------

onSubmit('filters', async () => { blocks.cursors = []; await loadBlocks(); });
$('#filters').addEventListener('reset', () => setTimeout(() => { blocks.cursors = []; loadBlocks().catch((e) => showError('filters', e)); }));
$('#blocks-next').addEventListener('click', () => {
  blocks.cursors.push(blocks.next);
  loadBlocks(blocks.next).catch((e) => showError('filters', e));
});
$('#blocks-first').addEventListener('click', () => { blocks.cursors = []; loadBlocks().catch((e) => showError('filters', e)); });
$('#review-next').addEventListener('click', () => loadReview(review.next).catch((e) => showError('review', e)));
$('#history-next').addEventListener('click', () => loadHistory(historyState.subject, historyState.next).catch((e) => showError('history', e)));
onSubmit('history', (form) => loadHistory(value(form, 'number')));
onSubmit('chart-range', loadChart);

$('#export-blocks').addEventListener('click', async () => {
  try {
    const text = await csvOfEveryPage('/v1/blocks', blockFilters());
    const link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
    link.download = 'blocked-contacts.csv';
    link.click();
  } catch (error) {
    showError('filters', error);
  }
});

onSubmit('add', async (form) => {
  const number = value(form, 'number');
  const until = value(form, 'expires_at');
  const contactFields = {
    name: value(form, 'name'), email: value(form, 'email'), category: value(form, 'category'),
    groups: list(value(form, 'groups')), secondary_numbers: list(value(form, 'secondary_numbers')),
  };
  const hasContact = contactFields.name || contactFields.email || contactFields.category
    || contactFields.groups.length || contactFields.secondary_numbers.length;
  const body = {
    reason: value(form, 'reason'),
    scope: value(form, 'scope') || 'all',
    expires_at: until ? new Date(until).toISOString() : undefined,
    contact: hasContact ? {
      name: contactFields.name || null, email: contactFields.email || null, category: contactFields.category || null,
      groups: contactFields.groups, secondary_numbers: contactFields.secondary_numbers,
    } : undefined,
  };
  const answer = await api('PUT', `/v1/blocks/${enc(number)}`, { body });
  notify(`${answer.subject || number} is blocked in ${answer.scope || body.scope}.`);
  form.reset();
});

for (const tab of $$('[role=tab]')) tab.addEventListener('click', () => show(tab.dataset.view));
// Arrow keys move between tabs (WAI-ARIA tabs pattern).
$('.tabs').addEventListener('keydown', (event) => {
  const tabs = $$('[role=tab]').filter((t) => !t.hidden);
  const i = tabs.indexOf(document.activeElement);
  if (i < 0 || !['ArrowLeft', 'ArrowRight'].includes(event.key)) return;
  const next = tabs[(i + (event.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
  next.focus();
  next.click();
});

$('#login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  useToken($('#login-form').elements.token.value);
});
$('#login').addEventListener('cancel', (event) => event.preventDefault());
$('#login-oauth-go').addEventListener('click', () => startOAuth().catch((e) => { $('#login-error').textContent = e.message; }));
$('#logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showWho();
  // The provider's session ends too, so that the next login asks again.
  const logout = config.oauth && config.oauth.logout_url;
  if (logout) {
    location.assign(`${logout}${query({ client_id: config.oauth.client_id, logout_uri: redirectUri() })}`);
    return;
  }
  askLogin('You are logged out.');
});

// A `#token=` link (what scripts/dev prints): the token is kept for the
// session and leaves the address bar (and the history) at once.
function takeTokenFromLink() {
  const fragment = location.hash.match(/token=([^&]+)/);
  if (!fragment) return false;
  // With an OAuth login, tokens come from it (or are pasted), never from a
  // link someone else may have made.
  if (config.oauth) {
    history.replaceState(null, '', location.pathname);
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(fragment[1]));
  history.replaceState(null, '', location.pathname);
  return true;
}

// A new link opened in the same tab changes only the fragment.
window.addEventListener('hashchange', () => {
  if (takeTokenFromLink()) {
    showWho();
    show('blocked');
  }
});

async function start() {
  try {
    const response = await fetch('/console/config.json', { credentials: 'omit' });
    if (response.ok) config = await response.json();
  } catch (_) { /* no OAuth configuration: token login only */ }
  takeTokenFromLink();
  const params = new URLSearchParams(location.search);
  let refused = null;
  if (config.oauth && (params.get('code') || params.get('error'))) {
    try {
      await finishOAuth(params);
    } catch (error) {
      refused = error.message;
    }
  }
  const view = restoreDrafts();
  showWho();
  show(view);
  if (refused) notify(refused);
}

start();
