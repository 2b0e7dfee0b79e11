// lanchat's web window: transfers, offers, uploads (after base.js and messages.js).
"use strict";

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
