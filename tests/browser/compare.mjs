// Plays a live HLS stream with hls.js (default config, autoStartLoad) in headless Chromium
// (Debian's /usr/bin/chromium, or $CHROMIUM; launched as play.mjs does) under a bandwidth
// schedule applied with the DevTools protocol (Network.emulateNetworkConditions), and writes
// one JSON file with the same QoE figures player-sim reports plus the raw event list.
//
//   node compare.mjs --url http://HOST:PORT/live/demo/master.m3u8 \
//        --schedule "2000kbps@0s,350kbps@30s,2000kbps@60s" --duration 90s --out hlsjs.json \
//        [--page URL] [--latency 20ms] [--ca ca.pem] [--shape 'tc ... rate {kbps}kbit ...']
//        [--started FILE]
//
// t = 0 is the moment hls.loadSource() is called (the first request), the same origin as
// player-sim's schedule, which starts when its player joins. The schedule's first step is in
// force before that moment, each later step is applied at its time from node.
// --shape: the schedule is applied by running this shell command at each step, `{kbps}`
// replaced by the rate (e.g. tc changing a tbf qdisc on the link Chromium's namespace is
// behind), and DevTools only adds the per-request latency; without it, DevTools throttles.
// --page: the page is first navigated there (default: the stream's origin + "/"), so the
// player runs same-origin, as play.mjs does.
// --started: FILE is written at t = 0, so that a script can start another player at the same
// moment (the bench harness's PARALLEL mode does, so that both join the live stream together).
import { arg, hlsPath, launch } from "./chromium.mjs";
import { writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

// "90s", "500ms", "2m", "1.5s", "90" (seconds) -> seconds
function seconds(text) {
  const m = /^\s*([0-9.]+)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) throw new Error(`bad duration ${text}`);
  const v = Number(m[1]);
  return { ms: v / 1000, s: v, m: v * 60, h: v * 3600, undefined: v }[m[2]];
}

// "2000kbps@0s,350kbps@30s" or "3000kbps" -> [{t, kbps}]
function schedule(text) {
  return text.split(",").map((part) => {
    const [rate, at] = part.trim().split("@");
    const m = /^([0-9.]+)\s*(kbps|mbps|bps)$/i.exec(rate.trim());
    if (!m) throw new Error(`bad rate ${rate}`);
    const mult = { kbps: 1, mbps: 1000, bps: 0.001 }[m[2].toLowerCase()];
    return { t: at ? seconds(at) : 0, kbps: Number(m[1]) * mult };
  });
}

const url = arg("url");
const steps = schedule(arg("schedule"));
const duration = seconds(arg("duration", "90s"));
const out = arg("out");
const latency_ms = seconds(arg("latency", "20ms")) * 1000;
const page_url = arg("page", new URL(url).origin + "/");
const ca = arg("ca", "");
const shape = arg("shape", "");
const started = arg("started", "");
steps.sort((a, b) => a.t - b.t);
if (steps[0].t > 0) steps.unshift({ t: 0, kbps: steps[0].kbps });

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

const browser = await launch(ca);
// Stopped (the bench script's trap): close Chromium and leave now, not when the schedule ends.
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    browser.close().finally(() => process.exit(143));
    setTimeout(() => process.exit(143), 3000).unref();
  });
}
let result;
try {
  const page = await browser.newPage();
  await page.goto(page_url).catch(() => {});
  await page.setContent("<video id=v muted playsinline></video>");
  await page.addScriptTag({ path: hlsPath });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const conditions = (kbps) =>
    cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: latency_ms,
      // bytes/s; -1: no DevTools throttling (the --shape command limits the link)
      downloadThroughput: kbps === null ? -1 : (kbps * 1000) / 8,
      uploadThroughput: kbps === null ? -1 : (100000 * 1000) / 8, // requests are never held back
    });
  const throttle = async (kbps) => {
    if (!shape) return conditions(kbps);
    execFileSync("sh", ["-c", shape.replaceAll("{kbps}", String(kbps))], { stdio: "inherit" });
  };
  if (shape) await conditions(null);
  await throttle(steps[0].kbps);
  const applied = [{ t: 0, kbps: steps[0].kbps }];

  // Start: everything in the page is timed from the loadSource() call.
  const node_t0 = performance.now();
  if (started) writeFileSync(started, `${Date.now()}\n`);
  await page.evaluate((url) => {
    const v = document.getElementById("v");
    // every request in Resource Timing (playlists served by the HTTP cache are counted)
    performance.setResourceTimingBufferSize(100000);
    const hls = new Hls();
    window.__hls = hls;
    const t0 = performance.now();
    const now = () => (performance.now() - t0) / 1000;
    const ev = [];
    window.__ev = ev;
    const st = {
      started: false,
      playing: false,
      stalled_since: null,
      level: -1, // level of the fragment at the playhead (FRAG_CHANGED)
      last: 0,
      played_s: 0,
      kbit_avg: 0, // Σ seconds × AVERAGE-BANDWIDTH (player-sim's basis)
      kbit_peak: 0, // Σ seconds × BANDWIDTH (hls.levels[l].bitrate)
    };
    window.__st = st;
    const lv = (l) => hls.levels[l] || {};
    const advance = () => {
      const t = now();
      if (st.playing && st.level >= 0) {
        const d = t - st.last;
        st.played_s += d;
        st.kbit_avg += (d * (lv(st.level).averageBitrate || lv(st.level).bitrate || 0)) / 1000;
        st.kbit_peak += (d * (lv(st.level).bitrate || 0)) / 1000;
      }
      st.last = t;
      return t;
    };
    window.__advance = advance;
    const E = Hls.Events;
    hls.on(E.MANIFEST_PARSED, (_e, d) =>
      ev.push({
        t: now(),
        type: "manifest",
        levels: d.levels.map((l) => ({
          bitrate: l.bitrate,
          average: l.averageBitrate,
          height: l.height,
        })),
        first_level: d.firstLevel,
      }),
    );
    hls.on(E.LEVEL_SWITCHING, (_e, d) =>
      ev.push({ t: now(), type: "level_switching", level: d.level, bitrate: lv(d.level).bitrate }),
    );
    hls.on(E.LEVEL_SWITCHED, (_e, d) =>
      ev.push({ t: now(), type: "level_switched", level: d.level, bitrate: lv(d.level).bitrate }),
    );
    hls.on(E.LEVEL_LOADED, (_e, d) =>
      ev.push({
        t: now(),
        type: "level_loaded",
        level: d.level,
        last_sn: d.details.endSN,
        updated: d.details.updated,
      }),
    );
    hls.on(E.FRAG_LOADING, (_e, d) => {
      if (d.frag.type !== "main") return;
      ev.push({ t: now(), type: "frag_loading", level: d.frag.level, sn: d.frag.sn });
    });
    hls.on(E.FRAG_LOADED, (_e, d) => {
      if (d.frag.type !== "main") return;
      const s = d.frag.stats || d.stats || {};
      const loading = s.loading || {};
      ev.push({
        t: now(),
        type: "frag_loaded",
        level: d.frag.level,
        sn: d.frag.sn,
        size: s.total || s.loaded,
        load_ms: loading.end && loading.start ? loading.end - loading.start : undefined,
        bw_estimate_kbps: Math.round(hls.bandwidthEstimate / 1000),
        buffer_s: v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0,
      });
    });
    hls.on(E.FRAG_CHANGED, (_e, d) => {
      const t = advance();
      st.level = d.frag.level;
      ev.push({ t, type: "frag_changed", level: d.frag.level, sn: d.frag.sn });
    });
    hls.on(E.FRAG_LOAD_EMERGENCY_ABORTED, (_e, d) =>
      ev.push({
        t: now(),
        type: "frag_aborted",
        level: d.frag && d.frag.level,
        sn: d.frag && d.frag.sn,
        next_auto_level: hls.nextAutoLevel,
      }),
    );
    hls.on(E.ERROR, (_e, d) =>
      ev.push({ t: now(), type: "error", fatal: d.fatal, kind: d.type, details: d.details }),
    );
    v.addEventListener("playing", () => {
      const t = advance();
      if (!st.started) {
        st.started = true;
        ev.push({ t, type: "playing", first: true });
      } else {
        ev.push({ t, type: "playing", stall_s: st.stalled_since === null ? 0 : t - st.stalled_since });
      }
      st.playing = true;
      st.stalled_since = null;
    });
    v.addEventListener("waiting", () => {
      const t = advance();
      if (!st.started || st.stalled_since !== null) return; // the initial wait is not a stall
      st.playing = false;
      st.stalled_since = t;
      ev.push({ t, type: "waiting" });
    });
    setInterval(() => {
      if (!st.started) return;
      let pdt;
      try {
        const d = hls.playingDate;
        if (d) pdt = (Date.now() - d.getTime()) / 1000;
      } catch (_) {}
      ev.push({
        t: now(),
        type: "sample",
        playing: st.playing,
        latency: typeof hls.latency === "number" ? hls.latency : undefined,
        latency_pdt: pdt,
        buffer_s: v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0,
        bw_estimate_kbps: Math.round(hls.bandwidthEstimate / 1000),
      });
    }, 1000);
    hls.loadSource(url);
    hls.attachMedia(v);
    v.play().catch(() => {});
  }, url);

  // The schedule's later steps, timed from node's t0 (a few ms before the page's).
  for (const step of steps.slice(1)) {
    if (step.t >= duration) break;
    await sleep(step.t * 1000 - (performance.now() - node_t0));
    await throttle(step.kbps);
    applied.push({ t: (performance.now() - node_t0) / 1000, kbps: step.kbps });
  }
  await sleep(duration * 1000 - (performance.now() - node_t0));
  const raw = await page.evaluate(() => {
    const t = window.__advance();
    const st = window.__st;
    const hls = window.__hls;
    return {
      end_t: t,
      state: { ...st },
      hls_version: Hls.version,
      levels: hls.levels.map((l) => ({
        bitrate: l.bitrate,
        average: l.averageBitrate,
        height: l.height,
      })),
      events: window.__ev,
      // Playlist loads, and how many the browser's HTTP cache answered without a transfer
      // (a live playlist a server lets it reuse, e.g. under stale-while-revalidate, is one
      // that hls.js sees late).
      playlists: (() => {
        const pl = performance.getEntriesByType("resource").filter((e) => /\.m3u8(\?|$)/.test(e.name));
        return { loads: pl.length, from_cache: pl.filter((e) => e.transferSize === 0).length };
      })(),
    };
  });
  result = figures(raw, steps, applied);
  result.playlists = raw.playlists;
  result.browser = browser.version();
} finally {
  await browser.close();
}
writeFileSync(out, JSON.stringify(result, null, 1));
const f = result.figures;
console.log(
  `hls.js ${result.hls_version}: startup ${f.startup_s ?? "-"} s, ${f.avg_bitrate_kbps} kbit/s, ` +
    `${f.switches} switches, ${f.rebuffer_count} stalls / ${f.rebuffer_s} s, latency ${f.latency_s ?? "-"} s -> ${out}`,
);

function figures(raw, steps, applied) {
  const ev = raw.events;
  const r3 = (x) => (x === undefined || x === null || Number.isNaN(x) ? null : Math.round(x * 1000) / 1000);
  const first = ev.find((e) => e.type === "playing" && e.first);
  const st = raw.state;
  // A stall still going at the end counts up to the end.
  let stall_s = ev.filter((e) => e.type === "playing" && !e.first).reduce((a, e) => a + e.stall_s, 0);
  const stalls = ev.filter((e) => e.type === "waiting").length;
  if (st.stalled_since !== null) stall_s += raw.end_t - st.stalled_since;
  // Switches as player-sim counts them: quality changes between consecutive segments
  // (here: consecutive fragments reaching the playhead), and hls.js's LEVEL_SWITCHED events.
  const played = ev.filter((e) => e.type === "frag_changed").map((e) => e.level);
  let switches = 0;
  for (let i = 1; i < played.length; i++) if (played[i] !== played[i - 1]) switches++;
  const switched = ev.filter((e) => e.type === "level_switched");
  const loaded = ev.filter((e) => e.type === "frag_loaded");
  let loaded_switches = 0;
  for (let i = 1; i < loaded.length; i++) if (loaded[i].level !== loaded[i - 1].level) loaded_switches++;
  // First down-switch after each drop, first up-switch after each rise (LEVEL_SWITCHED,
  // and the decision itself, LEVEL_SWITCHING), relative to the step's time.
  const reactions = [];
  const level_at = (list, t) => {
    let l = null;
    for (const e of list) if (e.t <= t) l = e.level;
    return l;
  };
  const switching = ev.filter((e) => e.type === "level_switching");
  for (let i = 1; i < steps.length; i++) {
    const s = steps[i];
    if (s.t >= raw.end_t) break;
    const dir = s.kbps < steps[i - 1].kbps ? "down" : s.kbps > steps[i - 1].kbps ? "up" : null;
    if (!dir) continue;
    // until the next step the other way (a ramp's later rises do not cut the search short)
    let until = raw.end_t;
    for (let j = i + 1; j < steps.length; j++) {
      const dj = steps[j].kbps - steps[j - 1].kbps;
      if (dir === "down" ? dj > 0 : dj < 0) {
        until = steps[j].t;
        break;
      }
    }
    const find = (list) => {
      let cur = level_at(list, s.t);
      for (const e of list) {
        if (e.t <= s.t || e.t > until) continue;
        if (cur !== null && (dir === "down" ? e.level < cur : e.level > cur)) return r3(e.t - s.t);
        cur = e.level;
      }
      return null;
    };
    const fl = loaded.filter((e) => e.t > s.t && e.t <= until);
    const fq = ev.filter((e) => e.type === "frag_loading");
    const cur_req = level_at(fq, s.t);
    const first_req = fq.find(
      (e) => e.t > s.t && e.t <= until && cur_req !== null && (dir === "down" ? e.level < cur_req : e.level > cur_req),
    );
    const cur_frag = level_at(loaded, s.t);
    const first_frag = fl.find((e) => cur_frag !== null && (dir === "down" ? e.level < cur_frag : e.level > cur_frag));
    reactions.push({
      step_t: s.t,
      kbps: s.kbps,
      dir,
      switched_after_s: find(switched),
      switching_after_s: find(switching),
      frag_loaded_after_s: first_frag ? r3(first_frag.t - s.t) : null,
      // the request of the first fragment at the new level: what player-sim's timeline steps at
      frag_request_after_s: first_req ? r3(first_req.t - s.t) : null,
    });
  }
  const samples = ev.filter((e) => e.type === "sample" && e.playing);
  const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const lat_pdt = mean(samples.map((e) => e.latency_pdt).filter((x) => typeof x === "number"));
  const lat_hls = mean(samples.map((e) => e.latency).filter((x) => typeof x === "number"));
  const down = reactions.filter((x) => x.dir === "down");
  const up = reactions.filter((x) => x.dir === "up");
  return {
    hls_version: raw.hls_version,
    url,
    schedule: steps,
    applied,
    duration_s: duration,
    levels: raw.levels,
    figures: {
      startup_s: first ? r3(first.t) : null,
      // kbit/s of the playing level over play time; AVERAGE-BANDWIDTH, as player-sim weighs
      avg_bitrate_kbps: st.played_s > 0 ? r3(st.kbit_avg / st.played_s) : 0,
      // the same with hls.levels[level].bitrate (BANDWIDTH, peak)
      avg_bitrate_peak_kbps: st.played_s > 0 ? r3(st.kbit_peak / st.played_s) : 0,
      played_s: r3(st.played_s),
      switches,
      switches_loaded: loaded_switches,
      level_switched_events: switched.length,
      first_level_loaded: loaded.length ? loaded[0].level : null,
      fragments_loaded: loaded.length,
      // FRAG_LOAD_EMERGENCY_ABORTED fires more than once for one fragment: count fragments
      fragments_aborted: new Set(ev.filter((e) => e.type === "frag_aborted").map((e) => `${e.level}/${e.sn}`)).size,
      errors: ev.filter((e) => e.type === "error").length,
      rebuffer_count: stalls,
      rebuffer_s: r3(stall_s),
      // wall clock minus the playhead's PROGRAM-DATE-TIME (player-sim's definition), and hls.latency
      latency_s: r3(lat_pdt ?? lat_hls),
      latency_pdt_s: r3(lat_pdt),
      hls_latency_s: r3(lat_hls),
      first_down_switch_s: down.length ? down[0].switched_after_s : null,
      first_up_switch_s: up.length ? up[0].switched_after_s : null,
      first_down_request_s: down.length ? down[0].frag_request_after_s : null,
      first_up_request_s: up.length ? up[0].frag_request_after_s : null,
      reactions,
    },
    events: ev,
  };
}
