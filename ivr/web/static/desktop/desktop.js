// Agent desktop: one websocket to the controller; screen pops, call state, notes, chats.
// Plain JS, no build step. Everything from the server is written with textContent (never as HTML).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = { csrf: "", agent: null, ws: null, pop: null, retry: 500, chats: new Map(), leaving: false, navigating: false };
window.__ivrPops = [];  // {pop_id, called_at, painted_at}: read by tests and the benchmark
// What other modules use: send(), the state, and the actions the keyboard (keys.js) dispatches to;
// the softphone and transfer modules register answer, hold, transfer and hangup here.
window.desk = window.desk || { actions: {} };
window.desk.state = state;

function text(el, value) { el.textContent = value == null || value === "" ? "—" : String(value); }
function fmtWait(s) { if (s == null) return "—"; s = Math.round(s); return s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s"; }

function send(msg) { if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(msg)); }
window.ivrDesk = { send, state };  // for transfer.js
window.desk.send = send;
function announce(value) { $("#announce").textContent = value; }  // the screen reader's live region

async function start() {
  const r = await fetch("/desktop/api/me", { credentials: "same-origin" });
  if (r.status === 401) { toLogin(); return; }
  const me = await r.json();
  state.csrf = me.csrf; state.agent = me.agent;
  text($("#agent-name"), me.agent.display_name);
  text($("#agent-skills"), Object.entries(me.agent.skills).map(([s, p]) => s + (p ? " (" + p + ")" : "")).join(", "));
  $("#btn-ready").onclick = () => send({ type: "ready" });
  $("#btn-pause").onclick = () => send({ type: "pause", reason: $("#pause-reason").value });
  const acts = window.desk.actions;
  acts.ready = () => { if (!$("#btn-ready").disabled) send({ type: "ready" }); };
  acts.pause = () => { if (!$("#btn-pause").disabled) send({ type: "pause", reason: $("#pause-reason").value }); };
  acts.wrapup = () => { const notes = $('#call [name="notes"]'); if (notes && !notes.closest("form").hidden) notes.focus(); };
  acts.call = () => { if (state.pop && state.pop.caller) window.deskOutbound.call(state.pop.caller, state.pop.journey_id); else $("#dial-number").focus(); };
  $("#btn-logout").onclick = logout;
  connect();
  if (me.agent.phone === "browser" && window.IvrSoftphone) window.IvrSoftphone.start(state.csrf);  // softphone.js
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(proto + "//" + location.host + "/desktop/ws?csrf=" + encodeURIComponent(state.csrf));
  state.ws = ws;
  ws.onopen = () => {
    state.retry = 500; $("#link").className = "link up";
    // back after a drop: the phone's credentials may have been revoked meanwhile (softphone.js)
    if (state.dropped && window.IvrSoftphone) window.IvrSoftphone.renew(state.csrf);
    state.dropped = false;
  };
  ws.onmessage = (e) => handle(JSON.parse(e.data));
  ws.onclose = (e) => {
    $("#link").className = "link down";
    state.dropped = true;
    if (e.code === 4001 || state.leaving) { toLogin(); return; }  // session ended: log in again
    setTimeout(connect, state.retry);            // the server may be restarting: back off, come back
    state.retry = Math.min(state.retry * 2, 10000);
  };
}

// The page leaves for the login form once. Signing out closes the desktop socket (code 4001)
// while the sign-out request is still answering: two navigations to the same address would
// abort each other, and the agent would see an error page instead of the login form.
function toLogin() {
  if (state.navigating) return;
  state.navigating = true;
  location.href = "/desktop/login";
}

async function logout() {
  state.leaving = true;
  if (window.IvrSoftphone) await window.IvrSoftphone.stop();
  try {
    await fetch("/desktop/api/logout", { method: "POST", headers: { "X-CSRF-Token": state.csrf }, credentials: "same-origin" });
  } finally {
    toLogin();
  }
}

function handle(msg) {
  switch (msg.type) {
    case "state": showState(msg.agent, msg.recovered); break;
    case "pop": showPop(msg.pop, "ringing"); if (msg.agent) showState(msg.agent); break;
    case "pop.cancel": if (state.pop && state.pop.uniqueid === msg.uniqueid) clearCall("Missed: " + msg.why); break;
    case "call.connected": activate(); break;
    case "call.ended": ended(msg); break;
    case "chat.offer": openChat(msg.contact, msg.pop); break;
    case "chat.message": chatLine(msg.contact_id, msg.text, false); break;
    case "chat.closed": closeChat(msg.contact_id, msg.by); break;
    case "error": window.deskOutbound.refused(msg.message); announce(msg.message); break;
  }
  // other scripts (transfer.js) follow the same messages, after the card is drawn
  document.dispatchEvent(new CustomEvent("ivr:message", { detail: msg }));
}

function showState(agent, recovered) {
  const pill = $("#status");
  pill.className = "pill " + agent.status;
  pill.dataset.status = agent.status;
  text(pill, agent.status.replace("_", "-"));
  pill.setAttribute("aria-label", "Your status: " + agent.status.replace("_", " ") + (agent.reason ? " (" + agent.reason + ")" : ""));
  $("#status-reason").textContent = agent.reason ? "(" + agent.reason + ")" : "";
  $("#btn-ready").disabled = agent.status === "ready" || agent.status === "ringing" || agent.status === "on_call";
  $("#btn-pause").disabled = agent.status === "ringing" || agent.status === "on_call";
  document.body.dataset.recovered = recovered ? "yes" : (document.body.dataset.recovered || "");
  if ((agent.status === "ready" || agent.status === "paused") && state.pop && !state.pop.wrapping) clearCall();
}

function clearCall(note) {
  state.pop = null;
  const card = $("#call");
  card.className = "card empty";
  card.replaceChildren();
  const p = document.createElement("p");
  p.className = "placeholder";
  p.textContent = note || "No call. When your phone rings the caller's details appear here.";
  card.append(p);
}

function li(list, value) { const el = document.createElement("li"); el.textContent = value; list.append(el); return el; }

function showPop(pop, phase) {
  state.pop = pop;
  const card = $("#call");
  card.replaceChildren($("#tpl-pop").content.cloneNode(true));
  card.className = "card " + phase;
  card.dataset.popId = pop.pop_id;
  card.dataset.journey = pop.journey_id || "";
  const f = (name) => card.querySelector('[data-f="' + name + '"]');
  const c = pop.customer || {};
  const outbound = pop.direction === "outbound";
  card.dataset.direction = outbound ? "outbound" : "inbound";
  if (outbound) text(f("phase"), "Calling the customer: your phone rings first");
  announce((outbound ? "Calling " : "Incoming call from ") + (c.name || pop.caller || "an unknown caller"));
  const callBack = f("call-customer");
  callBack.hidden = !pop.caller;  // the server refuses while a call is up, and says why
  callBack.onclick = () => window.deskOutbound.call(pop.caller, pop.journey_id);
  text(f("name"), c.name || (pop.known_customer ? "Known customer" : "New caller"));
  text(f("caller"), pop.caller);
  text(f("tier"), c.tier ? c.tier + " tier" : "no tier");
  text(f("language"), c.language || "en");
  text(f("waited"), fmtWait(pop.waited_s));
  const rec = pop.recognition;
  text(f("intent"), rec ? rec.intent : "(no intent)");
  f("confidence").textContent = rec && rec.confidence != null ? Math.round(rec.confidence * 100) + "% " + (rec.mode || "") : "";
  text(f("transcript"), rec && rec.transcript ? "“" + rec.transcript + "”" : "(keys only)");
  for (const step of pop.path || []) li(f("path"), step);
  const slots = f("slots");
  for (const s of pop.slots || []) {
    const tr = slots.insertRow();
    tr.insertCell().textContent = s.name;
    const v = tr.insertCell(); v.className = "v"; v.textContent = s.value;
    const ok = tr.insertCell(); ok.className = s.verified ? "ok" : "no"; ok.textContent = s.verified ? "✔ verified" : "unverified";
  }
  if (!(pop.slots || []).length) { const tr = slots.insertRow(); tr.insertCell().textContent = "nothing collected"; }
  text(f("queue"), outbound ? "You called them" : (pop.queue || "?") + (pop.skill ? " · skill " + pop.skill : "") + (pop.priority != null ? " · priority " + pop.priority : ""));
  for (const r of (pop.routing && pop.routing.reasons) || []) li(f("routing"), r);
  for (const m of pop.menus || []) li(f("menus"), m.step + ": " + (m.reordered ? "reordered — " : "as designed — ") + (m.reason || "no history"));
  if (!(pop.menus || []).length) li(f("menus"), "no menu personalized");
  const callable = pop.caller ? () => window.deskOutbound.call(pop.caller, pop.journey_id) : null;
  window.deskTimeline.render(f("timeline"), pop.timeline, callable);
  const form = f("wrap");
  form.onsubmit = (e) => {
    e.preventDefault();
    send({ type: "finish", journey_id: pop.journey_id, disposition: form.disposition.value, notes: form.notes.value, ready: true });
    state.pop.wrapping = false;
    clearCall("Saved. Ready for the next call.");
  };
  // "painted": after the browser has laid out and drawn this frame
  requestAnimationFrame(() => setTimeout(() => {
    const at = Date.now() / 1000;
    window.__ivrPops.push({ pop_id: pop.pop_id, called_at: pop.called_at, painted_at: at });
    send({ type: "painted", called_at: pop.called_at, at });
  }, 0));
}

function activate() {
  const card = $("#call");
  if (!state.pop) return;
  card.className = "card active";
  text($('[data-f="phase"]', card), "On call");
  $('[data-f="wrap"]', card).hidden = false;
}

function ended(msg) {
  const card = $("#call");
  if (!state.pop) return;
  state.pop.wrapping = true;
  card.className = "card active";
  text($('[data-f="phase"]', card), "Wrap-up: call ended (" + (msg.by || "") + ")");
  $('[data-f="wrap"]', card).hidden = false;
}

function openChat(contact, pop) {
  const box = document.createElement("div");
  box.className = "chat";
  box.dataset.contact = contact.contact_id;
  const head = document.createElement("strong");
  head.textContent = (pop.customer && pop.customer.name) || pop.caller || "Customer";
  const sub = document.createElement("div"); sub.className = "muted";
  sub.textContent = contact.channel + " · " + contact.skill + (pop.recognition ? " · " + pop.recognition.intent : "");
  const log = document.createElement("div"); log.className = "log";
  const form = document.createElement("form");
  const input = document.createElement("input"); input.placeholder = "Type a reply";
  const btn = document.createElement("button"); btn.textContent = "Send";
  const end = document.createElement("button"); end.type = "button"; end.className = "quiet"; end.textContent = "End";
  form.append(input, btn, end);
  form.onsubmit = (e) => { e.preventDefault(); if (!input.value) return; send({ type: "chat.send", contact_id: contact.contact_id, text: input.value }); chatLine(contact.contact_id, input.value, true); input.value = ""; };
  end.onclick = () => send({ type: "chat.end", contact_id: contact.contact_id });
  // what happened before this chat, worded by the server like the card's timeline
  const before = document.createElement("details");
  const summary = document.createElement("summary"); summary.textContent = "Before this chat";
  const lines = document.createElement("ul"); lines.className = "timeline"; lines.setAttribute("aria-label", "Customer timeline");
  window.deskTimeline.render(lines, pop.timeline, null);
  before.append(summary, lines);
  box.setAttribute("role", "region"); box.setAttribute("aria-label", "Chat with " + head.textContent);
  log.setAttribute("role", "log"); log.setAttribute("aria-live", "polite"); input.setAttribute("aria-label", "Reply");
  box.append(head, sub, before, log, form);
  $("#chats").append(box);
  state.chats.set(contact.contact_id, box);
}

function chatLine(id, value, mine) {
  const box = state.chats.get(id); if (!box) return;
  const line = document.createElement("div"); line.className = mine ? "me" : "them"; line.textContent = value;
  $(".log", box).append(line); $(".log", box).scrollTop = 1e9;
}

function closeChat(id, by) { const box = state.chats.get(id); if (box) { box.remove(); state.chats.delete(id); } }

start();
