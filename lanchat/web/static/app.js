// lanchat's web window: events, the socket, input, search, safety codes, keys; starts the
// page (loaded last: base.js, messages.js and files.js come first).
"use strict";

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
      case "sent": {  // ours, from this page or any other face of the node: drawn here only
        const m = { id: ev.id, nick: ev.from.nick, direction: "out", text: ev.text, ts: ev.sent || ev.ts, live: true };
        if (convOfSent(ev) === state.active) live.push(m);
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
      case "room_joined":  // a room's conversation is its id; its title says whose it is if shared
        ensureConv(roomKey(ev), { title: ev.room, topic: ev.topic || "", kind: ev.kind === "private" ? "private" : "" });
        convsChanged = true;
        break;
      case "room_left":
        state.convs.delete(roomKey(ev));
        if (state.active === roomKey(ev)) { state.active = "all"; loadLatest(); }
        convsChanged = true;
        break;
      case "room_invited": {  // nothing is joined until the user accepts: /join here or in the shell
        const typed = ev.room.includes(" (") ? ev.room.split(" (")[0] + "@" + ev.creator.slice(0, 8) : ev.room;
        notice(ev.by.nick + (TRUST_MARKS[ev.trust] || (ev.trust ? "" : " (never met)")) + " [" + ev.creator.slice(0, 8) + "] invites you to the private room " + ev.room + " (" + ev.members + " listed): /join " + typed + " to accept, /invites decline " + typed + " to say no");
        break;
      }
      case "topic":
        ensureConv(roomKey(ev), { topic: ev.topic || "" });
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
  for (const r of s.rooms || []) ensureConv(roomKey(r), { title: r.room, topic: r.topic || "", kind: r.kind === "private" ? "private" : "" });
  for (const t of s.transfers) transferRow(t);
  if (!state.convs.has(state.active)) state.active = "all";
  renderConvs();
  renderHead();
  await loadLatest();
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
    const res = await post("/api/send", { conv: state.active, text: text.startsWith("//") ? text.slice(1) : text });
    if (res.confirm) {  // held once (unencrypted peer): say why, keep the line to send again
      notice(res.text);
      return;
    }
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
      b.addEventListener("click", () => { $("results").hidden = true; openConv(m.room ? roomKey(m) : m.broadcast || m.peer === "*" ? "all" : "peer:" + m.peer); });
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
