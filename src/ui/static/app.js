// The weft dashboard page: polls /api/mesh and renders the banners, the topology graph
// (cytoscape, served from the package), and the tables beside it. Text goes in with
// textContent only: names come from manifests and must never become markup.
'use strict';

const REFRESH_MS = 3000;
const HEALTH_COLOUR = { healthy: '#2e7d32', degraded: '#ef6c00', failing: '#c62828', idle: '#9e9e9e' };
let cy;
let shownGraph = '';

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fill(tableId, rows, empty) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = el('tr');
    const td = el('td', empty);
    td.colSpan = document.querySelectorAll(`#${tableId} thead th`).length;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = el('tr');
    for (const c of cells) {
      const td = typeof c === 'object' && c !== null ? el('td', c.text, c.cls) : el('td', c);
      tr.append(td);
    }
    body.append(tr);
  }
}

const num = (v, digits = 2) => ({ text: v === undefined || v === null ? '–' : Number(v).toFixed(digits), cls: 'num' });
const label = (id) => id.replace(/^workload:/, '').replace(/^service:/, 'svc ');
function bytes(v) {
  if (v >= 1 << 20) return { text: `${(v / (1 << 20)).toFixed(1)} MiB/s`, cls: 'num' };
  if (v >= 1024) return { text: `${(v / 1024).toFixed(1)} KiB/s`, cls: 'num' };
  return { text: `${v.toFixed(0)} B/s`, cls: 'num' };
}
function security(e) {
  if (e.security === 'mutual_tls') return { text: 'mTLS', cls: 'mtls' };
  if (e.plaintextIntoEnrolled) return { text: 'PLAINTEXT ⚠ into enrolled workload', cls: 'plain' };
  if (e.security === 'mixed') return { text: `mixed: mTLS and PLAINTEXT${e.nodeLocal ? ' (node-local)' : ''}`, cls: 'plain' };
  if (e.nodeLocal) return { text: 'PLAINTEXT (node-local)', cls: 'plain' };
  return { text: e.security === 'none' ? 'PLAINTEXT' : e.security, cls: e.security === 'none' ? 'plain' : '' };
}
const duration = (s) => {
  const a = Math.abs(s);
  const t = a >= 3600 ? `${(a / 3600).toFixed(1)} h` : a >= 60 ? `${Math.round(a / 60)} min` : `${Math.round(a)} s`;
  return s < 0 ? `expired ${t} ago` : t;
};

function renderBanners(list, note) {
  const box = document.getElementById('banners');
  box.replaceChildren();
  for (const b of list) {
    const d = el('div', `${b.severity === 'critical' ? 'CRITICAL' : 'WARNING'}: ${b.message}`, `banner ${b.severity}`);
    d.dataset.alert = b.alert;
    d.setAttribute('role', 'alert');
    box.append(d);
  }
  if (note) box.append(el('div', note, 'banner warning'));
}

function renderGraph(topology) {
  const elements = [];
  for (const n of topology.nodes) {
    elements.push({ data: { id: n.id, label: n.kind === 'namespace' ? `namespace ${n.name}` : n.name, parent: n.parent, kind: n.kind, enrolled: n.enrolled ? 'yes' : 'no' } });
  }
  for (const e of topology.edges) {
    const sec = e.security === 'mutual_tls' ? 'mTLS' : e.security === 'mixed' ? 'mixed' : 'PLAINTEXT';
    const rate = e.protocol === 'http' ? `${e.requestsPerSecond.toFixed(1)} rps` : `${e.connectionsPerSecond.toFixed(2)} cps`;
    elements.push({ data: { id: e.id, source: e.from, target: e.to, label: `${sec}${e.plaintextIntoEnrolled ? ' ⚠' : ''} ${rate}`, colour: HEALTH_COLOUR[e.health], plain: e.security === 'mutual_tls' ? 'no' : 'yes' } });
  }
  const shape = JSON.stringify(elements.map((x) => [x.data.id, x.data.parent, x.data.source, x.data.target]));
  if (cy !== undefined && shape === shownGraph) {
    for (const x of elements) cy.getElementById(x.data.id).data(x.data);
    return;
  }
  shownGraph = shape;
  if (typeof window.cytoscape !== 'function') return;
  if (cy !== undefined) cy.destroy();
  cy = window.cytoscape({
    container: document.getElementById('graph'),
    elements,
    wheelSensitivity: 0.3,
    style: [
      { selector: 'node', style: { label: 'data(label)', 'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 4, 'background-color': '#5c6bc0', width: 26, height: 26 } },
      { selector: 'node[kind = "service"]', style: { shape: 'triangle', 'background-color': '#26a69a' } },
      { selector: 'node[kind = "unknown"]', style: { shape: 'diamond', 'background-color': '#8d6e63' } },
      { selector: 'node[kind = "workload"][enrolled = "no"]', style: { 'background-color': '#bdbdbd' } },
      { selector: ':parent', style: { 'text-valign': 'top', 'background-color': '#eceff1', 'border-color': '#b0bec5', 'border-width': 1, 'font-weight': 'bold' } },
      { selector: 'edge', style: { label: 'data(label)', 'font-size': 10, 'curve-style': 'bezier', 'target-arrow-shape': 'triangle', width: 2, 'line-color': 'data(colour)', 'target-arrow-color': 'data(colour)', 'text-background-color': '#fff', 'text-background-opacity': 0.85, 'text-rotation': 'autorotate' } },
      { selector: 'edge[plain = "yes"]', style: { 'line-style': 'dashed' } },
    ],
    layout: { name: 'cose', animate: false, nodeDimensionsIncludeLabels: true, padding: 20 },
  });
}

function render(m) {
  const when = new Date(m.generatedAt).toLocaleTimeString();
  document.getElementById('status').textContent = `data from ${m.source === 'prometheus' ? 'Prometheus' : 'the agents directly'}, rates over ${Math.round(m.windowSeconds)} s, at ${when}`;
  renderBanners(m.banners, m.note);
  renderGraph(m.topology);
  fill('edges', m.topology.edges.map((e) => [
    label(e.from), label(e.to), e.protocol, security(e), num(e.connectionsPerSecond), num(e.connections, 0), bytes(e.bytesPerSecond),
    num(e.requestsPerSecond), { text: `${(e.errorRate * 100).toFixed(1)} %`, cls: 'num' }, num(e.p99Ms, 1), { text: e.health, cls: `health-${e.health}` },
  ]), 'no traffic seen yet');
  const s = m.security;
  fill('namespaces', s.namespaces.map((n) => [n.namespace, num(n.workloads, 0), n.enrolled === n.workloads ? 'all' : `${n.enrolled} of ${n.workloads}`]), 'no namespaces');
  fill('workloads', s.workloads.map((w) => [`${w.namespace}/${w.name}`, w.node ?? '–', w.identity, w.enrolled ? 'yes' : 'no', w.modeFromPolicy ? w.mode : `${w.mode} (default)`]), 'no workloads');
  fill('plaintext', s.plaintextEdges.map((e) => [label(e.from), label(e.to), num(e.connectionsPerSecond), e.reporter]), 'none: every connection into an enrolled workload used mutual TLS');
  fill('nodelocal', s.nodeLocalPlaintextEdges.map((e) => [label(e.from), label(e.to), num(e.connectionsPerSecond)]), 'none');
  fill('denials', s.deniedEdges.map((d) => [d.from, d.to, num(d.perSecond), num(d.total, 0)]), 'no denials');
  fill('certificates', s.certificates.map((c) => [c.identity, c.instance, new Date(c.expiresAt).toISOString(), duration(c.secondsLeft), c.renewalFailing ? { text: 'FAILING', cls: 'plain' } : 'ok']), 'no certificates reported');
  fill('revoked', s.revoked.map((r) => [r.serial, r.identity ?? '–', r.node ?? '–', r.revokedAt ? new Date(r.revokedAt).toISOString() : '–']), 'none revoked');
  fill('agents', m.control.agents.map((a) => [
    a.node, { text: a.state, cls: `state-${a.state}` }, a.configVersion ?? '–', `${a.ackedResources}/${a.desiredResources}`, num(a.pendingPushes, 0),
    a.connectedAt ? new Date(a.connectedAt).toISOString() : '–', a.metricsReachable ? 'ok' : { text: 'unreachable', cls: 'plain' },
    a.rejected.map((r) => `${r.key}: ${r.message}`).join('; ') || '–',
  ]), 'no agents');
  fill('problems', m.control.manifestProblems.map((p) => [p]), 'none');
}

async function refresh() {
  try {
    const res = await fetch('/api/mesh', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
  } catch (err) {
    document.getElementById('status').textContent = `cannot load /api/mesh: ${err.message}`;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
