// The customer's timeline on the card and beside a chat: lines the server already worded
// (ivr/channels/wording.py), shown as they come; the raw event is the hover (title attribute).
// Each line of a customer with a number offers "Call" (click-to-call, outbound.js).
"use strict";

window.deskTimeline = {
  render(list, lines, onCall) {
    list.replaceChildren();
    for (const line of lines || []) {
      const li = document.createElement("li");
      li.className = "line";
      li.dataset.kind = line.kind || "";
      li.title = line.raw || "";
      const time = document.createElement("time");
      time.className = "t";
      time.textContent = line.time || "";
      if (line.at) time.dateTime = line.at;
      const ch = document.createElement("span");
      ch.className = "ch";
      ch.textContent = line.channel || "";
      const words = document.createElement("span");
      words.className = "words";
      words.textContent = line.words || line.kind || "";
      li.append(time, " ", ch, " ", words);
      if (onCall) {
        const call = document.createElement("button");
        call.type = "button";
        call.className = "quiet call-from-line";
        call.textContent = "Call";
        call.setAttribute("aria-label", "Call this customer back about: " + (line.words || ""));
        call.onclick = () => onCall(line);
        li.append(" ", call);
      }
      list.append(li);
    }
    if (!(lines || []).length) {
      const li = document.createElement("li");
      li.textContent = "first contact";
      list.append(li);
    }
  },
};
