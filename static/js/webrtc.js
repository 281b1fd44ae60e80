// WHIP (publish) and WHEP (watch) from the browser: one SDP offer with every ICE candidate in it,
// POSTed as application/sdp; 201 brings the answer and the session URL (Location) to DELETE at the end.
// `auth` is a function that resolves with a fresh access token (Session.token): asked for each request.

import { ApiError, readResponse } from "./api.js";

const GATHER_TIMEOUT_MS = 3000;
const ICE_KEY = "livecart.iceServers";

/**
 * ICE servers for new peer connections: the ones the last 201 listed in its Link headers
 * (RFC 9725 section 4.6). The server takes no trickled candidates, so servers learnt from an
 * answer help the next session: a peer that failed to connect without TURN retries with it.
 */
function iceServers() {
  try {
    return JSON.parse(sessionStorage.getItem(ICE_KEY) || "[]");
  } catch {
    return [];
  }
}

/** Parse `Link: <turn:…>; rel="ice-server"; username="…"; credential="…"` headers into RTCIceServer objects. */
export function parseIceLinks(header) {
  const servers = [];
  for (const match of (header || "").matchAll(/<([^>]*)>((?:\s*;\s*[\w-]+\s*=\s*(?:"[^"]*"|[^;,]*))*)/g)) {
    const params = {};
    for (const [, name, value] of match[2].matchAll(/;\s*([\w-]+)\s*=\s*("[^"]*"|[^;,]*)/g)) {
      params[name.toLowerCase()] = value.startsWith('"') ? value.slice(1, -1).replace(/\\(.)/g, "$1") : value.trim();
    }
    if (params.rel !== "ice-server") continue;
    const server = { urls: match[1] };
    if (params.username) server.username = params.username;
    if (params.credential) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

function rememberIceServers(response) {
  const servers = parseIceLinks(response.headers.get("Link"));
  try {
    sessionStorage.setItem(ICE_KEY, JSON.stringify(servers));
  } catch {
    // storage unavailable: this session keeps working without
  }
}

/** Resolves once ICE gathering is complete (the server takes no trickled candidates), or after a timeout. */
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

async function negotiate(pc, url, auth) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const token = await auth();
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
    });
  } catch {
    throw new ApiError(0, "network", "We couldn't reach the video server.");
  }
  if (response.status !== 201) {
    await readResponse(response); // throws the server's error
    throw new ApiError(response.status, "unexpected", `unexpected answer ${response.status}`);
  }
  rememberIceServers(response);
  const location = new URL(response.headers.get("Location"), window.location.href).href;
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  return location;
}

/** A WHIP or WHEP session: its peer connection and the URL that ends it. */
export class StreamSession {
  constructor(pc, location, auth) {
    this.pc = pc;
    this.location = location;
    this.auth = auth;
    this.stopped = false;
  }

  /**
   * End the session: DELETE its URL, then close the peer connection. Safe to call twice. `ended`: the server has
   * ended it already (a viewer's, when the host's stream went offline), so only the peer is closed.
   *
   * The DELETE goes first because a closing peer sends RTCP BYE and the server ends a session on BYE: a DELETE sent
   * after it finds nothing. A 404 (the session was gone already) is as good as a 200; the browser still logs any 4xx
   * to the console whatever a script does with it, which is why a DELETE known to find nothing is not sent at all.
   */
  async stop({ keepalive = false, ended = false } = {}) {
    if (this.stopped) return;
    this.stopped = true;
    try {
      if (!ended) {
        const token = await this.auth();
        const deleted = fetch(this.location, {
          method: "DELETE",
          headers: { Authorization: `Bearer ${token}` },
          keepalive,
        }).catch(() => {}); // unreachable: the server ends sessions whose peer went away by itself
        if (!keepalive) await deleted; // leaving the page: the request outlives it, the peer closes now
      }
    } catch {
      // no token (signed out): the server ends the session when its peer goes away
    } finally {
      this.pc.close();
    }
  }
}

/** Publish a camera/microphone stream to a room (the host). */
export async function publish(roomId, auth, stream) {
  const pc = new RTCPeerConnection({ iceServers: iceServers() });
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  try {
    const location = await negotiate(pc, `/whip/${encodeURIComponent(roomId)}`, auth);
    return new StreamSession(pc, location, auth);
  } catch (error) {
    pc.close();
    throw error;
  }
}

/** Watch a room's stream (a viewer); `onStream(mediaStream)` is called when the media arrives. */
export async function watch(roomId, auth, onStream) {
  const pc = new RTCPeerConnection({ iceServers: iceServers() });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.addEventListener("track", (event) => {
    stream.addTrack(event.track);
    onStream(stream);
  });
  try {
    const location = await negotiate(pc, `/whep/${encodeURIComponent(roomId)}`, auth);
    return new StreamSession(pc, location, auth);
  } catch (error) {
    pc.close();
    throw error;
  }
}
