// Keyboard shortcuts for the agent desktop. One key map; each key names an action that a module
// registers in window.desk.actions (desktop.js: ready, pause, wrap-up, call; the softphone and the
// transfer modules register answer, hold, transfer and hangup when they are loaded). A key does
// nothing while the agent types in a field, and nothing with Ctrl, Alt or Meta held (the browser's
// own shortcuts). "?" opens the help, which lists exactly this map.
"use strict";

window.desk = window.desk || { actions: {} };
window.desk.keymap = [
  { key: "a", action: "answer", label: "Answer the ringing call" },
  { key: "h", action: "hold", label: "Hold / resume" },
  { key: "t", action: "transfer", label: "Transfer" },
  { key: "x", action: "hangup", label: "Hang up" },
  { key: "r", action: "ready", label: "Ready for the next contact" },
  { key: "p", action: "pause", label: "Pause (with the chosen reason)" },
  { key: "w", action: "wrapup", label: "Write notes (wrap-up)" },
  { key: "c", action: "call", label: "Call the customer on the card" },
  { key: "?", action: "help", label: "Show or hide this help" },
];

(function () {
  function typing(target) {
    if (!target || !target.closest) return false;
    return !!target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']");
  }

  function say(text) {
    const live = document.getElementById("announce");
    if (live) live.textContent = text;
  }

  window.desk.actions.help = () => {
    const help = document.getElementById("help");
    help.hidden = !help.hidden;
    document.getElementById("btn-help").setAttribute("aria-expanded", String(!help.hidden));
    if (!help.hidden) help.focus();
  };

  function fillHelp() {
    const list = document.getElementById("help-keys");
    if (!list) return;
    list.replaceChildren();
    for (const k of window.desk.keymap) {
      const dt = document.createElement("dt");
      const kbd = document.createElement("kbd");
      kbd.textContent = k.key;
      dt.append(kbd);
      const dd = document.createElement("dd");
      dd.textContent = k.label;
      list.append(dt, dd);
    }
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.altKey || e.metaKey || e.repeat || typing(e.target)) return;
    if (e.key === "Escape") {
      const help = document.getElementById("help");
      if (help && !help.hidden) window.desk.actions.help();
      return;
    }
    const entry = window.desk.keymap.find((k) => k.key === e.key.toLowerCase() || k.key === e.key);
    if (!entry) return;
    const act = window.desk.actions[entry.action];
    e.preventDefault();
    if (typeof act === "function") act();
    else say(entry.label + ": not available on this desktop");
  });

  document.addEventListener("DOMContentLoaded", () => {
    fillHelp();
    const button = document.getElementById("btn-help");
    if (button) button.onclick = () => window.desk.actions.help();
  });
})();
