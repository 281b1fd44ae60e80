// The sign-in card's one shared step, on both pages (the same element ids): a code sent to what was typed.

import { destinationOf } from "./api.js";
import { $, text } from "./ui.js";

/** Send a one-time code to the email or phone typed in #signin-destination; show where it went (and the dev
 *  inbox that has it, with the sandbox messenger); return the destination to sign in with. */
export async function sendCode(session) {
  const destination = destinationOf($("#signin-destination").value);
  const sent = await session.sendCode(destination);
  const minutes = Math.max(1, Math.round(sent.expires_in / 60));
  text($("#signin-sent"), `We sent a 6-digit code to ${sent.sent_to}. It works for ${minutes} minutes.`);
  $("#inbox-link").href = `/inbox.html?${new URLSearchParams(destination)}`;
  $("#signin-code").value = "";
  return destination;
}
