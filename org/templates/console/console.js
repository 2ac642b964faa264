// The console's only script: runs the WebAuthn ceremonies of the sign-in and enrolment
// pages (the server, webauthn-rs, makes the options and verifies the results; this file only
// converts between its JSON, base64url strings, and the browser's ArrayBuffers), and keeps a
// registration's page up to date while the phone has not answered.
"use strict";

function b64urlToBuf(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
}

function bufToB64url(buf) {
  let s = "";
  for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function postJson(url, body) {
  const resp = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await resp.json(); } catch (e) { /* not JSON: keep the status */ }
  if (!resp.ok) throw new Error(data.message || ("the server answered " + resp.status));
  return data;
}

function say(text) {
  document.getElementById("status").textContent = text;
}

async function enrol(form) {
  // The page is /console/enrol/<token>; its ceremony endpoints are below it.
  const here = window.location.pathname.replace(/\/$/, "");
  const fields = { display_name: form.display_name.value };
  if (form.email) fields.email = form.email.value;
  const started = await postJson(here + "/start", fields);
  const pk = started.options.publicKey;
  pk.challenge = b64urlToBuf(pk.challenge);
  pk.user.id = b64urlToBuf(pk.user.id);
  for (const c of pk.excludeCredentials || []) c.id = b64urlToBuf(c.id);
  const cred = await navigator.credentials.create({ publicKey: pk });
  const done = await postJson(here + "/finish", {
    ceremony: started.ceremony,
    credential: {
      id: cred.id,
      rawId: bufToB64url(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: bufToB64url(cred.response.attestationObject),
        clientDataJSON: bufToB64url(cred.response.clientDataJSON),
      },
      extensions: cred.getClientExtensionResults(),
    },
  });
  window.location.assign(done.redirect);
}

async function signIn(form) {
  const started = await postJson(form.dataset.start, { email: form.email.value });
  const pk = started.options.publicKey;
  pk.challenge = b64urlToBuf(pk.challenge);
  for (const c of pk.allowCredentials || []) c.id = b64urlToBuf(c.id);
  const cred = await navigator.credentials.get({ publicKey: pk });
  const r = cred.response;
  const done = await postJson(form.dataset.finish, {
    ceremony: started.ceremony,
    credential: {
      id: cred.id,
      rawId: bufToB64url(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: bufToB64url(r.authenticatorData),
        clientDataJSON: bufToB64url(r.clientDataJSON),
        signature: bufToB64url(r.signature),
        userHandle: r.userHandle ? bufToB64url(r.userHandle) : null,
      },
      extensions: cred.getClientExtensionResults(),
    },
  });
  window.location.assign(done.redirect);
}

function wire(id, run) {
  const form = document.getElementById(id);
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    say("Waiting for your passkey…");
    run(form).catch((e) => say("Not done: " + e.message));
  });
}

// How often a pending registration's page asks for its status.
const POLL_MS = 1500;

// Polls the registration's status until it is no longer pending, then shows the outcome and,
// once completed, the Graph body.
function watchRegistration(section) {
  const shown = document.getElementById("registration-status");
  const show = (status) => {
    shown.textContent = status;
    shown.className = "status status-" + status;
    section.dataset.status = status;
  };
  const poll = async () => {
    let reg;
    try {
      const resp = await fetch(section.dataset.statusUrl, { credentials: "same-origin" });
      if (!resp.ok) throw new Error("the server answered " + resp.status);
      reg = await resp.json();
    } catch (e) {
      // Signed out, or the server is away: say so rather than show a stale status.
      show("unknown (not watching: reload the page)");
      return;
    }
    show(reg.status);
    if (reg.status === "pending") {
      setTimeout(poll, POLL_MS);
      return;
    }
    document.getElementById("registration-hint").hidden = true;
    if (reg.graph_body) {
      document.getElementById("graph-body").value = JSON.stringify(reg.graph_body, null, 2);
      document.getElementById("graph").hidden = false;
    }
  };
  if (section.dataset.status === "pending") setTimeout(poll, POLL_MS);
}

async function copyGraphBody() {
  const text = document.getElementById("graph-body");
  const said = document.getElementById("copy-status");
  try {
    await navigator.clipboard.writeText(text.value);
    said.textContent = "Copied.";
  } catch (e) {
    // No clipboard permission: select it for the keyboard's copy instead.
    text.select();
    said.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wire("enrol-form", enrol);
  wire("sign-in-form", signIn);
  const registration = document.getElementById("registration");
  if (registration) watchRegistration(registration);
  const copy = document.getElementById("copy-graph-body");
  if (copy) copy.addEventListener("click", copyGraphBody);
});
