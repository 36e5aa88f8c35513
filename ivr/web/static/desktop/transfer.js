// Transfers from the card: to an agent, a queue or a number, blind or consult (complete/cancel).
// The ACD does the work over AMI (ivr.acd.transfers); this page only asks and shows the answer.
// A card that came by transfer says who transferred it and their note, above everything else.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const el = (tag, props = {}, ...children) => { const e = Object.assign(document.createElement(tag), props); e.append(...children); return e; };

  function fromBanner(pop) {
    const t = pop.transfer;
    if (!t) return;
    const by = (t.by && t.by.name) || "another agent";
    const banner = el("div", { className: "box wide transfer-from" },
      el("h3", { textContent: (t.mode === "consult" ? "Consulted" : "Transferred") + " by " + by }),
      el("blockquote", { textContent: t.note ? "“" + t.note + "”" : "(no note)" }));
    banner.dataset.f = "transfer-from";
    const grid = $("#call .grid");
    if (grid) grid.prepend(banner);
  }

  function control(pop) {
    const form = el("form", { className: "wrap transfer", hidden: true });
    form.dataset.f = "transfer";
    const kind = el("select", { name: "kind" },
      el("option", { value: "agent", textContent: "Agent" }),
      el("option", { value: "queue", textContent: "Queue" }),
      el("option", { value: "number", textContent: "Number" }));
    const target = el("input", { name: "target", placeholder: "user name, queue or +1 555 …", required: true });
    const note = el("input", { name: "note", placeholder: "Note for the next agent" });
    const blind = el("button", { type: "submit", name: "blind", textContent: "Transfer" });
    const consult = el("button", { type: "button", name: "consult", textContent: "Consult first" });
    const complete = el("button", { type: "button", name: "complete", textContent: "Complete", hidden: true });
    const cancel = el("button", { type: "button", name: "cancel", className: "quiet", textContent: "Back to caller", hidden: true });
    const status = el("div", { className: "muted", role: "status" });
    status.dataset.f = "transfer-status";
    form.append(el("h3", { textContent: "Transfer" }), el("div", { className: "row" }, kind, target), note,
      el("div", { className: "row" }, blind, consult, complete, cancel), status);
    const ask = (mode) => {
      status.textContent = "Transferring…";
      window.ivrDesk.send({ type: "transfer", journey_id: pop.journey_id, kind: kind.value, target: target.value, mode, note: note.value });
    };
    form.onsubmit = (e) => { e.preventDefault(); ask("blind"); };
    consult.onclick = () => { if (form.reportValidity()) ask("consult"); };
    complete.onclick = () => window.ivrDesk.send({ type: "transfer.complete" });
    cancel.onclick = () => window.ivrDesk.send({ type: "transfer.cancel" });
    const wrap = $('#call [data-f="wrap"]');
    if (wrap) wrap.before(form); else $("#call").append(form);
  }

  function consulting(on) {
    const form = $('#call [data-f="transfer"]');
    if (!form) return;
    for (const name of ["blind", "consult"]) form.elements[name].hidden = on;
    for (const name of ["complete", "cancel"]) form.elements[name].hidden = !on;
  }

  function say(message) {
    const status = $('#call [data-f="transfer-status"]');
    if (status) status.textContent = message;
  }

  // the "t" shortcut (keys.js): to the transfer target, when a call is connected
  window.desk = window.desk || { actions: {} };
  window.desk.actions.transfer = () => {
    const form = $('#call [data-f="transfer"]');
    if (form && !form.hidden) form.querySelector('[name="target"]').focus();
  };

  document.addEventListener("ivr:message", (e) => {
    const msg = e.detail;
    const pop = window.ivrDesk.state.pop;
    switch (msg.type) {
      case "pop": fromBanner(msg.pop); control(msg.pop); break;
      case "call.connected": { const form = $('#call [data-f="transfer"]'); if (form) form.hidden = false; break; }
      case "call.ended": { const form = $('#call [data-f="transfer"]'); if (form) form.hidden = true; break; }
      case "transfer.started": say("Transferred to " + msg.transfer.target.kind + " " + msg.transfer.target.value + "."); break;
      case "transfer.consulting": consulting(true); say("Talking to " + msg.transfer.target.value + "; the caller hears music."); break;
      case "transfer.ended": consulting(false); say("Consultation " + msg.outcome.replace(/_/g, " ") + "."); break;
      case "transfer.received": {  // a consult to this agent was completed: the caller is theirs now
        const head = $('#call [data-f="transfer-from"] h3');
        if (head) head.textContent = "Transferred by " + ((msg.transfer.by && msg.transfer.by.name) || "another agent");
        break;
      }
      case "error": if (pop) say(msg.message); break;
    }
  });
})();
