// The chat page: shows the journey's current step (the same options as on the phone, the data
// already collected), and sends each answer as JSON. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
//: what the customer reads once the chat left the queue without an agent
const LEFT_TEXT = {
  closed: "You left the chat.",
  left: "You left the chat.",
  timeout: "No agent could take your chat in time. Please try again later, or call us.",
};
let waiting = null;
let agentChat = false; // the flow handed the chat to an agent: free text goes to them
let events = null;

function say(text, who) {
  const item = document.createElement("li");
  item.className = who;
  item.textContent = text;
  $("log").appendChild(item);
  item.scrollIntoView({block: "end"});
}

function render(view) {
  for (const message of view.messages || []) say(message, "ivr");
  const slots = Object.entries(view.collected || {});
  $("collected").hidden = slots.length === 0;
  $("slots").replaceChildren(...slots.flatMap(([name, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = name.replaceAll("_", " ");
    const dd = document.createElement("dd");
    dd.textContent = value;
    dd.dataset.slot = name;
    return [dt, dd];
  }));
  waiting = view.waiting;
  const question = $("question");
  question.replaceChildren();
  question.dataset.step = waiting ? waiting.step : "";
  question.dataset.status = view.status;
  $("free").hidden = !waiting;
  if (waiting && waiting.kind === "menu") {
    for (const choice of waiting.choices) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.dataset.option = choice.option;
      button.textContent = `${choice.key}. ${choice.label}`;
      button.addEventListener("click", () => send({option: choice.option}, choice.label));
      question.appendChild(button);
    }
    $("text").placeholder = "Or say it in your own words";
    $("text").inputMode = "text";
  } else if (waiting && waiting.kind === "ask") {
    if (waiting.offer) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.dataset.option = "use-known";
      button.textContent = `Use the one ending in ${waiting.offer}`;
      button.addEventListener("click", () => send({text: "1"}, button.textContent));
      question.appendChild(button);
    }
    $("text").placeholder = `${waiting.min_digits === waiting.max_digits ? waiting.max_digits : `${waiting.min_digits}-${waiting.max_digits}`} digits`;
    $("text").inputMode = "numeric";
  }
  $("status").textContent = view.done ? (view.queue ? "An agent will continue with you." : "This conversation is complete.") : "";
  agentChat = Boolean(view.done && view.queue && view.agent_chat);
  if (agentChat) {
    $("free").hidden = false;
    $("text").placeholder = "Write to the agent";
    $("text").inputMode = "text";
    $("status").textContent = view.agent ? "An agent has joined." : "Waiting for an agent...";
    if (view.left) ended(view.left);
    else listen();
  }
  $("call-me").hidden = !view.call_me || view.done;
  document.body.dataset.ready = "1";
}

async function post(path, body) {
  const reply = await fetch(path, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await reply.json();
  if (!reply.ok) throw new Error(data.error || `HTTP ${reply.status}`);
  return data;
}

function ended(reason) {
  $("status").textContent = LEFT_TEXT[reason] || LEFT_TEXT.closed;
  $("free").hidden = true;
  $("leave").hidden = true;
  agentChat = false;
  if (events) events.close();
}

function listen() {
  $("leave").hidden = false;
  if (events) return;
  events = new EventSource("/chat/api/events");
  events.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "agent.message") say(message.text, "agent");
    else if (message.type === "agent.joined") $("status").textContent = "An agent has joined.";
    else if (message.type === "agent.closed") {
      $("status").textContent = "The agent ended the chat.";
      $("free").hidden = true;
      $("leave").hidden = true;
      events.close();
    } else if (message.type === "queue.left") ended(message.reason);
  };
}

async function toAgent(text) {
  say(text, "me");
  try {
    await post("/chat/api/message", {text});
  } catch (error) {
    $("status").textContent = error.message;
  }
}

async function send(body, shown) {
  say(shown, "me");
  try {
    render(await post("/chat/api/input", body));
  } catch (error) {
    $("status").textContent = error.message;
  }
}

async function start() {
  const reply = await fetch("/chat/api/state", {credentials: "same-origin"});
  const data = await reply.json();
  if (!reply.ok) {
    $("status").textContent = data.error || "This conversation is not available.";
    return;
  }
  render(data);
}

document.addEventListener("DOMContentLoaded", () => {
  $("free").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value.trim();
    if (!text || (!waiting && !agentChat)) return;
    $("text").value = "";
    if (agentChat) toAgent(text);
    else send({text}, text);
  });
  $("call-me").addEventListener("click", async () => {
    try {
      const reply = await post("/chat/api/call-me", {});
      $("status").textContent = reply.calling ? "We are calling you now." : "We cannot call you right now.";
    } catch (error) {
      $("status").textContent = error.message;
    }
  });
  $("leave").addEventListener("click", async () => {
    try {
      await post("/chat/api/leave", {});
      ended("closed");
    } catch (error) {
      $("status").textContent = error.message;
    }
  });
  start();
});
