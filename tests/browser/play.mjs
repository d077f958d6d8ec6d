// Plays an HLS stream with hls.js in headless Chromium (Debian's /usr/bin/chromium, or
// $CHROMIUM) for a while and prints one JSON report on stdout.
//
//   node play.mjs --page https://HOST:PORT/ --url https://HOST:PORT/live/demo/master.m3u8 \
//        --seconds 12 [--ca ca.pem]
//
// The page is first navigated to --page (any URL on the stream's host, so the player runs
// same-origin, as a site's own player does), then hls.js from node_modules is injected.
// --ca: a PEM CA certificate that Chromium trusts for this run (its public key is pinned with
// --ignore-certificate-errors-spki-list, which accepts a chain containing that key).
import { arg, hlsPath, launch } from "./chromium.mjs";

const page_url = arg("page");
const url = arg("url");
const seconds = Number(arg("seconds", "12"));
const ca = arg("ca", "");
const browser = await launch(ca);
try {
  const page = await browser.newPage();
  const tls = new Set();
  page.on("response", async (r) => {
    const d = await r.securityDetails().catch(() => null);
    if (d && d.protocol) tls.add(d.protocol);
  });
  await page.goto(page_url);
  await page.setContent("<video id=v muted playsinline></video>");
  await page.addScriptTag({ path: hlsPath });
  const report = await page.evaluate(
    ({ url, seconds }) =>
      new Promise((resolve) => {
        const v = document.getElementById("v");
        const hls = new Hls();
        const errors = [];
        let frags = 0;
        hls.on(Hls.Events.ERROR, (_e, d) =>
          errors.push({ fatal: d.fatal, type: d.type, details: d.details }),
        );
        hls.on(Hls.Events.FRAG_LOADED, () => frags++);
        hls.loadSource(url);
        hls.attachMedia(v);
        v.play().catch(() => {});
        setTimeout(() => {
          const protocols = [
            ...new Set(
              performance
                .getEntriesByType("resource")
                .map((r) => r.nextHopProtocol)
                .filter((p) => p),
            ),
          ];
          resolve({
            hls_version: Hls.version,
            current_time: v.currentTime,
            fragments: frags,
            levels: hls.levels.length,
            decoded_frames: v.getVideoPlaybackQuality().totalVideoFrames,
            errors,
            protocols,
          });
        }, seconds * 1000);
      }),
    { url, seconds },
  );
  report.tls = [...tls];
  report.browser = browser.version();
  console.log(JSON.stringify(report));
} finally {
  await browser.close();
}
