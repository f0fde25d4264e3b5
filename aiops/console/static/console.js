// The AIOps console's one script (docs/console.md): the passkey ceremonies, nothing else.
// Served from 'self' under a CSP without 'unsafe-inline'; no build step, no dependency.
// Every call goes to the API's own /v1 endpoints with the session cookie and the page's CSRF token.
"use strict";

(function () {
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromB64url(text) {
    var padded = text.replace(/-/g, "+").replace(/_/g, "/");
    while (padded.length % 4) padded += "=";
    var raw = atob(padded);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function utf8B64url(text) {
    return toB64url(new TextEncoder().encode(text));
  }

  // One passkey touch for a challenge the server issued (a decision's or a sign-in's): the
  // assertion's fields, base64url, as every endpoint of the console and the API takes them.
  async function signWithPasskey(options) {
    var assertion = await navigator.credentials.get({
      publicKey: {
        challenge: fromB64url(options.challenge),
        rpId: options.rp_id,
        allowCredentials: (options.allow_credentials || []).map(function (id) {
          return { type: "public-key", id: fromB64url(id) };
        }),
        userVerification: "required",
        timeout: options.timeout_ms,
      },
    });
    if (!assertion) throw new Error("the browser gave no passkey assertion");
    var r = assertion.response;
    return {
      credential_id: toB64url(assertion.rawId),
      authenticator_data: toB64url(r.authenticatorData),
      client_data_json: toB64url(r.clientDataJSON),
      signature: toB64url(r.signature),
      user_handle: r.userHandle ? toB64url(r.userHandle) : null,
    };
  }

  async function call(path, body, token) {
    var answer = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token || csrf() },
      body: JSON.stringify(body),
    });
    var data = null;
    try { data = await answer.json(); } catch (e) { data = null; }
    if (!answer.ok) {
      var why = data && data.error ? data.error.replace(/^refused:\s*/i, "") : "HTTP " + answer.status;
      throw new Error(why);
    }
    return data;
  }

  function show(id, text) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    el.hidden = false;
  }

  function hide(id) {
    var el = document.getElementById(id);
    if (el) el.hidden = true;
  }

  // ----- deciding: challenge -> assertion -> decision ------------------------------------------

  async function decide(button) {
    var actionId = button.getAttribute("data-action-id");
    var verb = button.getAttribute("data-verb");
    var digest = button.getAttribute("data-plan-digest") || null;
    var commentBox = document.getElementById("comment");
    var comment = commentBox ? commentBox.value : "";
    var base = "/v1/actions/" + encodeURIComponent(actionId);
    hide("passkey-refusal");
    hide("passkey-done");
    document.querySelectorAll("button.passkey").forEach(function (b) { b.disabled = true; });
    try {
      var challenge = await call(base + "/passkey-challenge", { verb: verb });
      var signed = await signWithPasskey(challenge);
      signed.claims = challenge.claims;
      await call(base + "/decision", {
        approve: verb === "approve",
        credential: "passkey:" + utf8B64url(JSON.stringify(signed)),
        comment: comment,
        plan_digest: digest,
      });
      show("passkey-done", (verb === "approve" ? "Approved" : "Rejected") + " with your passkey; reloading…");
      window.setTimeout(function () { window.location.reload(); }, 500);
    } catch (err) {
      show("passkey-refusal", "Refused: " + (err && err.message ? err.message : String(err)));
      document.querySelectorAll("button.passkey").forEach(function (b) { b.disabled = false; });
    }
  }

  // ----- signed out: one touch signs in and decides (aiops/console/one_touch.py) ---------------

  async function decideWithOneTouch(button) {
    var actionId = button.getAttribute("data-action-id");
    var verb = button.getAttribute("data-verb");
    var commentBox = document.getElementById("comment");
    var base = "/console/actions/" + encodeURIComponent(actionId);
    hide("passkey-refusal");
    hide("passkey-done");
    document.querySelectorAll("button.passkey").forEach(function (b) { b.disabled = true; });
    try {
      var name = document.getElementById("decide-name").value;
      var options = await call(base + "/passkey-options", { name: name, verb: verb });
      var plan = options.claims.digest ? " plan " + options.claims.digest : "";
      show("passkey-done", "Touch your passkey to " + verb + plan + " as " + name + "…");
      var signed = await signWithPasskey(options);
      signed.comment = commentBox ? commentBox.value : "";
      var answer = await call(base + "/passkey-decision", signed, options.csrf);
      window.location.assign(answer.next);
    } catch (err) {
      hide("passkey-done");
      show("passkey-refusal", "Refused: " + (err && err.message ? err.message : String(err)));
      document.querySelectorAll("button.passkey").forEach(function (b) { b.disabled = false; });
    }
  }

  // ----- enrollment: creation options -> credential -> the config line -------------------------

  function creationOptions(options) {
    var o = options.publicKey || options;
    var out = Object.assign({}, o);
    out.challenge = fromB64url(o.challenge);
    out.user = Object.assign({}, o.user, { id: fromB64url(o.user.id) });
    out.excludeCredentials = (o.excludeCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: fromB64url(c.id) });
    });
    return out;
  }

  async function enroll() {
    hide("enroll-refusal");
    hide("enroll-done");
    try {
      var options = await call("/v1/passkeys/registration-options", {});
      var credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
      if (!credential) throw new Error("the browser created no passkey");
      var r = credential.response;
      var body = {
        id: credential.id,
        rawId: toB64url(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: toB64url(r.clientDataJSON),
          attestationObject: toB64url(r.attestationObject),
          transports: r.getTransports ? r.getTransports() : [],
        },
        clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
        authenticatorAttachment: credential.authenticatorAttachment || null,
      };
      var answer = await call("/v1/passkeys/registration", body);
      var line = "- " + JSON.stringify(answer);
      document.getElementById("enroll-line").textContent = line;
      document.getElementById("enroll-done").hidden = false;
    } catch (err) {
      show("enroll-refusal", "Refused: " + (err && err.message ? err.message : String(err)));
    }
  }

  // ----- sign-in with a passkey: options -> assertion -> session -----------------------------

  async function signInWithPasskey(event) {
    event.preventDefault();
    hide("signin-passkey-refusal");
    try {
      var name = document.getElementById("signin-name").value;
      var next = event.target.getAttribute("data-next") || "/console/";
      var options = await call("/console/signin/passkey-options", { name: name, next: next });
      var signed = await signWithPasskey(options);
      signed.name = name;
      var answer = await call("/console/signin/passkey", signed);
      window.location.assign(answer.next);
    } catch (err) {
      show("signin-passkey-refusal", "Refused: " + (err && err.message ? err.message : String(err)));
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button.passkey").forEach(function (button) {
      button.addEventListener("click", function () {
        if (button.hasAttribute("data-one-touch")) decideWithOneTouch(button); else decide(button);
      });
    });
    var enrollButton = document.getElementById("enroll");
    if (enrollButton) enrollButton.addEventListener("click", enroll);
    var signInForm = document.getElementById("signin-passkey-form");
    if (signInForm) signInForm.addEventListener("submit", signInWithPasskey);
  });
})();
