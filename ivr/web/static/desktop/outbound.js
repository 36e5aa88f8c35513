// Click-to-call: the card's customer (their number, or a line of their timeline), or a number the
// agent types. The server checks who may be called and answers a refusal with an "error" message
// (shown in #call-error); the call itself pops a card like an inbound call.
"use strict";

window.deskOutbound = {
  call(number, journeyId) {
    const box = document.getElementById("notice");
    if (box) box.textContent = "";
    window.desk.send({ type: "call", number: String(number || ""), journey_id: journeyId || null });
  },
  refused(message) {
    const box = document.getElementById("notice");
    if (box) box.textContent = message;
  },
};

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("dial");
  if (!form) return;
  form.onsubmit = (e) => {
    e.preventDefault();
    const pop = window.desk.state.pop;
    window.deskOutbound.call(form.number.value, pop ? pop.journey_id : null);
  };
});
