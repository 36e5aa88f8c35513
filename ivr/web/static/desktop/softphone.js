// The desktop's own phone, for agents whose phone setting is "browser": SIP over a secure
// WebSocket to Asterisk with JsSIP (vendored, /desktop/vendor/jssip/), media over WebRTC.
// The SIP password is made by the controller for this login (POST /desktop/api/softphone), kept
// in this page's memory only, and deleted by the controller at logout, or when no desktop tab of
// the agent was open for the grace (desktop.softphone_revoke_grace). Nothing here is typed.
// desktop.js calls IvrSoftphone.start(csrf) after sign-in, IvrSoftphone.renew() when its websocket
// comes back (the credentials may have been revoked meanwhile, or a restarted controller cleared
// them) and IvrSoftphone.stop() at logout. A refused re-registration asks for new ones too.
"use strict";

(() => {
  const $ = (sel) => document.querySelector(sel);
  const sp = { ua: null, session: null, held: false, muted: false, mic: "", speaker: "", csrf: "", pending: null, registered: false, renewedAt: 0 };
  // For tests and the benchmark: when INVITEs arrived and were answered (page clock, seconds).
  window.__ivrRings = [];

  function show(what, value) { const box = $("#softphone"); if (box) box.dataset[what] = value; }
  function say(text) { const el = $("#sp-reg"); if (el) el.textContent = text; }

  // The SIP account for this login: a new password each time (the controller keeps none).
  async function fetchAccount() {
    sp.renewedAt = Date.now();
    const r = await fetch("/desktop/api/softphone", { method: "POST", headers: { "X-CSRF-Token": sp.csrf }, credentials: "same-origin" });
    if (!r.ok) { show("reg", "failed"); say("phone unavailable: " + (await r.text())); $("#softphone").hidden = false; return null; }
    return r.json();
  }

  async function start(csrf) {
    sp.csrf = csrf;
    const account = await fetchAccount();
    if (!account || account.phone !== "browser") return;  // a desk or soft SIP phone rings for this agent
    $("#softphone").hidden = false;
    wire();
    show("call", "idle");
    connect(account);
  }

  // Fresh credentials for a running phone; during a call they wait for its end (stopping the
  // user agent would end the call, and the call needs no registration to go on).
  async function renew(csrf) {
    if (!sp.ua) return;  // not a browser phone, or logged out
    if (csrf) sp.csrf = csrf;
    const account = await fetchAccount();
    if (!account || account.phone !== "browser" || !sp.ua) return;
    if (sp.session) { sp.pending = account; return; }
    swap(account);
  }

  function swap(account) {
    sp.pending = null;
    const old = sp.ua;
    sp.ua = null;  // its "disconnected" is no reconnect to show
    if (old) old.stop();
    connect(account);
  }

  function connect(account) {
    show("reg", "connecting"); say("connecting…");
    sp.registered = false;
    const ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(account.ws_url)],
      uri: account.uri,
      authorization_user: account.username,
      password: account.password,
      register: true,
      register_expires: 300,
      session_timers: false,
      user_agent: "ivr-desktop",
    });
    sp.ua = ua;
    ua.on("registered", () => { if (sp.ua !== ua) return; sp.registered = true; show("reg", "registered"); say("phone ready"); });
    ua.on("unregistered", () => { if (sp.ua === ua) { show("reg", "unregistered"); say("phone off"); } });
    ua.on("registrationFailed", (e) => {
      if (sp.ua !== ua) return;
      show("reg", "failed"); say("phone refused: " + (e.cause || ""));
      // a refresh refused after it had worked: the credentials were revoked, ask for new ones
      if (sp.registered && Date.now() - sp.renewedAt > 10000) renew();
    });
    ua.on("disconnected", () => { if (sp.ua === ua) { show("reg", "connecting"); say("reconnecting…"); } });
    ua.on("newRTCSession", (e) => { if (e.originator === "remote") incoming(e.session, e.request); });
    ua.start();
  }

  function incoming(session, request) {
    if (sp.session) { session.terminate({ status_code: 486 }); return; }  // one call at a time
    sp.session = session; sp.held = false; sp.muted = false;
    window.__ivrRings.push({ at: Date.now() / 1000, call_id: request.call_id });
    show("call", "ringing");
    session.on("accepted", () => show("call", "active"));
    session.on("confirmed", () => {
      const ring = window.__ivrRings[window.__ivrRings.length - 1];
      if (ring) ring.answered_at = Date.now() / 1000;
      devices();  // the microphone is allowed now: the lists get their labels
    });
    session.on("hold", () => { sp.held = true; show("call", "held"); });
    session.on("unhold", () => { sp.held = false; show("call", "active"); });
    session.on("peerconnection", (ev) => ev.peerconnection.addEventListener("track", (t) => play(t.streams[0])));
    const done = () => {
      sp.session = null; show("call", "idle"); $("#sp-audio").srcObject = null;
      if (sp.pending && sp.ua) swap(sp.pending);  // credentials renewed during the call
    };
    session.on("ended", done);
    session.on("failed", done);
  }

  function play(stream) {
    const audio = $("#sp-audio");
    audio.srcObject = stream;
    if (sp.speaker && audio.setSinkId) audio.setSinkId(sp.speaker).catch(() => {});
    audio.play().catch(() => {});
  }

  function answer() {
    if (!sp.session || sp.session.isEstablished()) return;
    const audio = sp.mic ? { deviceId: { exact: sp.mic } } : true;
    sp.session.answer({ mediaConstraints: { audio, video: false }, pcConfig: { iceServers: [] } });
  }

  function hangup() { if (sp.session) sp.session.terminate(); }
  // JsSIP's hold is a re-INVITE with a=sendonly: Asterisk plays music on hold to the caller.
  function hold() { if (!sp.session || !sp.session.isEstablished()) return; if (sp.held) sp.session.unhold(); else sp.session.hold(); }
  function mute() {
    if (!sp.session || !sp.session.isEstablished()) return;
    if (sp.muted) sp.session.unmute({ audio: true }); else sp.session.mute({ audio: true });
    sp.muted = !sp.muted;
    show("muted", sp.muted ? "yes" : "no");
  }
  function key(tone) { if (sp.session && sp.session.isEstablished()) sp.session.sendDTMF(tone, { transportType: "RFC2833" }); }

  async function devices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const list = await navigator.mediaDevices.enumerateDevices();
    for (const [kind, sel] of [["audioinput", "#sp-mic"], ["audiooutput", "#sp-speaker"]]) {
      const select = $(sel);
      const current = select.value;
      select.replaceChildren();
      const def = document.createElement("option"); def.value = ""; def.textContent = "default"; select.append(def);
      for (const d of list.filter((x) => x.kind === kind)) {
        const o = document.createElement("option"); o.value = d.deviceId; o.textContent = d.label || kind + " " + select.length; select.append(o);
      }
      select.value = current;
    }
  }

  async function stats() {
    // inbound/outbound RTP of the call in progress: proof that audio flows both ways
    const pc = sp.session && sp.session.connection;
    const out = { inbound: 0, outbound: 0, bytes_in: 0 };
    if (!pc) return out;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") { out.inbound += s.packetsReceived || 0; out.bytes_in += s.bytesReceived || 0; }
      if (s.type === "outbound-rtp" && s.kind === "audio") out.outbound += s.packetsSent || 0;
    });
    return out;
  }

  let wired = false;
  function wire() {
    if (wired) return;
    wired = true;
    $("#sp-answer").onclick = answer;
    $("#sp-hangup").onclick = hangup;
    $("#sp-hold").onclick = hold;
    $("#sp-mute").onclick = mute;
    for (const b of document.querySelectorAll("#sp-keys button")) b.onclick = () => key(b.textContent);
    $("#sp-mic").onchange = (e) => { sp.mic = e.target.value; };
    $("#sp-speaker").onchange = (e) => { sp.speaker = e.target.value; const a = $("#sp-audio"); if (a.setSinkId) a.setSinkId(sp.speaker).catch(() => {}); };
    if (navigator.mediaDevices) navigator.mediaDevices.ondevicechange = devices;
    devices();
  }

  async function stop() {
    const ua = sp.ua;
    sp.ua = null;
    sp.pending = null;
    if (!ua) return;
    hangup();
    if (ua.isRegistered()) {
      const gone = new Promise((resolve) => { ua.on("unregistered", resolve); setTimeout(resolve, 1000); });
      ua.unregister();
      await gone;
    }
    ua.stop();
  }

  window.IvrSoftphone = { start, renew, stop, stats, answer, hangup, hold, mute, key };
  // the "a", "h" and "x" shortcuts (keys.js); a SIP-phone agent answers on the phone itself
  window.desk = window.desk || { actions: {} };
  Object.assign(window.desk.actions, { answer, hold, hangup });
})();
