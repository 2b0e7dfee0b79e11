// lanchat's web window, loaded in order: base.js (state, text, requests), messages.js
// (conversations and the message list), files.js (transfers), app.js (events, the socket,
// input; starts the page). Every text from a peer goes into the page with textContent,
// never as HTML; control and bidi characters are made visible first (like lanchat/text.py).
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
