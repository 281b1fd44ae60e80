// LL-HLS playback for the viewer room, when WebRTC is full or cannot connect: hls.js (vendored, one file:
// /vendor/hls.light.min.mjs, loaded only when needed), and the program time of the picture on screen, by which the
// room holds its product and sale events (docs/video.md "HLS for the crowd").

const HLS_MODULE = "/vendor/hls.light.min.mjs";

let loading = null;

function loadHls() {
  loading ||= import(HLS_MODULE).then((module) => module.default);
  return loading;
}

/** The room's HLS playlist URL (the server's `webrtc_full` answer names the same one). */
export function hlsUrl(roomId) {
  return `/hls/${encodeURIComponent(roomId)}/live.m3u8`;
}

export class HlsPlayer {
  /** Play `url` in `video`; `onFatal(reason)` when playback cannot go on (the stream ended, the network is gone). */
  constructor(video, url, { onFatal = () => {} } = {}) {
    this.video = video;
    this.url = url;
    this.onFatal = onFatal;
    this.hls = null;
    this.native = false;
    this.stopped = false;
  }

  async start() {
    const Hls = await loadHls();
    if (this.stopped) return;
    if (!Hls.isSupported()) {
      // Safari on iPhone: no MediaSource, but HLS (and LL-HLS) natively
      this.native = true;
      this.video.src = this.url;
      return;
    }
    // No worker: the page's Content-Security-Policy allows no blob: workers, and remuxing fMP4 is cheap.
    const hls = new Hls({ lowLatencyMode: true, enableWorker: false, backBufferLength: 10 });
    this.hls = hls;
    let recoveries = 0;
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal || this.stopped) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && recoveries++ < 2) {
        hls.recoverMediaError();
        return;
      }
      this.onFatal(data.details || data.type);
    });
    hls.loadSource(this.url);
    hls.attachMedia(this.video);
  }

  /** The wall-clock time (ms since the epoch, the server's clock) of the picture on screen; null before it plays. */
  programTime() {
    if (this.hls) {
      const date = this.hls.playingDate;
      return date ? date.getTime() : null;
    }
    if (this.native && typeof this.video.getStartDate === "function") {
      const start = this.video.getStartDate().getTime();
      return Number.isNaN(start) ? null : start + this.video.currentTime * 1000;
    }
    return null;
  }

  /** Seconds behind the live edge, as hls.js estimates it (null when unknown). */
  latency() {
    return this.hls ? this.hls.latency : null;
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    if (this.hls) this.hls.destroy();
    this.hls = null;
    if (this.native) {
      this.video.removeAttribute("src");
      this.video.load();
    }
  }
}
