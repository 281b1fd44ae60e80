// How a phone shows a live stream, one rule for both pages: the viewer room (room.js) fits its video by it, and the
// studio's guide (studio-camera.js) shows the host what that rule leaves on a phone's screen.
//
// A stream whose shape is close to the screen's fills it (object-fit: cover), losing a thin strip on two sides; one
// that would lose more than a quarter of its picture that way (a landscape stream on a portrait phone keeps about a
// quarter) is shown whole (contain), letterboxed on a dark background.

/** The phone the studio's guide draws: 390x844 CSS pixels (19.5:9), the common shape of today's phones. */
export const PHONE = Object.freeze({ width: 390, height: 844 });

/** The least share of the picture's width (or height) that filling the screen may keep. */
export const MIN_KEPT = 0.75;

/** "portrait", "landscape" or "square" for a picture of this size. */
export function orientation(width, height) {
  if (width > height) return "landscape";
  if (width < height) return "portrait";
  return "square";
}

/**
 * How much of a picture filling a box (object-fit: cover) stays visible: `{width, height}`, each a share of the
 * picture's own (1 = all of it). One of the two is always 1.
 */
export function keptByCover(videoWidth, videoHeight, boxWidth, boxHeight) {
  const video = videoWidth / videoHeight;
  const box = boxWidth / boxHeight;
  return video > box ? { width: box / video, height: 1 } : { width: 1, height: video / box };
}

/** "cover" when filling the box keeps at least MIN_KEPT of the picture, else "contain" (letterboxed). */
export function fitFor(videoWidth, videoHeight, boxWidth, boxHeight) {
  if (!videoWidth || !videoHeight || !boxWidth || !boxHeight) return "contain";
  const kept = keptByCover(videoWidth, videoHeight, boxWidth, boxHeight);
  return Math.min(kept.width, kept.height) >= MIN_KEPT ? "cover" : "contain";
}
