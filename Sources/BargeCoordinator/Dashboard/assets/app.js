// Barge dashboard: plain JavaScript, no build step, nothing fetched from elsewhere. The page
// loads with a first snapshot (GET /v1/snapshot.js, so it is drawn by the time the page has
// loaded), then follows the server-sent events of GET /v1/events, which push a snapshot every
// second: jobs, agents, fleet totals. The token travels in the cookie that
// GET /?token=… set (HttpOnly), so the page never sees it.
"use strict";

const state = { snapshot: null, history: {}, agentRates: {}, lastAgents: null, filter: "" };
const main = document.getElementById("main");
const live = document.getElementById("live");

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Number(bytes) || 0, i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}
const rate = (bps) => `${size(bps)}/s`;
function clock(s) {
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}` : `${m}:${String(sec).padStart(2, "0")}`;
}
const percent = (j) => j.bytes_total > 0 ? Math.floor(100 * j.bytes_done / j.bytes_total) : (j.state === "succeeded" ? 100 : 0);
function bar(p) { return el("div", { class: "bar", title: `${p}%` }, el("span", { style: `width:${p}%` })); }
function stateCell(s) { return el("span", { class: `state ${s}` }, s); }
// A success that left source entries behind reads "partial", as `barge jobs` lists it.
const jobState = (j) => j.state === "succeeded" && j.untransferable_entries > 0 ? "partial" : j.state;

/// Each job's recent (time, bytes_done), for its rate, ETA and chart.
function remember(snapshot) {
  for (const j of snapshot.jobs) {
    const h = state.history[j.id] || (state.history[j.id] = []);
    if (!h.length || h[h.length - 1].t < snapshot.time) h.push({ t: snapshot.time, b: j.bytes_done });
    if (h.length > 600) h.shift();
  }
  if (state.lastAgents) {
    const dt = snapshot.time - state.lastAgents.time;
    for (const a of snapshot.agents) {
      const before = state.lastAgents.agents.find((x) => x.name === a.name);
      if (before && dt > 0) state.agentRates[a.name] = { sent: (a.bytes_sent - before.bytes_sent) / dt, received: (a.bytes_received - before.bytes_received) / dt };
    }
  }
  state.lastAgents = { time: snapshot.time, agents: snapshot.agents };
}
function jobRate(id) {
  const h = state.history[id] || [];
  const recent = h.filter((p) => p.t >= (h.length ? h[h.length - 1].t : 0) - 5);
  if (recent.length < 2) return 0;
  const a = recent[0], b = recent[recent.length - 1];
  return b.t > a.t ? (b.b - a.b) / (b.t - a.t) : 0;
}
function eta(j) {
  const r = jobRate(j.id);
  return r > 0 && j.bytes_total > j.bytes_done ? clock((j.bytes_total - j.bytes_done) / r) : "";
}

function overview(s) {
  const f = s.fleet;
  const done = f.succeeded_24h + f.failed_24h;
  return [
    el("h2", {}, "Fleet"),
    el("div", { class: "cards" },
      card("Total rate", rate(s.jobs.filter((j) => j.state === "running").reduce((sum, j) => sum + jobRate(j.id), 0))),
      card("Active jobs", f.active),
      card("Success, last 24 h", done ? `${Math.round(100 * f.succeeded_24h / done)}% of ${done}` : "no jobs ended"),
      card("Agents up", `${s.agents.filter((a) => a.state === "up").length} of ${s.agents.length}`)),
    el("h2", {}, "Running jobs"),
    jobsTable(s.jobs.filter((j) => j.state === "running" || j.state === "queued")),
  ];
}
function card(k, v) { return el("div", { class: "card" }, el("div", { class: "v" }, v), el("div", { class: "k" }, k)); }

function jobsTable(jobs) {
  if (!jobs.length) return el("p", { class: "muted" }, "No jobs.");
  return el("table", { id: "jobs" },
    el("tr", {}, ["Job", "State", "Progress", "", "Rate", "ETA", "Files", "Retries", "From", "To"].map((h) => el("th", {}, h))),
    jobs.map((j) => el("tr", { "data-job": j.id },
      el("td", {}, el("a", { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.id)),
      el("td", {}, stateCell(jobState(j))),
      el("td", {}, bar(percent(j))),
      el("td", { class: "num progress" }, `${percent(j)}% ${size(j.bytes_done)} / ${size(j.bytes_total)}`),
      el("td", { class: "num" }, j.state === "running" ? rate(jobRate(j.id)) : ""),
      el("td", { class: "num" }, j.state === "running" ? eta(j) : ""),
      el("td", { class: "num" }, `${j.files_done} / ${j.files_total}`),
      el("td", { class: "num" }, j.retries),
      el("td", {}, j.source), el("td", {}, j.destination))));
}

function jobsPage(s) {
  const states = ["", "queued", "running", "succeeded", "failed", "cancelled"];
  const select = el("select", { id: "filter", onchange: (e) => { state.filter = e.target.value; render(); } },
    states.map((x) => { const o = el("option", { value: x }, x || "all states"); if (x === state.filter) o.selected = true; return o; }));
  return [el("h2", {}, "Jobs ", select), jobsTable(s.jobs.filter((j) => !state.filter || j.state === state.filter))];
}

function chart(id) {
  const h = (state.history[id] || []).slice(-120);
  const points = [];
  for (let i = 1; i < h.length; i++) {
    const dt = h[i].t - h[i - 1].t;
    if (dt > 0) points.push({ t: h[i].t, r: (h[i].b - h[i - 1].b) / dt });
  }
  const W = 800, H = 180, pad = 30;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart"); svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...points.map((p) => p.r));
  if (points.length > 1) {
    const t0 = points[0].t, t1 = points[points.length - 1].t || t0 + 1;
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.map((p) => `${pad + (W - 2 * pad) * (p.t - t0) / Math.max(1, t1 - t0)},${H - pad - (H - 2 * pad) * p.r / max}`).join(" "));
    svg.append(line);
  }
  const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
  label.setAttribute("x", pad); label.setAttribute("y", 16); label.textContent = `throughput, peak ${rate(max)}`;
  svg.append(label);
  return svg;
}

function jobPage(s, id) {
  const j = s.jobs.find((x) => x.id === id);
  if (!j) return [el("p", { class: "muted" }, `Job ${id} is not among the recent jobs.`)];
  const rows = [
    ["State", stateCell(jobState(j))], ["Operation", j.operation || "transfer"], ["From", j.source], ["To", j.destination],
    ["Progress", el("span", { id: "job-progress" }, `${percent(j)}% — ${size(j.bytes_done)} of ${size(j.bytes_total)}`)],
    ["Rate", rate(jobRate(j.id))], ["ETA", eta(j) || "—"], ["Files", `${j.files_done} of ${j.files_total}`],
    ["Chunks", `${j.chunks_done} of ${j.chunks_total}, ${j.chunks_refetched} refetched`], ["On the wire", size(j.wire_bytes)],
    ["Dedup (not sent)", size(j.dedup_bytes)], ["Skipped (unchanged)", `${j.skipped_files} files, ${size(j.skipped_bytes)}`],
    ["Retries", j.retries], ["Bandwidth cap", j.bwlimit || "off"], ["Tier placement", j.tier || "site default (hot unless the site's policy says)"],
  ];
  if (j.verification) rows.push(["Verification", `${j.verification.state}: ${j.verification.chunks_checked} of ${j.verification.chunks_total} chunks, ${j.verification.mismatches} mismatches`]);
  if (j.untransferable_entries > 0) rows.push(["Not transferred", el("span", { class: "error" }, `${j.untransferable_entries} ${j.untransferable_entries === 1 ? "entry" : "entries"} (left out by the scan, or gone or changed at the source during the transfer); the first: ${j.first_untransferable}`)]);
  if (j.waiting) rows.push(["Waiting", el("span", { class: "error" }, j.waiting)]);
  if (j.error) rows.push(["Error", el("span", { class: "error" }, j.error)]);
  const codecs = (j.codecs || []).slice().sort((a, b) => b.raw_bytes - a.raw_bytes);
  const total = codecs.reduce((x, c) => x + c.raw_bytes, 0);
  return [
    el("h2", {}, `Job ${j.id}`),
    chart(j.id),
    el("dl", { class: "facts" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    el("h2", {}, "Lanes"),
    j.lanes && j.lanes.length ? el("table", { id: "lanes" },
      el("tr", {}, ["Lane", "Rate", "RTT", "Queue", "Window"].map((h) => el("th", {}, h))),
      j.lanes.map((l) => el("tr", { class: "lane" },
        el("td", {}, `${l.source} → ${l.destination}`), el("td", { class: "num" }, rate(l.send_rate)),
        el("td", { class: "num" }, `${l.rtt_ms.toFixed(2)} ms`), el("td", { class: "num" }, `${l.queueing_delay_ms.toFixed(2)} ms`),
        el("td", { class: "num" }, size(l.window_bytes))))) : el("p", { class: "muted" }, "No lane is sending now."),
    el("h2", {}, "Codec mix"),
    codecs.length ? el("table", {}, el("tr", {}, ["Codec", "Share", "Raw", "Encoded", "Ratio"].map((h) => el("th", {}, h))),
      codecs.map((c) => el("tr", {}, el("td", {}, c.codec), el("td", { class: "num" }, `${Math.round(100 * c.raw_bytes / Math.max(1, total))}%`),
        el("td", { class: "num" }, size(c.raw_bytes)), el("td", { class: "num" }, size(c.encoded_bytes)),
        el("td", { class: "num" }, (c.raw_bytes / Math.max(1, c.encoded_bytes)).toFixed(2))))) : el("p", { class: "muted" }, "Nothing sent yet."),
  ];
}

function agentsPage(s) {
  if (!s.agents.length) return [el("p", { class: "muted" }, "No agents have registered.")];
  return [el("h2", {}, "Agents"), el("table", { id: "agents" },
    el("tr", {}, ["Agent", "Site", "State", "Version", "Protocol", "Units held", "Sending", "Receiving", "Address"].map((h) => el("th", {}, h))),
    s.agents.map((a) => {
      const r = state.agentRates[a.name] || { sent: 0, received: 0 };
      return el("tr", { "data-agent": a.name }, el("td", {}, a.name), el("td", {}, a.site), el("td", {}, stateCell(a.state)),
        el("td", {}, a.version || "—"), el("td", { class: "num" }, a.protocol || ""), el("td", { class: "num" }, a.units_held),
        el("td", { class: "num" }, rate(r.sent)), el("td", { class: "num" }, rate(r.received)), el("td", {}, a.address));
    }))];
}

function render() {
  const s = state.snapshot;
  const route = location.hash.replace(/^#/, "") || "/";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", route === a.getAttribute("href").slice(1) || (route.startsWith("/jobs/") && a.dataset.page === "jobs"));
  if (!s) return;
  let content;
  if (route.startsWith("/jobs/")) content = jobPage(s, decodeURIComponent(route.slice(6)));
  else if (route === "/jobs") content = jobsPage(s);
  else if (route === "/agents") content = agentsPage(s);
  else content = overview(s);
  main.replaceChildren(...content);
}

function accept(snapshot) {
  state.snapshot = snapshot;
  remember(snapshot);
  render();
}

function start() {
  if (window.bargeSnapshot) accept(window.bargeSnapshot);
  else main.replaceChildren(el("p", { class: "error" }, "Not signed in: open /?token=YOUR_API_TOKEN (a viewer token is enough)."));
  const events = new EventSource("/v1/events");
  events.addEventListener("snapshot", (e) => { live.textContent = "live"; live.classList.add("on"); accept(JSON.parse(e.data)); });
  events.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  // The token was revoked: the server ends the stream, and trying again would only be refused.
  events.addEventListener("revoked", () => {
    events.close();
    live.textContent = "signed out: the API token was revoked";
    live.classList.remove("on");
  });
}
window.addEventListener("hashchange", render);
if (window.bargeSnapshot) accept(window.bargeSnapshot);
// The event stream opens once the page has loaded (it never ends, so the load must not wait for it).
window.addEventListener("load", () => setTimeout(start, 0));
