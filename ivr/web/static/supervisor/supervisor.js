// The wallboard: who is signed in, sign-out (with the session's CSRF token), and the queues and
// agents the server pushes over the websocket. Times arrive absolute; the page counts seconds.
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

function render() {
  if (!board) return;
  const queues = document.querySelector("#queues tbody");
  queues.replaceChildren(
    ...board.queues.map((q) => row([q.queue, q.waiting, seconds(q.oldest_joined_at), q.ready, q.busy, q.paused])),
  );
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
    }
  };
  ws.onclose = (event) => {
    document.getElementById("status").textContent = "disconnected";
    if (event.code === 4001) {
      window.location.assign("/supervisor/login");
      return;
    }
    setTimeout(connect, 2000);
  };
}

async function me() {
  const answer = await fetch("/supervisor/api/me", { credentials: "same-origin" });
  if (answer.status === 401 || answer.status === 403) {
    window.location.assign("/supervisor/login");
    return;
  }
  const body = await answer.json();
  csrf = body.csrf;
  document.getElementById("who").textContent = body.supervisor.display_name;
  connect();
}

async function logout() {
  await fetch("/supervisor/api/logout", {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf },
  });
  window.location.assign("/supervisor/login");
}

document.getElementById("logout").addEventListener("click", logout);
setInterval(render, 1000);
me();
