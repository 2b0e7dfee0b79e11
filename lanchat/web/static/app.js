// lanchat's web window. Every text from a peer goes into the page with textContent, never
// as HTML; control and bidi characters are made visible first (like lanchat/text.py).
"use strict";

const MAX_DOM = 600;          // messages kept in the page; older ones reload from the store
const PAGE = 100;             // messages per history request
const RETRY_MIN_MS = 300;
const RETRY_MAX_MS = 5000;

const $ = (id) => document.getElementById(id);
const state = {
  me: null, epoch: "", lastSeq: -1, socket: null, hold: false, retryMs: RETRY_MIN_MS,
  convs: new Map(), active: "all", shown: new Map(), transfers: new Map(),
  hasOlder: true, detached: false, loading: false, received: 0,
};
window.lanchat = state;  // for people debugging (and the browser tests)

// -- text -------------------------------------------------------------------------------

const BIDI = /[\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
function visible(text) {
  text = String(text);
  if (!UNSAFE.test(text)) return text;  // the common case: one scan, no copies
  return text
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) =>
      c === "\u007f" ? "^?" : "^" + String.fromCharCode(c.charCodeAt(0) + 64))
    .replace(/[\u0080-\u009f]/g, (c) => "<U+" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0") + ">")
    .replace(BIDI, (c) => "<U+" + c.charCodeAt(0).toString(16).toUpperCase() + ">");
}
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = visible(text);
  return node;
}
const CLOCK = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });  // made once: costly
let clockMinute = -1, clockText = "";
function clock(ts) {
  const minute = Math.floor(ts / 60);
  if (minute !== clockMinute) { clockMinute = minute; clockText = CLOCK.format(new Date(ts * 1000)); }
  return clockText;
}
function human(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
}
function notice(text) {
  const p = $("notice");
  p.textContent = visible(text);
  p.hidden = !text;
}

// -- server -----------------------------------------------------------------------------

async function api(path, options) {
  const res = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  const body = res.headers.get("Content-Type")?.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new Error(typeof body === "string" ? body.trim() : res.statusText);
  return body;
}
function post(path, data) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                     body: JSON.stringify(data || {}) });
}

// -- conversations ----------------------------------------------------------------------

function convOfMessage(ev) {
  if (ev.room) return "room:" + ev.room;
  if (ev.to === "broadcast") return "all";
  return "peer:" + ev.from.id;
}
function ensureConv(key, fields) {
  let c = state.convs.get(key);
  if (!c) {
    c = { key, title: key, unread: 0, online: false, kind: "", trust: "", topic: "", peer: null };
    state.convs.set(key, c);
  }
  Object.assign(c, fields || {});
  return c;
}
function peerConv(peer) {
  return ensureConv("peer:" + peer.id, { title: peer.nick, online: !!peer.online,
    kind: peer.kind || "", trust: peer.trust || "", peer });
}
function marks(c) {
  const out = [];
  if (c.kind && c.kind !== "lanchat") out.push(["", c.kind]);
  if (c.kind === "xmpp") out.push(["unencrypted", "unencrypted"]);
  if (c.trust === "verified" || c.trust === "trusted") out.push(["verified", "✓ " + c.trust]);
  return out.map(([cls, text]) => el("span", "mark " + cls, text));
}
function renderConvs() {
  const list = $("convs");
  const keys = [...state.convs.keys()].sort((a, b) => {
    const rank = (k) => (k === "all" ? 0 : k.startsWith("room:") ? 1 : 2);
    const ca = state.convs.get(a), cb = state.convs.get(b);
    return rank(a) - rank(b) || (cb.online - ca.online) || ca.title.localeCompare(cb.title);
  });
  const items = keys.map((key) => {
    const c = state.convs.get(key);
    const li = document.createElement("li");
    const b = el("button");
    b.type = "button";
    b.dataset.conv = key;
    if (key === state.active) b.setAttribute("aria-current", "true");
    const dot = el("span", "dot" + (c.online || key === "all" || key.startsWith("room:") ? " on" : ""));
    b.append(dot, el("span", "name", c.title), ...marks(c));
    if (c.unread) b.append(el("span", "badge", String(c.unread)));
    b.setAttribute("aria-label", c.title + (c.unread ? `, ${c.unread} unread` : "") +
                   (key.startsWith("peer:") ? (c.online ? ", online" : ", offline") : ""));
    b.addEventListener("click", () => openConv(key));
    li.append(b);
    return li;
  });
  list.replaceChildren(...items);
}
function renderHead() {
  const c = state.convs.get(state.active) || ensureConv("all");
  $("conv-title").textContent = visible(c.title);
  $("conv-marks").replaceChildren(...marks(c));
  $("conv-topic").textContent = visible(c.topic || "");
  $("safety-btn").hidden = !state.active.startsWith("peer:");
  $("safety").hidden = true;
  $("input").placeholder = "Message " + visible(c.title) + " (Enter sends, Shift+Enter adds a line)";
}
async function openConv(key) {
  state.active = key;
  const c = ensureConv(key);
  c.unread = 0;
  renderConvs();
  renderHead();
  await loadLatest();
  $("input").focus();
}

// -- messages ---------------------------------------------------------------------------

const MAX_DELIVERED = 5000;  // acks remembered for rows not drawn yet
const deliveredEarly = new Set();
function rememberDelivered(id) {
  deliveredEarly.add(id);
  if (deliveredEarly.size > MAX_DELIVERED) deliveredEarly.delete(deliveredEarly.values().next().value);
}
function messageItem(m) {
  if (m.direction === "out" && deliveredEarly.delete(m.id)) m.delivered = true;
  const li = document.createElement("li");
  li.className = m.direction === "out" ? "out" : "in";
  li.dataset.id = m.id;
  if (m.seq) li.dataset.seq = String(m.seq);
  const text = String(m.text);
  const action = text.startsWith("/me ");
  li.append(el("time", "time", clock(m.ts)),
            el("span", "nick", action ? "* " + m.nick : m.nick),
            el("span", "text", action ? text.slice(4) : text));
  // sent from a page now: "…" until the peer (or, for everyone, any peer) stored it
  if (m.live) li.append(el("span", "ack" + (m.delivered ? " done" : ""), m.delivered ? "✓" : "…"));
  return li;
}
// Whether the list is scrolled to its end; kept by the scroll handler so that adding rows
// never has to ask the layout first.
let atEnd = true;
function pinned() {
  const log = $("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}
function trimTop() {
  const log = $("log");
  const excess = log.children.length - MAX_DOM;
  if (excess > 0) {  // one range removal, not one per row
    for (let i = 0; i < excess; i++) state.shown.delete(log.children[i].dataset.id);
    const range = document.createRange();
    range.setStartBefore(log.firstElementChild);
    range.setEndBefore(log.children[excess]);
    range.deleteContents();
    state.hasOlder = true;
  }
  $("older").hidden = !state.hasOlder;
}
function trimBottom() {
  const log = $("log");
  while (log.children.length > MAX_DOM) {
    state.shown.delete(log.lastElementChild.dataset.id);
    log.lastElementChild.remove();
    state.detached = true;
  }
  $("latest").hidden = !state.detached;
}
// Rows that arrived since the last frame: written once per frame (one layout, however
// many messages came), or at once while the page is hidden (no frames then).
let pendingRows = [];
let frameAsked = false;
// Live rows of the conversation whose latest page is being read: that page may have been
// read before they were stored, so they are kept after its rows.
let arrivedWhileLoading = null;
function appendLive(list) {
  if (arrivedWhileLoading && list.length) arrivedWhileLoading.push(...list);
  if (state.detached || !list.length) return;
  pendingRows.push(...list);
  if (document.hidden) { flushRows(); return; }
  if (!frameAsked) { frameAsked = true; requestAnimationFrame(flushRows); }
}
function flushRows() {
  frameAsked = false;
  if (pendingRows.length > MAX_DOM) state.hasOlder = true;
  const list = pendingRows.length > MAX_DOM ? pendingRows.slice(-MAX_DOM) : pendingRows;
  pendingRows = [];
  if (state.detached || !list.length) return;
  const stick = atEnd;
  const frag = document.createDocumentFragment();
  for (const m of list) {
    if (state.shown.has(m.id)) continue;
    const li = messageItem(m);
    state.shown.set(m.id, li);
    frag.append(li);
  }
  $("log").append(frag);
  trimTop();
  if (stick) $("log").scrollTop = $("log").scrollHeight;
}
function histQuery(before) {
  const q = new URLSearchParams({ conv: state.active, limit: String(PAGE) });
  if (before) q.set("before", String(before));
  return "/api/history?" + q;
}
async function loadLatest() {
  const key = state.active;
  state.loading = true;
  const arrived = arrivedWhileLoading = [];
  try {
    const page = await api(histQuery(null));
    if (key !== state.active) return;
    pendingRows = [];
    state.shown.clear();
    state.detached = false;
    state.hasOlder = page.messages.length >= PAGE;
    const frag = document.createDocumentFragment();
    for (const m of [...page.messages, ...arrived]) {
      if (state.shown.has(m.id)) continue;
      const li = messageItem(m);
      state.shown.set(m.id, li);
      frag.append(li);
    }
    $("log").replaceChildren(frag);
    trimTop();  // a flood while the page was read may bring more than MAX_DOM rows
    $("latest").hidden = true;
    $("log").scrollTop = $("log").scrollHeight;
    atEnd = true;
  } catch (err) {
    notice("could not load the history: " + err.message);
  } finally {
    if (arrivedWhileLoading === arrived) arrivedWhileLoading = null;
    state.loading = false;
  }
}
function oldestSeq() {
  let low = 0;
  for (const li of $("log").children) {
    const s = Number(li.dataset.seq || 0);
    if (s && (!low || s < low)) low = s;
  }
  return low;
}
async function loadOlder() {
  if (state.loading || !state.hasOlder) return;
  const before = oldestSeq();
  if (!before) { state.hasOlder = false; $("older").hidden = true; return; }
  const key = state.active;
  state.loading = true;
  try {
    const page = await api(histQuery(before));
    if (key !== state.active) return;
    const log = $("log");
    const height = log.scrollHeight;
    const frag = document.createDocumentFragment();
    for (const m of page.messages) {
      if (state.shown.has(m.id)) continue;
      const li = messageItem(m);
      state.shown.set(m.id, li);
      frag.append(li);
    }
    log.prepend(frag);
    log.scrollTop += log.scrollHeight - height;
    state.hasOlder = page.messages.length >= PAGE;
    $("older").hidden = !state.hasOlder;
    trimBottom();
  } catch (err) {
    notice("could not load older messages: " + err.message);
  } finally {
    state.loading = false;
  }
}

// -- events -----------------------------------------------------------------------------

function notify(conv, m) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  const c = state.convs.get(conv);
  const title = visible(m.nick) + (conv === "all" ? " (everyone)" : c && conv.startsWith("room:") ? " in " + visible(c.title) : "");
  try { new Notification(title, { body: visible(m.text).slice(0, 200), tag: conv }); } catch (e) { /* not allowed here */ }
}
function applyEvents(events) {
  const live = [];
  let convsChanged = false;
  for (const ev of events) {
    if (ev.n <= state.lastSeq) continue;
    state.lastSeq = ev.n;
    switch (ev.event) {
      case "message": {
        state.received++;
        const conv = convOfMessage(ev);
        const c = ensureConv(conv, conv.startsWith("peer:") && !state.convs.has(conv) ? { title: ev.from.nick } : {});
        const m = { id: ev.id, seq: ev.seq, nick: ev.from.nick, direction: "in", text: ev.text, ts: ev.sent || ev.ts };
        if (conv === state.active) live.push(m);
        if (conv !== state.active || document.hidden) {
          if (conv !== state.active) { c.unread++; convsChanged = true; }
          notify(conv, m);
        }
        break;
      }
      case "sent": {
        const m = { id: ev.id, nick: ev.nick, direction: "out", text: ev.text, ts: ev.ts, live: true };
        if (ev.conv === state.active) live.push(m);
        break;
      }
      case "delivered": {
        const li = state.shown.get(ev.id);
        const ack = li && li.querySelector(".ack");
        if (ack) { ack.textContent = "✓"; ack.classList.add("done"); }
        else rememberDelivered(ev.id);  // its row is still to be drawn
        break;
      }
      case "not_delivered": {
        const li = state.shown.get(ev.id);
        const ack = li && li.querySelector(".ack");
        if (ack) ack.textContent = visible("not delivered: " + ev.reason);
        break;
      }
      case "peer_joined": case "peer_updated": case "peer_left":
        peerConv(Object.assign({}, ev.peer, ev.event === "peer_left" ? { online: false } : {}));
        convsChanged = true;
        break;
      case "room_joined":
        ensureConv("room:" + ev.room, { title: ev.room, topic: ev.topic || "", kind: ev.kind === "private" ? "private" : "" });
        convsChanged = true;
        break;
      case "room_left":
        state.convs.delete("room:" + ev.room);
        if (state.active === "room:" + ev.room) { state.active = "all"; loadLatest(); }
        convsChanged = true;
        break;
      case "topic":
        ensureConv("room:" + ev.room, { topic: ev.topic || "" });
        convsChanged = true;
        break;
      case "member_joined": case "member_left":
        break;
      case "file_offer": case "file_sent": case "file_progress": case "file_done": case "file_failed":
        transferEvent(ev);
        break;
      case "error":
        if (ev.code !== "session_refused") notice(ev.message);
        break;
      default:
        break;
    }
  }
  appendLive(live);
  if (convsChanged) { renderConvs(); renderHead(); }
}

// -- the socket -------------------------------------------------------------------------

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + cls;
}
function connect() {
  if (state.hold) return;
  const q = new URLSearchParams({ epoch: state.epoch, last: String(state.lastSeq) });
  const ws = new WebSocket(`ws://${location.host}/ws?${q}`);
  state.socket = ws;
  ws.onopen = () => { setStatus("live", "live"); state.retryMs = RETRY_MIN_MS; };
  ws.onmessage = (msg) => {
    const frame = JSON.parse(msg.data);
    if (frame.type === "events") applyEvents(frame.events);
    else if (frame.type === "reset") { ws.onclose = null; ws.close(); reload().then(connect); }
  };
  ws.onclose = () => {
    if (state.socket !== ws) return;
    state.socket = null;
    setStatus("reconnecting…", "down");
    setTimeout(connect, state.retryMs);
    state.retryMs = Math.min(RETRY_MAX_MS, state.retryMs * 2);
  };
}
state.release = () => { state.hold = false; if (!state.socket) connect(); };

async function reload() {
  const s = await api("/api/state");
  state.me = s.me;
  state.epoch = s.epoch;
  state.lastSeq = s.seq;
  $("me").textContent = visible("you are " + s.me.nick);
  ensureConv("all", { title: "Everyone", online: true });
  for (const p of s.peers) peerConv(p);
  for (const r of s.rooms || []) ensureConv("room:" + r.room, { title: r.room, topic: r.topic || "", kind: r.kind === "private" ? "private" : "" });
  for (const t of s.transfers) transferRow(t);
  if (!state.convs.has(state.active)) state.active = "all";
  renderConvs();
  renderHead();
  await loadLatest();
}

// -- files ------------------------------------------------------------------------------

function transferRow(t) {
  let row = state.transfers.get(t.transfer);
  if (!row) {
    const li = el("li");
    li.dataset.transfer = t.transfer;
    row = { li, t: {}, samples: [], bar: el("progress"), label: el("span", "tname"), st: el("span", "tstate"), actions: el("span") };
    row.li.append(row.label, row.bar, row.st, row.actions);
    state.transfers.set(t.transfer, row);
    $("transfers").prepend(li);
    $("files").hidden = false;
  }
  Object.assign(row.t, t);
  const x = row.t;
  const arrow = x.direction === "out" ? "→ " : "← ";
  row.label.textContent = visible(arrow + (x.nick || "") + ": " + (x.name || "") + " (" + human(x.size || 0) + ")");
  row.bar.max = x.size || 1;
  row.bar.value = x.state === "done" ? (x.size || 1) : (x.done || 0);
  row.st.className = "tstate " + (x.state || "");
  const verified = x.state === "done" && (x.digest || x.sha256) ? "done, verified" : "";
  row.st.textContent = visible(x.stateText || verified || x.state || "");
  row.actions.replaceChildren();
  if (x.direction === "in" && x.state === "offered") {
    const yes = el("button", "accept", "Accept"), no = el("button", "decline", "Decline");
    yes.type = no.type = "button";
    yes.addEventListener("click", () => answer(x.transfer, "accept"));
    no.addEventListener("click", () => answer(x.transfer, "decline"));
    row.actions.append(yes, no);
  }
  if (x.direction === "in" && x.state === "done") {
    const a = el("a", "download", "Save");
    a.href = "/api/download/" + encodeURIComponent(x.transfer);
    row.actions.append(a);
  }
  return row;
}
function transferEvent(ev) {
  const known = state.transfers.get(ev.transfer);
  const base = known ? { transfer: ev.transfer } : { transfer: ev.transfer, direction: ev.direction || "out", size: ev.size || 0 };
  switch (ev.event) {
    case "file_offer":
      transferRow(Object.assign(base, { direction: "in", nick: ev.from.nick, peer: ev.from.id, name: ev.name, size: ev.size, state: "offered" }));
      break;
    case "file_sent": {
      const c = state.convs.get("peer:" + ev.to);
      transferRow(Object.assign(base, { direction: "out", nick: c ? c.title : "", name: ev.name, size: ev.size, state: "offered", stateText: "offered, waiting for an answer" }));
      break;
    }
    case "file_progress": {
      const row = transferRow(Object.assign(base, { done: ev.done, size: ev.size, state: "accepted" }));
      const now = performance.now() / 1000;
      row.samples.push([now, ev.done]);
      while (row.samples.length > 2 && now - row.samples[0][0] > 5) row.samples.shift();
      const [t0, d0] = row.samples[0];
      const rate = now > t0 ? (ev.done - d0) / (now - t0) : 0;
      const left = rate > 0 ? Math.ceil((ev.size - ev.done) / rate) : null;
      row.t.stateText = Math.floor(100 * ev.done / Math.max(1, ev.size)) + "%" + (rate > 0 ? ` · ${human(rate)}/s · ${left} s left` : "");
      transferRow(row.t);
      break;
    }
    case "file_done":
      transferRow(Object.assign(base, { state: "done", done: ev.size, stateText: "done, verified" }));
      break;
    case "file_failed":
      transferRow(Object.assign(base, { state: "failed", stateText: "failed: " + ev.reason + (ev.resumable ? " (will resume)" : "") }));
      break;
  }
}
async function answer(tid, verb) {
  try { await post(`/api/transfers/${encodeURIComponent(tid)}/${verb}`); }
  catch (err) { notice(err.message); return; }
  const row = state.transfers.get(tid);
  // events may have moved it on already (a small file is done before this answer)
  if (row && row.t.state === "offered") {
    const now = verb === "accept" ? "accepted" : "declined";
    transferRow({ transfer: tid, state: now, stateText: now });
  }
}
async function sendFiles(files) {
  if (!state.active.startsWith("peer:")) { notice("choose a person on the left to send files to"); return; }
  const peer = state.active.slice(5);
  for (const file of files) {
    const q = new URLSearchParams({ to: peer, name: file.name });
    try {
      await api("/api/upload?" + q, { method: "PUT", body: file, headers: { "Content-Type": "application/octet-stream" } });
      notice("");
    } catch (err) {
      notice("could not send " + file.name + ": " + err.message);
    }
  }
}

// -- input, search, safety, keys -------------------------------------------------------

function output(text) {
  const out = $("output");
  out.textContent = visible(text);
  out.hidden = !text;
}
async function submit() {
  const box = $("input");
  const text = box.value;
  if (!text.trim()) return;
  try {
    if (text.startsWith("/") && !text.startsWith("//")) {
      const res = await post("/api/command", { line: text });
      output(res.text);
      box.value = "";
      notice("");
      return;
    }
    await post("/api/send", { conv: state.active, text: text.startsWith("//") ? text.slice(1) : text });
    box.value = "";
    notice("");
  } catch (err) {
    notice(err.message);
  }
}
async function search(q) {
  const list = $("result-list");
  try {
    const res = await api("/api/search?" + new URLSearchParams({ q }));
    const items = res.messages.map((m) => {
      const li = el("li"), b = el("button");
      b.type = "button";
      b.append(el("span", "time", clock(m.ts) + " "), el("b", "", (m.direction === "out" ? "→ " : "← ") + m.with + ": "), el("span", "text", m.text));
      b.addEventListener("click", () => { $("results").hidden = true; openConv(m.room ? "room:" + m.room : m.broadcast || m.peer === "*" ? "all" : "peer:" + m.peer); });
      li.append(b);
      return li;
    });
    if (!items.length) items.push(el("li", "", "nothing matches"));
    list.replaceChildren(...items);
    $("results").hidden = false;
    list.querySelector("button")?.focus();
  } catch (err) {
    notice(err.message);
  }
}
async function showSafety() {
  const peer = state.active.slice(5);
  try {
    const s = await api(`/api/peers/${encodeURIComponent(peer)}/safety`);
    $("safety-nick").textContent = visible(state.convs.get(state.active).title);
    $("safety-code").textContent = s.code;
    $("safety").hidden = false;
    $("verify-btn").focus();
  } catch (err) {
    notice(err.message);
  }
}
function moveConv(step) {
  const buttons = [...document.querySelectorAll("#convs button")];
  const i = buttons.findIndex((b) => b.dataset.conv === state.active);
  const next = buttons[(i + step + buttons.length) % buttons.length];
  if (!next) return;
  const key = next.dataset.conv;  // the list is redrawn: find the new button
  openConv(key).then(() => document.querySelector(`#convs button[data-conv="${CSS.escape(key)}"]`)?.focus());
}

function wire() {
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  $("log").addEventListener("scroll", () => {
    const log = $("log");
    atEnd = pinned();
    if (log.scrollTop < 60) loadOlder();
    if (state.detached && atEnd) loadLatest();
  }, { passive: true });
  $("older").addEventListener("click", loadOlder);
  $("latest").addEventListener("click", loadLatest);
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); const q = $("search").value.trim(); if (q) search(q); });
  $("results-close").addEventListener("click", () => { $("results").hidden = true; $("search").focus(); });
  $("safety-btn").addEventListener("click", showSafety);
  $("safety-close").addEventListener("click", () => { $("safety").hidden = true; });
  $("verify-btn").addEventListener("click", async () => {
    try {
      const res = await post(`/api/peers/${encodeURIComponent(state.active.slice(5))}/verify`);
      peerConv(res.peer);
      renderConvs(); renderHead();
    } catch (err) { notice(err.message); }
  });
  $("file-pick").addEventListener("change", (e) => { sendFiles([...e.target.files]); e.target.value = ""; });
  document.querySelector(".file-btn").addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-pick").click(); }
  });
  const main = $("main");
  let depth = 0;
  main.addEventListener("dragenter", (e) => { if (e.dataTransfer?.types.includes("Files")) { depth++; $("drop").hidden = false; } });
  main.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) $("drop").hidden = true; });
  main.addEventListener("dragover", (e) => { e.preventDefault(); });
  main.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    $("drop").hidden = true;
    if (e.dataTransfer?.files.length) sendFiles([...e.dataTransfer.files]);
  });
  document.addEventListener("keydown", (e) => {
    if (e.altKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) { e.preventDefault(); moveConv(e.key === "ArrowUp" ? -1 : 1); }
    else if (e.ctrlKey && e.key.toLowerCase() === "k") { e.preventDefault(); $("search").focus(); }
    else if (e.key === "Escape") { $("results").hidden = true; $("safety").hidden = true; output(""); }
  });
  if ("Notification" in window && Notification.permission === "default") {
    const b = $("notify");
    b.hidden = false;
    b.addEventListener("click", () => Notification.requestPermission().then(() => { b.hidden = true; }));
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) { const c = state.convs.get(state.active); if (c && c.unread) { c.unread = 0; renderConvs(); } }
  });
}

wire();
reload().then(() => { document.body.dataset.ready = String(performance.now()); connect(); })
  .catch((err) => notice("cannot load: " + err.message));
