// The studio's camera: the host picks the picture's shape (portrait 9:16 by default, as phones watch) and its
// resolution before going live; the preview shows what a phone shows of it (video-fit.js, the rule the viewer room
// follows), what the camera really captures (track.getSettings()) and, while live, what the browser really publishes
// and why (RTCPeerConnection.getStats()). docs/video.md says why the two differ.

import { storage } from "./api.js";
import { $, $$, text } from "./ui.js";
import { PHONE, fitFor, keptByCover } from "./video-fit.js";

const CHOICE_KEY = "livecart.camera";
const STATS_INTERVAL_MS = 1000;
export const RESOLUTIONS = [540, 720, 1080]; // the picture's short side; the long side is 16/9 of it
const DEFAULT_CHOICE = { orientation: "portrait", resolution: 720 };

const LIMITS = {
  bandwidth:
    "limited by bandwidth: the browser starts low and raises the resolution as the connection proves it can carry more",
  cpu: "limited by this computer's processor: close other apps or choose a lower resolution",
  other: "limited by the browser",
};

/** The host's last choice in this browser, or portrait 720p. */
function savedChoice() {
  try {
    const saved = JSON.parse(storage("local")?.getItem(CHOICE_KEY) || "{}");
    return {
      orientation: saved.orientation === "landscape" ? "landscape" : DEFAULT_CHOICE.orientation,
      resolution: RESOLUTIONS.includes(saved.resolution) ? saved.resolution : DEFAULT_CHOICE.resolution,
    };
  } catch {
    return { ...DEFAULT_CHOICE };
  }
}

/** The size asked of the camera for a choice, e.g. portrait 720 -> 720x1280. */
export function requestedSize({ orientation, resolution }) {
  const long = Math.round((resolution * 16) / 9);
  return orientation === "portrait" ? { width: resolution, height: long } : { width: long, height: resolution };
}

/**
 * getUserMedia's video constraints for a choice. The size is `ideal`: a camera that can't give it gives its nearest,
 * and the readout says what it gave. The shape is `exact` (strict) so that the browser cuts a 9:16 picture from a
 * landscape webcam (crop-and-scale, never scaling up), as a phone held upright gives it natively: with an ideal shape
 * Chromium keeps the ideal width and height nearest instead (720x720 from a 1280x720 camera asked for 720x1280). A
 * browser that can't cut a picture is asked again with the shape `ideal` (not strict).
 */
function videoConstraints(choice, strict = true) {
  const { width, height } = requestedSize(choice);
  return {
    width: { ideal: width },
    height: { ideal: height },
    aspectRatio: strict ? { exact: width / height } : { ideal: width / height },
    frameRate: { ideal: 30 },
    resizeMode: { ideal: "crop-and-scale" },
  };
}

/** getUserMedia with the choice's shape exact, else ideal where the browser can't cut the camera's picture. */
async function openCamera(choice, audio) {
  try {
    return await navigator.mediaDevices.getUserMedia({ video: videoConstraints(choice), audio });
  } catch (error) {
    if (error.name !== "OverconstrainedError") throw error;
    return navigator.mediaDevices.getUserMedia({ video: videoConstraints(choice, false), audio });
  }
}

/** "Publishing 720x1280 at 30 fps (1.2 Mbit/s)." and why it is less than the camera gives, from one outbound-rtp. */
export function publishedText(report, bitsPerSecond) {
  if (!report?.frameWidth) return "Publishing: waiting for the first frames…";
  const fps = Math.round(report.framesPerSecond || 0);
  let rate = "";
  if (bitsPerSecond >= 1e6) rate = ` (${(bitsPerSecond / 1e6).toFixed(1)} Mbit/s)`;
  else if (bitsPerSecond > 0) rate = ` (${Math.round(bitsPerSecond / 1e3)} kbit/s)`;
  const published = `Publishing ${report.frameWidth}x${report.frameHeight} at ${fps} fps${rate}`;
  const limit = LIMITS[report.qualityLimitationReason];
  return limit ? `${published}, ${limit}.` : `${published}.`;
}

export class Camera {
  /** `changed()` is called when the stream starts, fails or changes (studio.js renders its Go live button then). */
  constructor({ changed }) {
    this.changed = changed;
    this.stream = null;
    this.choice = savedChoice();
    this.session = null; // the WHIP session being published, while on air
    this.timer = null;
    this.last = null; // the previous outbound-rtp report, for the bit rate
    this.box = $("#preview-box");
    for (const input of $$("input[name=camera-orientation]")) {
      input.checked = input.value === this.choice.orientation;
      input.addEventListener("change", () => this.choose({ orientation: input.value }));
    }
    const resolution = $("#camera-resolution");
    resolution.value = String(this.choice.resolution);
    resolution.addEventListener("change", () => this.choose({ resolution: Number(resolution.value) }));
    $("#camera-retry").addEventListener("click", () => this.start());
    $("#toggle-camera").addEventListener("click", (click) => this.toggle("video", click.currentTarget));
    $("#toggle-mic").addEventListener("click", (click) => this.toggle("audio", click.currentTarget));
    addEventListener("resize", () => this.renderGuide());
    this.renderGuide();
  }

  /** Ask for the camera and microphone in the chosen shape; the preview says why when it can't. */
  async start() {
    const box = this.box;
    box.dataset.camera = "waiting";
    $("#camera-retry").hidden = true;
    text($("#preview-title"), "Starting your camera…");
    text($("#preview-note"), "Allow camera and microphone access when your browser asks.");
    try {
      this.stream = await openCamera(this.choice, { echoCancellation: true, noiseSuppression: true });
    } catch (error) {
      box.dataset.camera = "error";
      const denied = error.name === "NotAllowedError" || error.name === "SecurityError";
      text($("#preview-title"), denied ? "Camera access is blocked" : "No camera found");
      text(
        $("#preview-note"),
        denied
          ? "Allow the camera and microphone for this site in your browser's settings, then try again."
          : "Connect a camera and microphone, then try again.",
      );
      $("#camera-retry").hidden = false;
      this.changed();
      return;
    }
    for (const video of [$("#preview"), $("#preview-backdrop"), $("#camera-phone-video")]) {
      video.srcObject = this.stream;
      video.play().catch(() => {});
    }
    box.dataset.camera = "on";
    this.renderGuide();
    this.changed();
  }

  /** A new shape or resolution, before going live: the running camera is asked again. */
  async choose(change) {
    this.choice = { ...this.choice, ...change };
    try {
      storage("local")?.setItem(CHOICE_KEY, JSON.stringify(this.choice));
    } catch {
      // storage refused: the choice lasts as long as the page
    }
    this.renderGuide();
    const track = this.stream?.getVideoTracks()[0];
    if (!track) return;
    try {
      await track.applyConstraints(videoConstraints(this.choice));
    } catch {
      // a camera that can't switch in place is opened again with the new constraints
      try {
        const fresh = await openCamera(this.choice, false);
        const [replacement] = fresh.getVideoTracks();
        replacement.enabled = track.enabled;
        this.stream.removeTrack(track);
        track.stop();
        this.stream.addTrack(replacement);
      } catch {
        // the camera keeps its current format; the readout shows which
      }
    }
    this.renderGuide();
  }

  /** Turn the camera or microphone off and on again (viewers see black / hear nothing meanwhile). */
  toggle(kind, button) {
    if (!this.stream) return;
    const tracks = kind === "video" ? this.stream.getVideoTracks() : this.stream.getAudioTracks();
    const enabled = !tracks.every((track) => track.enabled);
    for (const track of tracks) track.enabled = enabled;
    button.setAttribute("aria-pressed", String(enabled));
    if (kind === "video") this.box.dataset.camera = enabled ? "on" : "off";
    if (kind === "video" && !enabled) {
      text($("#preview-title"), "Camera off");
      text($("#preview-note"), "Viewers see a black picture until you turn it back on.");
    }
  }

  /** What the camera really captures: its settings, else the chosen size until it starts. */
  captured() {
    const settings = this.stream?.getVideoTracks()[0]?.getSettings() || {};
    if (settings.width && settings.height) return { ...settings, real: true };
    return { ...requestedSize(this.choice), real: false };
  }

  /** The preview's shape, the phone guide and the camera's line of the readout. */
  renderGuide() {
    const { width, height, frameRate, real } = this.captured();
    const box = this.box;
    box.dataset.orientation = width < height ? "portrait" : "landscape";
    box.style.setProperty("--capture-aspect", String(width / height));
    // What a phone shows of it, by the viewer room's own rule: the part kept when the picture fills the screen, or
    // the whole picture letterboxed.
    const fit = fitFor(width, height, PHONE.width, PHONE.height);
    box.dataset.fit = fit;
    const kept = fit === "cover" ? keptByCover(width, height, PHONE.width, PHONE.height) : { width: 1, height: 1 };
    box.style.setProperty("--kept-width", String(kept.width));
    box.style.setProperty("--kept-height", String(kept.height));
    const asked = requestedSize(this.choice);
    const size = `${width}x${height}`;
    text(
      $("#camera-captured"),
      !real
        ? `Camera: asking for ${size}.`
        : `Camera: ${size}${frameRate ? ` at ${Math.round(frameRate)} fps` : ""}` +
            (width === asked.width && height === asked.height
              ? "."
              : `, the nearest it offers to ${asked.width}x${asked.height}.`),
    );
    text(
      $("#camera-guide-note"),
      fit === "cover"
        ? `Phones fill their screen with it: a ${PHONE.width}x${PHONE.height} phone shows the part inside the lines.`
        : "Phones show it whole, letterboxed in a band across the screen: portrait fills it.",
    );
  }

  /**
   * Studio.js tells the camera about the WHIP session (or null) and whether it is going live (`locked`: the shape
   * and resolution stay as chosen until the show is off air). While a session is on air, read what it publishes.
   */
  onAir(session, locked = Boolean(session)) {
    for (const input of $$("#camera-options input, #camera-options select")) input.disabled = locked;
    $("#camera-options").dataset.locked = String(locked);
    if (session === this.session) return;
    this.session = session;
    this.last = null;
    clearInterval(this.timer);
    this.timer = null;
    const published = $("#camera-published");
    published.hidden = !session;
    text(published, "");
    if (!session) return;
    const read = () => this.readStats(session);
    read();
    this.timer = setInterval(read, STATS_INTERVAL_MS);
  }

  async readStats(session) {
    let report = null;
    try {
      for (const entry of (await session.pc.getStats()).values()) {
        if (entry.type === "outbound-rtp" && entry.kind === "video") report = entry;
      }
    } catch {
      return; // closed meanwhile
    }
    if (session !== this.session) return;
    let bits = 0;
    if (report && this.last && report.timestamp > this.last.timestamp) {
      bits = ((report.bytesSent - this.last.bytesSent) * 8 * 1000) / (report.timestamp - this.last.timestamp);
    }
    if (report) this.last = report;
    text($("#camera-published"), publishedText(report, bits));
    this.renderGuide(); // the camera's own size can change while live (a phone turned, a camera replugged)
  }
}
