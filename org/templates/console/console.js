// The console's only script: runs the WebAuthn ceremonies of the sign-in and enrolment
// pages. The server (webauthn-rs) makes the options and verifies the results; this file only
// converts between its JSON (base64url strings) and the browser's ArrayBuffers.
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

document.addEventListener("DOMContentLoaded", () => {
  wire("enrol-form", enrol);
  wire("sign-in-form", signIn);
});
