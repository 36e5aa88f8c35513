// The supervisor page's shell: who is signed in, and sign-out (with the session's CSRF token).
"use strict";

let csrf = "";

async function me() {
  const answer = await fetch("/supervisor/api/me", { credentials: "same-origin" });
  if (answer.status === 401 || answer.status === 403) {
    window.location.assign("/supervisor/login");
    return;
  }
  const body = await answer.json();
  csrf = body.csrf;
  document.getElementById("who").textContent = body.supervisor.display_name;
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
me();
