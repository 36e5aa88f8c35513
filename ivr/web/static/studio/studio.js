// The flow studio page: list, diagram, editor with problems at their lines, publish, roll back,
// simulate. Plain script, no build step; every text from the server goes in with textContent,
// except the diagram, which the server renders as SVG with every label escaped.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { csrf: "", name: null, version: "", timer: null, checking: 0, funnel: null };
const LINE_PX = 18;
const CHECK_DELAY_MS = 300;

async function api(method, path, body) {
  const init = { method, headers: { "X-CSRF-Token": state.csrf }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    location.href = "/studio/login";
    throw new Error("signed out");
  }
  let data = {};
  try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
  return { status: response.status, data };
}

function setStatus(text, kind) {
  const el = $("#status");
  el.textContent = text;
  el.className = kind || "";
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

async function loadList() {
  const { data } = await api("GET", "/studio/api/flows");
  const list = $("#flows");
  list.replaceChildren();
  for (const f of data.flows || []) {
    const li = document.createElement("li");
    li.dataset.flow = f.name;
    li.classList.toggle("current", f.name === state.name);
    const name = document.createElement("strong");
    name.textContent = f.name;
    const info = document.createElement("small");
    info.className = "version";
    info.textContent = `v${f.number} · ${f.version}`;
    const change = document.createElement("small");
    change.className = "changed";
    change.textContent = `${f.source === "disk" ? "changed on disk" : "by " + f.author} · ${when(f.changed_at)}`;
    li.append(name, info, change);
    li.addEventListener("click", () => openFlow(f.name));
    list.append(li);
  }
}

function renderGutter(problems) {
  const lines = $("#yaml").value.split("\n").length;
  const bad = new Map();
  for (const p of problems || []) {
    if (p.file !== `${state.name}.yaml`) continue; // another file's line: listed below, not in this gutter
    bad.set(p.line, (bad.get(p.line) ? bad.get(p.line) + "\n" : "") + p.text);
  }
  const gutter = $("#gutter");
  const rows = [];
  for (let i = 1; i <= lines; i++) {
    const row = document.createElement("div");
    row.dataset.line = String(i);
    row.textContent = String(i);
    if (bad.has(i)) {
      row.className = "bad";
      row.title = bad.get(i);
    }
    rows.push(row);
  }
  gutter.replaceChildren(...rows);
  gutter.scrollTop = $("#yaml").scrollTop;
}

function renderProblems(problems) {
  const list = $("#problems");
  list.replaceChildren();
  for (const p of problems || []) {
    const li = document.createElement("li");
    li.dataset.line = String(p.line);
    li.textContent = p.text;
    li.addEventListener("click", () => goToLine(p.line));
    list.append(li);
  }
  renderGutter(problems);
}

function renderDiagram(svg) {
  const box = $("#diagram");
  if (!svg) {
    box.classList.add("stale"); // the last diagram that parsed stays, greyed
    return;
  }
  box.classList.remove("stale");
  box.innerHTML = svg; // rendered by the server (ivr.flow.layout): every label is escaped there
  for (const node of box.querySelectorAll("g.step")) {
    const go = () => {
      for (const other of box.querySelectorAll("g.step.current")) other.classList.remove("current");
      node.classList.add("current");
      goToLine(Number(node.dataset.line));
    };
    node.addEventListener("click", go);
    node.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  }
  paintFunnel();
}

const SVG_NS = "http://www.w3.org/2000/svg";

function percent(rate) {
  return rate === null || rate === undefined ? "–" : `${Math.round(rate * 100)}%`;
}

// The live funnel: where real callers went at each step, painted on the step's node (found by its
// data-step attribute) and listed in the table under the diagram, whose rows carry every count.
async function loadFunnel() {
  if (!state.name) return;
  const name = state.name;
  const windowName = $("#funnel-window").value;
  const { status, data } = await api("GET", `/studio/api/flows/${encodeURIComponent(name)}/funnel?window=${windowName}`);
  if (name !== state.name) return; // another flow was opened meanwhile
  state.funnel = status === 200 ? data : null;
  paintFunnel();
}

function paintFunnel() {
  const box = $("#diagram");
  for (const old of box.querySelectorAll(".funnel-badge")) old.remove();
  const body = $("#funnel tbody");
  body.textContent = "";
  const funnel = state.funnel;
  if (!funnel) return;
  for (const [step, f] of Object.entries(funnel.steps)) {
    const options = Object.entries(f.options)
      .map(([o, m]) => `${o} ${percent(m.share)} (${m.key}/${m.speech}/${m.text})`)
      .join(", ");
    const row = document.createElement("tr");
    row.dataset.step = step;
    for (const cell of [step, f.entered, options || "–", `${f.no_input} (${percent(f.no_input_rate)})`,
      `${f.no_match} (${percent(f.no_match_rate)})`, f.left, f.handed_off, f.transferred]) {
      const td = document.createElement("td");
      td.textContent = String(cell);
      row.append(td);
    }
    body.append(row);
    const node = box.querySelector(`g.step[data-step="${CSS.escape(step)}"]`);
    const rect = node && node.querySelector("rect");
    if (!rect) continue; // a step of an older version: in the table only
    const x = Number(rect.getAttribute("x")) + Number(rect.getAttribute("width")) - 6;
    const y = Number(rect.getAttribute("y")) + 14;
    const badge = document.createElementNS(SVG_NS, "g"); // the figure, and every count on hover
    badge.setAttribute("class", "funnel-badge");
    const figure = document.createElementNS(SVG_NS, "text");
    figure.setAttribute("x", String(x));
    figure.setAttribute("y", String(y));
    figure.setAttribute("text-anchor", "end");
    const lost = f.left ? ` · ${f.left} left` : "";
    figure.textContent = `${f.entered} in${lost}`;
    badge.append(figure);
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = `${step}: ${f.entered} callers; ${options || "no choices"}; no input ${f.no_input}, ` +
      `no match ${f.no_match}; left ${f.left}; handed off ${f.handed_off}; to an agent ${f.transferred}`;
    badge.append(title);
    node.append(badge);
  }
}

function goToLine(line) {
  const area = $("#yaml");
  const lines = area.value.split("\n");
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  const end = start + (lines[line - 1] || "").length;
  area.focus();
  area.setSelectionRange(start, end);
  area.scrollTop = Math.max(0, (line - 4) * LINE_PX);
  for (const row of document.querySelectorAll("#gutter div.current")) row.classList.remove("current");
  const row = document.querySelector(`#gutter div[data-line="${line}"]`);
  if (row) row.classList.add("current");
  $("#gutter").scrollTop = area.scrollTop;
}

function renderHistory(history, audit) {
  const body = $("#history tbody");
  body.replaceChildren();
  for (const v of history || []) {
    const tr = document.createElement("tr");
    tr.dataset.number = String(v.number);
    for (const text of [String(v.number), v.version, v.author, v.source, when(v.created_at)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const actions = document.createElement("td");
    const diff = document.createElement("button");
    diff.type = "button";
    diff.className = "diff";
    diff.textContent = "diff";
    diff.addEventListener("click", () => showDiff(v.number));
    actions.append(diff);
    if (v.version !== state.version) {
      const back = document.createElement("button");
      back.type = "button";
      back.className = "rollback";
      back.dataset.number = String(v.number);
      back.textContent = "roll back to this";
      back.addEventListener("click", () => rollback(v.number));
      actions.append(back);
    }
    tr.append(actions);
    body.append(tr);
  }
  const list = $("#audit");
  list.replaceChildren();
  for (const a of audit || []) {
    const li = document.createElement("li");
    li.textContent = `${when(a.at)} ${a.actor} ${a.action} v${a.number} (${a.version})${a.detail ? " " + a.detail : ""}`;
    list.append(li);
  }
}

async function showDiff(number) {
  const { status, data } = await api("GET", `/studio/api/flows/${encodeURIComponent(state.name)}/versions/${number}`);
  $("#diff").textContent = status === 200 ? data.diff || "(no change)" : data.error;
}

async function openFlow(name) {
  const { status, data } = await api("GET", `/studio/api/flows/${encodeURIComponent(name)}`);
  if (status !== 200) {
    setStatus(data.error || `error ${status}`, "bad");
    return;
  }
  state.name = name;
  state.version = data.version;
  $("#flow").hidden = false;
  $("#conflict").hidden = true;
  $("#flow-name").textContent = name;
  $("#version").textContent = `version ${data.number} (${data.version})`;
  $("#yaml").value = data.text;
  $("#diff").textContent = "";
  renderProblems(data.problems);
  state.funnel = null; // the last flow's counts must not paint this one's nodes
  renderDiagram(data.svg);
  renderHistory(data.history, data.audit);
  loadFunnel();
  for (const li of document.querySelectorAll("#flows li")) li.classList.toggle("current", li.dataset.flow === name);
  setStatus(data.problems.length ? `${data.problems.length} problem(s)` : "no problems", data.problems.length ? "bad" : "ok");
}

async function check() {
  const ticket = ++state.checking;
  const { status, data } = await api("POST", "/studio/api/check", { name: state.name, text: $("#yaml").value });
  if (ticket !== state.checking) return; // the admin typed again meanwhile: a newer check is on its way
  if (status !== 200) {
    setStatus(data.error || `error ${status}`, "bad");
    return;
  }
  renderProblems(data.problems);
  renderDiagram(data.svg);
  setStatus(data.problems.length ? `${data.problems.length} problem(s)` : "no problems", data.problems.length ? "bad" : "ok");
}

function showConflict(data) {
  $("#conflict").hidden = false;
  $("#conflict-version").textContent = data.current ? `version ${data.current.number} (${data.current.version})` : "";
  $("#conflict-theirs").textContent = data.current ? data.current.text : "";
  $("#conflict-yours").textContent = data.yours ? data.yours.text : $("#yaml").value;
  setStatus(data.error, "bad");
}

async function afterChange(status, data, what) {
  if (status === 200) {
    await openFlow(state.name);
    await loadList();
    setStatus(data.unchanged ? "nothing to publish: same as the file" : `${what}: version ${data.number}`, "ok");
  } else if (status === 409) {
    showConflict(data);
  } else if (status === 422) {
    renderProblems(data.problems);
    setStatus(data.error, "bad");
  } else {
    setStatus(data.error || `error ${status}`, "bad");
  }
}

async function publish() {
  const { status, data } = await api("POST", `/studio/api/flows/${encodeURIComponent(state.name)}/publish`, {
    text: $("#yaml").value,
    base: state.version,
  });
  await afterChange(status, data, "published");
}

async function rollback(number) {
  const { status, data } = await api("POST", `/studio/api/flows/${encodeURIComponent(state.name)}/rollback`, {
    number,
    base: state.version,
  });
  await afterChange(status, data, `rolled back to ${number}`);
}

async function simulate(event) {
  event.preventDefault();
  const raw = $("#sim-inputs").value;
  const inputs = raw.trim() ? raw.split(",").map((s) => s.trim()) : [];
  const { status, data } = await api("POST", "/studio/api/simulate", {
    name: state.name,
    text: $("#yaml").value,
    caller: $("#sim-caller").value.trim(),
    channel: $("#sim-channel").value,
    inputs,
  });
  const out = $("#sim-out");
  if (status !== 200) {
    out.textContent = [data.error || `error ${status}`, ...(data.problems || []).map((p) => p.text)].join("\n");
    return;
  }
  out.textContent = [...data.lines, `path: ${data.path.join(" > ")}`, `status: ${data.status}`].join("\n");
}

async function start() {
  const { data } = await api("GET", "/studio/api/me");
  state.csrf = data.csrf;
  $("#who").textContent = data.admin.display_name;
  const area = $("#yaml");
  area.addEventListener("input", () => {
    renderGutter([]);
    clearTimeout(state.timer);
    state.timer = setTimeout(check, CHECK_DELAY_MS);
  });
  area.addEventListener("scroll", () => { $("#gutter").scrollTop = area.scrollTop; });
  $("#publish").addEventListener("click", publish);
  $("#sim").addEventListener("submit", simulate);
  $("#funnel-window").addEventListener("change", loadFunnel);
  $("#conflict-load").addEventListener("click", () => {
    const theirs = $("#conflict-theirs").textContent;
    const version = $("#conflict-version").textContent.match(/\(([0-9a-f]+)\)/);
    if (version) state.version = version[1];
    area.value = theirs;
    check();
  });
  $("#logout").addEventListener("click", async () => {
    await api("POST", "/studio/api/logout");
    location.href = "/studio/login";
  });
  await loadList();
  const first = document.querySelector("#flows li");
  const wanted = new URLSearchParams(location.search).get("flow");
  if (wanted) await openFlow(wanted);
  else if (first) await openFlow(first.dataset.flow);
}

start();
