// WHIP (publish) and WHEP (watch) from the browser: one SDP offer with every ICE candidate in it,
// POSTed as application/sdp; 201 brings the answer and the session URL (Location) to DELETE at the end.

import { ApiError, readResponse } from "./api.js";

const GATHER_TIMEOUT_MS = 3000;

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

async function negotiate(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
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
  const location = new URL(response.headers.get("Location"), url).href;
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  return location;
}

/** A WHIP or WHEP session: its peer connection and the URL that ends it. */
export class StreamSession {
  constructor(pc, location, token) {
    this.pc = pc;
    this.location = location;
    this.token = token;
    this.stopped = false;
  }

  /** End the session: DELETE its URL and close the peer connection. Safe to call twice. */
  async stop({ keepalive = false } = {}) {
    if (this.stopped) return;
    this.stopped = true;
    this.pc.close();
    try {
      await fetch(this.location, { method: "DELETE", headers: { Authorization: `Bearer ${this.token}` }, keepalive });
    } catch {
      // the server ends sessions whose peer went away by itself
    }
  }
}

/** Publish a camera/microphone stream to a room (the host). */
export async function publish(roomId, token, stream) {
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  try {
    const location = await negotiate(pc, `/whip/${encodeURIComponent(roomId)}`, token);
    return new StreamSession(pc, location, token);
  } catch (error) {
    pc.close();
    throw error;
  }
}

/** Watch a room's stream (a viewer); `onStream(mediaStream)` is called when the media arrives. */
export async function watch(roomId, token, onStream) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.addEventListener("track", (event) => {
    stream.addTrack(event.track);
    onStream(stream);
  });
  try {
    const location = await negotiate(pc, `/whep/${encodeURIComponent(roomId)}`, token);
    return new StreamSession(pc, location, token);
  } catch (error) {
    pc.close();
    throw error;
  }
}
