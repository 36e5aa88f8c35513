// Claims the continuation link with a POST as soon as the page loads (a GET never claims, so
// an SMS app that previews the link cannot use it up). The button stays for browsers without JS.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("claim");
  if (form) form.submit();
});
