// The sign-in card's shared parts, on both pages (the same element ids): its forms' submitting, a code sent.

import { destinationOf } from "./api.js";
import { t } from "./strings/room.js";
import { $, sentence, text } from "./ui.js";

/** Run a sign-in form's action with its submit button disabled; an error is shown on the card (#signin-error). */
export async function submitting(form, action) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  $("#signin-error").hidden = true;
  try {
    await action();
  } catch (error) {
    text($("#signin-error"), sentence(error.message || t("signin.failed")));
    $("#signin-error").hidden = false;
  } finally {
    button.disabled = false;
  }
}

/** Send a one-time code to the email or phone typed in #signin-destination; show where it went (and the dev
 *  inbox that has it, with the sandbox messenger); return the destination to sign in with. */
export async function sendCode(session) {
  const destination = destinationOf($("#signin-destination").value);
  const sent = await session.sendCode(destination);
  const minutes = Math.max(1, Math.round(sent.expires_in / 60));
  text($("#signin-sent"), t("signin.sent", { to: sent.sent_to, count: minutes }));
  $("#inbox-link").href = `/inbox.html?${new URLSearchParams(destination)}`;
  $("#signin-code").value = "";
  return destination;
}
