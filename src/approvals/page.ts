// The approvals page (GET /ui, issue 17): for the person in the loop. Plain HTML with one inline
// style and one inline script (both allowed by this response's CSP nonce only), no build step and
// no outside assets. The pending list comes live from /approvals/events; the buttons POST to
// /approvals/{id}. The admin token is typed once and kept in a script variable only (never in
// storage, a cookie or the URL), so a reload forgets it. Every value from the server is set with
// textContent, never parsed as HTML.

export function approvalsPage(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice approvals</title>
<style nonce="${nonce}">
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; max-width: 70rem; }
  h1 { font-size: 1.3rem; margin: 0 0 .75rem; }
  h2 { font-size: 1rem; margin: 1.25rem 0 .5rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
  th { font-weight: 600; background: #f5f5f7; }
  code { font: 13px ui-monospace, monospace; word-break: break-all; }
  button { margin-right: .25rem; padding: .2rem .6rem; cursor: pointer; }
  button.allow { background: #e3f4e8; border: 1px solid #59a86d; }
  button.deny { background: #fbe5e5; border: 1px solid #c55; }
  #status { margin-left: .75rem; color: #666; }
  #error { color: #b00; min-height: 1.2em; }
  .empty { color: #777; font-style: italic; }
  input { padding: .2rem .4rem; }
</style>
</head>
<body>
<h1>sluice: requests waiting for a supervisor</h1>
<form id="token-form">
  <label>Admin token <input id="token" type="password" autocomplete="off" size="32"></label>
  <button type="submit">Use</button><span id="status">not connected</span>
</form>
<p id="error" role="alert"></p>
<h2>Pending</h2>
<table>
  <thead><tr><th>tool</th><th>request</th><th>waits until</th><th>decide</th></tr></thead>
  <tbody id="pending"><tr class="empty"><td colspan="4">nothing is waiting</td></tr></tbody>
</table>
<h2>Last decisions</h2>
<table>
  <thead><tr><th>tool</th><th>request</th><th>decision</th><th>when</th></tr></thead>
  <tbody id="decided"><tr class="empty"><td colspan="4">none yet</td></tr></tbody>
</table>
<script nonce="${nonce}">
(() => {
  'use strict';
  let token = '';
  const pending = new Map();
  const decided = [];
  const $ = (id) => document.getElementById(id);
  const cell = (text, code) => {
    const td = document.createElement('td');
    const inner = code ? document.createElement('code') : td;
    inner.textContent = text;
    if (code) td.appendChild(inner);
    return td;
  };
  const target = (a) => a.method + ' ' + a.scheme + '://' + (a.host.includes(':') ? '[' + a.host + ']' : a.host) + ':' + a.port + (a.path || '');
  const empty = (body, text) => {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = cell(text);
    td.colSpan = 4;
    tr.appendChild(td);
    body.appendChild(tr);
  };
  async function decide(id, body) {
    $('error').textContent = '';
    if (!token) { $('error').textContent = 'Enter the admin token first.'; return; }
    try {
      const res = await fetch('/approvals/' + encodeURIComponent(id), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
        body: JSON.stringify(body),
      });
      if (!res.ok) {
        const answer = await res.json().catch(() => ({}));
        $('error').textContent = res.status + ': ' + (answer.detail || answer.error || 'refused');
      }
    } catch (err) {
      $('error').textContent = 'request failed: ' + err;
    }
  }
  const button = (label, cls, id, body) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.className = cls;
    b.dataset.id = id;
    b.dataset.decision = body.decision;
    b.addEventListener('click', () => decide(id, body));
    return b;
  };
  function render() {
    const body = $('pending');
    body.replaceChildren();
    if (pending.size === 0) empty(body, 'nothing is waiting');
    for (const a of pending.values()) {
      const tr = document.createElement('tr');
      tr.dataset.id = a.id;
      tr.appendChild(cell(a.tool));
      tr.appendChild(cell(target(a), true));
      tr.appendChild(cell(new Date(a.expires_at).toLocaleTimeString()));
      const td = document.createElement('td');
      td.appendChild(button('Allow once', 'allow', a.id, { decision: 'allow-once' }));
      td.appendChild(button('Allow 10 min', 'allow', a.id, { decision: 'allow', ttl_s: 600 }));
      td.appendChild(button('Deny', 'deny', a.id, { decision: 'deny' }));
      tr.appendChild(td);
      body.appendChild(tr);
    }
    const done = $('decided');
    done.replaceChildren();
    if (decided.length === 0) empty(done, 'none yet');
    for (const d of [...decided].reverse()) {
      const tr = document.createElement('tr');
      tr.appendChild(cell(d.tool));
      tr.appendChild(cell((d.host.includes(':') ? '[' + d.host + ']' : d.host) + ':' + d.port + (d.path || ''), true));
      let what = d.decision;
      if (d.decision === 'allow') what += ' (' + d.scope + (d.expires_at ? ', until ' + new Date(d.expires_at).toLocaleTimeString() : '') + (d.max_uses ? ', ' + d.max_uses + ' uses' : '') + ')';
      tr.appendChild(cell(what));
      tr.appendChild(cell(new Date(d.decided_at).toLocaleTimeString()));
      done.appendChild(tr);
    }
  }
  const events = new EventSource('/approvals/events');
  events.addEventListener('open', () => { $('status').textContent = 'live'; });
  events.addEventListener('error', () => { $('status').textContent = 'reconnecting…'; });
  events.addEventListener('requested', (e) => { const a = JSON.parse(e.data); pending.set(a.id, a); render(); });
  const settled = (e) => {
    const d = JSON.parse(e.data);
    pending.delete(d.id);
    if (!decided.some((x) => x.id === d.id && x.decided_at === d.decided_at)) decided.push(d);
    if (decided.length > 20) decided.shift();
    render();
  };
  events.addEventListener('decided', settled);
  events.addEventListener('expired', settled);
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token').value.trim();
    $('token').value = '';
    $('token').placeholder = token ? 'token set (kept in this page only)' : '';
  });
})();
</script>
</body>
</html>
`;
}
