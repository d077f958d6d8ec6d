// What play.mjs and compare.mjs share: their command-line flags, Debian's headless Chromium
// (or $CHROMIUM; never a downloaded browser) launched to trust an optional test CA, and the
// path of the pinned hls.js.
import { chromium } from "playwright-core";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

// The value of --NAME, or `fallback`; without either, exits 2 naming the flag.
export function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) {
    if (fallback === undefined) {
      console.error(`missing --${name}`);
      process.exit(2);
    }
    return fallback;
  }
  return process.argv[i + 1];
}

// hls.js from node_modules (pinned by package-lock.json).
export const hlsPath = join(
  dirname(fileURLToPath(import.meta.url)),
  "node_modules/hls.js/dist/hls.min.js",
);

// Launches Chromium headless; `ca` (a PEM CA certificate file, or "") is trusted for this run
// by pinning its public key with --ignore-certificate-errors-spki-list.
export async function launch(ca) {
  const args = ["--autoplay-policy=no-user-gesture-required", "--no-sandbox"];
  if (ca) {
    const spki = new X509Certificate(readFileSync(ca)).publicKey.export({
      type: "spki",
      format: "der",
    });
    args.push(
      `--ignore-certificate-errors-spki-list=${createHash("sha256").update(spki).digest("base64")}`,
    );
  }
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args,
  });
}
