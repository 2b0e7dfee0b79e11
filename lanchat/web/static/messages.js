// lanchat's web window: the conversation list and the message list (after base.js).
"use strict";

// -- conversations ----------------------------------------------------------------------

const TRUST_MARKS = { verified: "\u2713", trusted: "\u2605" };  // as lanchat/naming.py
function roomKey(ev) { return "room:" + (ev.room_id || ev.room); }
function convOfMessage(ev) {
  if (ev.room) return roomKey(ev);
  if (ev.to === "broadcast") return "all";
  return "peer:" + ev.from.id;
}
function convOfSent(ev) {
  if (ev.room) return roomKey(ev);
  if (ev.to === "broadcast") return "all";
  return ev.recipients.length ? "peer:" + ev.recipients[0].id : "";
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
