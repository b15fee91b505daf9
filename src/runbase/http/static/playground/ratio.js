// runbase playground: does the first frame fit the chosen aspect ratio?
// The server fits a first frame to the output size by centre crop, so a 4:3 photo in a
// 16:9 video loses a quarter of its height. The playground says so before the user pays,
// and offers the ratio nearest the image's (what the server picks when no ratio is sent,
// and what ModelArk's "adaptive" ratio does), or keeping the chosen one.
"use strict";

// The allowed ratio nearest an image's, on a log scale: the same rule as the server's
// nearest_aspect_ratio (runbase/core/seedance.py), so "Use 4:3" is what it would choose.
function nearestRatio(width, height, ratios) {
  const target = Math.log(width / height);
  const distance = (ratio) => {
    const [w, h] = ratio.split(":").map(Number);
    return Math.abs(Math.log(w / h) - target);
  };
  return ratios.reduce((best, ratio) => (distance(ratio) < distance(best) ? ratio : best));
}

// What to tell the user, or null when the frame fits the chosen ratio (or was accepted).
//   image: {width, height, uri}, chosen: "16:9", kept: {uri, ratio} the user accepted.
function ratioAdvice(image, chosen, ratios, kept) {
  if (!image || !chosen) return null;
  const nearest = nearestRatio(image.width, image.height, ratios);
  if (nearest === chosen) return null;
  if (kept && kept.uri === image.uri && kept.ratio === chosen) return null;
  return {
    nearest,
    text: `The first frame is ${image.width}×${image.height}, nearest ${nearest}; ` +
      `a ${chosen} video crops it to fit.`,
  };
}
