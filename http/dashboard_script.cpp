// The dashboard's script: polls /api/status every 2 s and draws the pipeline
// graph (SVG), runs, latency with sparklines kept in the page, models,
// nodes and dead letters. Plain DOM, no library.
#include "http/dashboard_assets.hpp"

namespace turing::http {

const char* const dashboard_js = R"js(
"use strict";
const POLL_MS = 2000;
const SPARK_POINTS = 60;          // 2 minutes of p95 at one poll every 2 s
const p95History = new Map();     // stage -> [p95 ms]
const SVG_NS = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1000) return Math.round(v) + " ms";
  if (v < 60000) return (v / 1000).toFixed(1) + " s";
  return (v / 60000).toFixed(1) + " min";
}
function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
function fillBody(table, rows) {
  const body = document.querySelector(table + " tbody");
  body.replaceChildren(...rows);
}
function row(cells) {
  const tr = el("tr");
  for (const c of cells) {
    if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
    else tr.appendChild(el("td", {}, String(c)));
  }
  return tr;
}

// Columns by longest path from the entry stages; sinks in the last column.
function layout(status) {
  const stages = status.stages.filter(s => s.configured !== false).map(s => s.stage);
  const col = new Map(stages.map(s => [s, 0]));
  const stageEdges = status.edges.filter(e => e.kind !== "sink");
  for (let pass = 0; pass < stages.length; ++pass) {
    let changed = false;
    for (const e of stageEdges) {
      if (!col.has(e.from) || !col.has(e.to)) continue;
      if (col.get(e.to) < col.get(e.from) + 1) { col.set(e.to, col.get(e.from) + 1); changed = true; }
    }
    if (!changed) break;
  }
  const maxCol = Math.max(0, ...col.values());
  const sinks = [...new Set(status.edges.filter(e => e.kind === "sink").map(e => e.to))];
  if (status.stages.some(s => s.dead > 0) && !sinks.includes("dead")) sinks.push("dead");
  for (const s of sinks) col.set("sink:" + s, maxCol + 1);
  const byCol = new Map();
  for (const [name, c] of col) { if (!byCol.has(c)) byCol.set(c, []); byCol.get(c).push(name); }
  const W = 165, H = 62, GX = 56, GY = 22, pos = new Map();
  let height = 0;
  for (const [c, names] of byCol) {
    names.forEach((n, i) => pos.set(n, { x: 10 + c * (W + GX), y: 10 + i * (H + GY), w: W, h: H }));
    height = Math.max(height, 10 + names.length * (H + GY));
  }
  return { pos, sinks, width: 20 + (maxCol + 2) * (W + GX), height: height + 10 };
}

function drawGraph(status) {
  const root = document.getElementById("pipeline");
  const { pos, sinks, width, height } = layout(status);
  // Scaled to the section's width (the style sheet): a long pipeline shrinks
  // instead of scrolling out of sight.
  root.setAttribute("viewBox", "0 0 " + width + " " + height);
  root.style.maxHeight = height + "px";
  const parts = [svg("defs")];
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
                                 markerWidth: "7", markerHeight: "7", orient: "auto" });
  marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a94a3" }));
  parts[0].appendChild(marker);
  const failed = new Set(Object.keys((status.this_node || {}).failed_stages || {}));
  for (const n of status.nodes || []) for (const s of Object.keys(n.failed_stages || {})) if (n.state === "alive") failed.add(s);
  // Edges first, under the boxes; a stage's dead letters go to the dead sink.
  const edges = status.edges.map(e => ({ from: e.from, to: e.kind === "sink" ? "sink:" + e.to : e.to,
                                         label: e.outcome + " " + e.last_minute + "/min" }));
  for (const s of status.stages) if (s.dead > 0 && pos.has(s.stage)) edges.push({ from: s.stage, to: "sink:dead", label: s.dead + " dead" });
  for (const e of edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
    parts.push(svg("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
                             "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to }));
    parts.push(svg("text", { class: "edge-label", x: mx, y: (y1 + y2) / 2 - 4, "text-anchor": "middle" }, e.label));
  }
  for (const s of status.stages) {
    const p = pos.get(s.stage);
    if (!p) continue;
    const g = svg("g", { class: "stage" + (failed.has(s.stage) ? " failed" : ""), "data-stage": s.stage,
                         "data-done": s.done, "data-ready": s.ready, "data-running": s.running,
                         "data-dead": s.dead, transform: `translate(${p.x},${p.y})` });
    g.appendChild(svg("rect", { width: p.w, height: p.h, rx: 6 }));
    g.appendChild(svg("text", { class: "title", x: 8, y: 17 }, s.stage + (failed.has(s.stage) ? " FAILED" : "")));
    g.appendChild(svg("text", { class: "counts", x: 8, y: 34 }, `ready ${s.ready + s.delayed}  running ${s.running}`));
    g.appendChild(svg("text", { class: "counts", x: 8, y: 50 }, `done ${s.done}  retrying ${s.retrying}  dead ${s.dead}`));
    parts.push(g);
  }
  for (const name of sinks) {
    const p = pos.get("sink:" + name);
    const n = name === "dead" ? status.stages.reduce((a, s) => a + s.dead, 0) : ((status.sinks || {})[name] || 0);
    const g = svg("g", { class: name === "dead" ? "dead-sink" : "sink", "data-sink": name, "data-items": n,
                         transform: `translate(${p.x},${p.y})` });
    g.appendChild(svg("rect", { width: p.w, height: p.h, rx: 18 }));
    g.appendChild(svg("text", { class: "title", x: 12, y: 26 }, name));
    g.appendChild(svg("text", { class: "counts", x: 12, y: 44 }, n + " item(s)"));
    parts.push(g);
  }
  root.replaceChildren(...parts);
}

function drawRuns(status) {
  const box = document.getElementById("runs");
  const runs = status.runs.slice().reverse().slice(0, 10);
  if (runs.length === 0) { box.replaceChildren(el("p", { class: "muted" }, "no runs")); return; }
  box.replaceChildren(...runs.map(r => {
    const d = el("div", { class: "run" + (r.finished ? " done" : ""), "data-run": r.id, "data-done": r.done });
    const pct = Math.floor(100 * r.progress);
    const rate = r.items_per_s_last_minute !== null ? r.items_per_s_last_minute : r.items_per_s;
    d.appendChild(el("div", {}, `run ${r.id} ${r.label ? "'" + r.label + "'" : ""} — ${r.done}/${r.items} (${pct} %), ` +
      (r.finished ? `finished in ${duration(r.elapsed_s)}` : `${rate.toFixed(1)} items/s, ETA ${duration(r.eta_s)}`)));
    const bar = el("div", { class: "bar" });
    bar.appendChild(el("div", { style: `width:${pct}%` }));
    d.appendChild(bar);
    return d;
  }));
}

function sparkline(values) {
  const s = svg("svg", { class: "spark", viewBox: "0 0 120 22", preserveAspectRatio: "none" });
  if (values.length < 2) return s;
  const max = Math.max(...values, 1);
  const pts = values.map((v, i) => `${(i * 120 / (SPARK_POINTS - 1)).toFixed(1)},${(21 - 20 * v / max).toFixed(1)}`);
  s.appendChild(svg("polyline", { points: pts.join(" ") }));
  return s;
}

function drawLatency(status) {
  fillBody("#latency", status.stages.filter(s => s.latency).map(s => {
    const h = p95History.get(s.stage) || [];
    if (s.latency.p95_ms !== null) h.push(s.latency.p95_ms);
    while (h.length > SPARK_POINTS) h.shift();
    p95History.set(s.stage, h);
    const rate = s.last_minute.fail_rate;
    return row([s.stage, ms(s.latency.p50_ms), ms(s.latency.p95_ms), sparkline(h),
                rate === null ? "–" : (100 * rate).toFixed(1) + " %"]);
  }));
}

function drawModels(status) {
  fillBody("#models", status.models.map(m => {
    const errors = Object.values(m.errors_last_minute).reduce((a, b) => a + b, 0);
    const state = m.unavailable_on.length ? "unavailable on " + m.unavailable_on.join(", ") : "ok";
    const tr = row([m.model, `${m.in_flight} / ${m.concurrency}`, m.calls_last_minute, errors, state]);
    tr.setAttribute("data-model", m.model);
    if (state !== "ok") tr.classList.add("bad");
    return tr;
  }));
}

function drawNodes(status) {
  fillBody("#nodes", status.nodes.map(n => {
    const failed = Object.keys(n.failed_stages || {});
    const tr = row([n.name, n.state, n.running_messages, ms(n.seen_ms_ago) + " ago", failed.join(", ") || "–"]);
    if (failed.length || n.state !== "alive") tr.classList.add(n.state === "stopped" ? "muted" : "bad");
    return tr;
  }));
}

function drawDead(status) {
  const dead = status.dead_letters || [];
  document.getElementById("dead-count").textContent = dead.length ? `(newest ${dead.length})` : "(none)";
  fillBody("#dead", dead.map(d => {
    const when = d.dead_at_ms ? new Date(d.dead_at_ms).toLocaleString() : "–";
    return row([when, d.stage, d.run_id, d.key === null ? "#" + d.item_id : d.key, el("span", { class: "reason" }, d.reason)]);
  }));
}

async function poll() {
  try {
    const res = await fetch("/api/status", { cache: "no-store" });
    const status = await res.json();
    if (!res.ok) throw new Error(status.error || res.statusText);
    document.getElementById("node").textContent = "node " + ((status.this_node || {}).name || "?");
    document.getElementById("database").textContent = status.database || "";
    document.getElementById("updated").textContent = "updated " + new Date(status.generated_at_ms).toLocaleTimeString();
    drawGraph(status);
    drawRuns(status);
    drawLatency(status);
    drawModels(status);
    drawNodes(status);
    drawDead(status);
  } catch (e) {
    document.getElementById("updated").textContent = "cannot read /api/status: " + e.message;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}
poll();
)js";

} // namespace turing::http
