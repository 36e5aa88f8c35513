// The wallboard: who is signed in, sign-out (with the session's CSRF token), and what the server
// pushes over the websocket: queues, waiting callers with their IVR context, agents, and today's
// KPIs (totals, a chart by quarter hour drawn as plain SVG, the holdout comparison). Times arrive
// absolute; the page counts seconds. The body's data-published-at and data-painted-at say when the
// last message was published and painted (read by the latency bench and the tests).
"use strict";

let csrf = "";
let board = null;

function seconds(since) {
  if (since === null || since === undefined) return "";
  const s = Math.max(0, Math.floor(Date.now() / 1000 - since));
  const m = Math.floor(s / 60);
  return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const value of cells) {
    const td = document.createElement("td");
    td.textContent = value; // never innerHTML: names come from the database
    tr.appendChild(td);
  }
  return tr;
}

function contact(c) {
  return c.channel + (c.queue ? ` (${c.queue})` : "") + (c.ringing ? " ringing" : "") + ` ${seconds(c.since)}`;
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

function number(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function chart(bars) {
  const box = document.getElementById("chart");
  const width = 600, height = 140, base = 125;
  const top = Math.max(1, ...bars.map((b) => b.offered));
  const slot = width / Math.max(bars.length, 8);
  const bar = Math.max(1, slot / 3 - 1);
  const nodes = [];
  bars.forEach((b, i) => {
    ["offered", "handled", "abandoned"].forEach((kind, k) => {
      const h = (b[kind] / top) * (base - 10);
      const r = svg("rect", { class: kind, x: i * slot + k * (bar + 1), y: base - h, width: bar, height: h });
      const title = svg("title", {});
      title.textContent = `${b.interval.slice(11, 16)} ${kind} ${b[kind]}`;
      r.appendChild(title);
      nodes.push(r);
    });
    if (bars.length <= 12 || i % 4 === 0) {
      const label = svg("text", { x: i * slot, y: height - 3 });
      label.textContent = b.interval.slice(11, 16);
      nodes.push(label);
    }
  });
  box.replaceChildren(...nodes);
}

function renderKpis(kpis) {
  const totals = kpis.totals;
  document.getElementById("offered").textContent = totals.offered;
  document.getElementById("handled").textContent = totals.handled;
  document.getElementById("abandoned").textContent = totals.abandoned;
  document.getElementById("service-level").textContent = percent(totals.service_level);
  chart(kpis.chart);
  const holdout = document.querySelector("#holdout tbody");
  holdout.replaceChildren(
    ...["personalized", "holdout"].filter((k) => kpis.holdout[k]).map((k) => {
      const h = kpis.holdout[k];
      return row([k, h.contacts, percent(h.containment), percent(h.first_option_share),
        h.avg_time_to_choice_s === null ? "–" : `${number(h.avg_time_to_choice_s)}s`,
        number(h.bad_input_per_contact, 2), percent(h.service_level), h.abandoned]);
    }),
  );
}

function render() {
  if (!board) return;
  const kpis = board.kpis || null;
  const level = (q) => (kpis && kpis.queues[q] ? percent(kpis.queues[q].service_level) : "–");
  const queues = document.querySelector("#queues tbody");
  queues.replaceChildren(
    ...board.queues.map((q) => row([q.queue, q.waiting, seconds(q.oldest_joined_at), level(q.queue), q.ready, q.busy, q.paused])),
  );
  const callers = document.querySelector("#callers tbody");
  callers.replaceChildren(
    ...(board.callers || []).map((c) => {
      const story = c.story || [];
      const tr = row([c.caller || "unknown", c.queue, seconds(c.joined_at), c.intent || "", c.verified ? "yes" : "no", c.why,
        story.length ? story[0].words : ""]);
      // the words come worded from the server; the raw events are the hover
      tr.lastChild.className = "story";
      tr.lastChild.title = story.map((l) => `${l.time} ${l.words}\n${l.raw}`).join("\n\n");
      return tr;
    }),
  );
  const total = board.callers_total || 0;
  const shown = (board.callers || []).length;
  document.getElementById("callers-total").textContent = total > shown ? `(${shown} longest of ${total})` : `(${total})`;
  if (kpis) renderKpis(kpis);
  const agents = document.querySelector("#agents tbody");
  agents.replaceChildren(
    ...board.agents.map((a) =>
      row([a.display_name, a.reason ? `${a.status} (${a.reason})` : a.status, seconds(a.since), a.contacts.map(contact).join(", ")]),
    ),
  );
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/supervisor/ws?csrf=${encodeURIComponent(csrf)}`);
  ws.onopen = () => { document.getElementById("status").textContent = "live"; };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "wallboard") {
      board = message;
      render();
      document.body.dataset.publishedAt = String(message.at);
      document.body.dataset.paintedAt = String(Date.now() / 1000);
    }
  };
  ws.onclose = (event) => {
    document.getElementById("status").textContent = "disconnected";
    if (event.code === 4001 || leaving) {
      toLogin();
      return;
    }
    setTimeout(connect, 2000);
  };
}

async function me() {
  const answer = await fetch("/supervisor/api/me", { credentials: "same-origin" });
  if (answer.status === 401 || answer.status === 403) {
    toLogin();
    return;
  }
  const body = await answer.json();
  csrf = body.csrf;
  document.getElementById("who").textContent = body.supervisor.display_name;
  connect();
}

// The page leaves for the login form once: signing out also closes the socket (code 4001), and
// two navigations to the same address abort each other.
let leaving = false;
let navigating = false;
function toLogin() {
  if (navigating) return;
  navigating = true;
  window.location.assign("/supervisor/login");
}

async function logout() {
  leaving = true;
  try {
    await fetch("/supervisor/api/logout", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf },
    });
  } finally {
    toLogin();
  }
}

document.getElementById("logout").addEventListener("click", logout);
setInterval(render, 1000);
me();
