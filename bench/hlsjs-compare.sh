#!/usr/bin/env bash
# hls.js in headless Chromium vs player-sim on the same live stream under the same bandwidth
# schedule. Starts the origin (loop stream `demo`) and two edges in front of it from the
# release binaries (temp copies of config/origin.toml and config/edge.toml on free ports; one
# edge per player, so neither's playlist requests refresh the other's cached copy), then for each
# schedule runs RUNS times: tests/browser/compare.mjs (hls.js 1.7.4, default config) and
# `player-sim run --players 1 --abr hlsjs`, and prints a side-by-side table of medians.
#
#   RUNS=3 DURATION=90s bench/hlsjs-compare.sh                 # the four default schedules
#   RUNS=1 DURATION=40s SCHEDULES="2000kbps@0s,350kbps@20s,2000kbps@30s" bench/hlsjs-compare.sh
#   TABLE_ONLY=1 OUT=/tmp/hlsjs-compare.XXXX RUNS=3 bench/hlsjs-compare.sh   # tables of a past run
#
#   SHAPER=tbf RUNS=3 bench/hlsjs-compare.sh   # both players behind a real shaped link (root)
#
# Env: RUNS (3), DURATION (90s), SCHEDULES (';'-separated, overrides the list), LATENCY (20ms,
# per request, both players), ABR (hlsjs), OUT (folder for every JSON; default a temp dir
# that is kept and printed), CHROMIUM (/usr/bin/chromium), PARALLEL (set: both players at
# once), SHAPER (devtools | tbf), VIA (origin | edge). One Chromium at a time.
#
# VIA=origin (the default): both players load from the origin, which serves every playlist
# fresh. VIA=edge: each from an edge of its own. An edge serves a live playlist stale while it
# revalidates, so a lone viewer's reload gets the copy its previous reload refreshed, and
# with max-age=1 whether a reload 1 s after another is fresh is decided by milliseconds: the
# two players then learn of a new segment up to 2 s apart either way, run to run.
#
# SHAPER=devtools (the default): Chromium is throttled by DevTools
# (Network.emulateNetworkConditions) and player-sim by its own emulated link. SHAPER=tbf:
# the origin and edge run in a network namespace of their own, Chromium and player-sim each in
# another one behind a veth pair, and the schedule is applied to both the same way, by tc
# changing a tbf qdisc on the server's end of each link (queue 100 ms); DevTools then only adds
# LATENCY and player-sim's emulated link is unlimited. TCP, the queue and the packet
# overheads are real for both, and no instrument of one player's own is in the comparison.
# The namespaces are made by this script and deleted when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
DURATION=${DURATION:-90s}
LATENCY=${LATENCY:-20ms}
ABR=${ABR:-hlsjs}
SHAPER=${SHAPER:-devtools}
VIA=${VIA:-origin}
case "$VIA" in edge | origin) ;; *) echo "VIA must be edge or origin, not $VIA" >&2; exit 2 ;; esac
case "$SHAPER" in devtools | tbf) ;; *) echo "SHAPER must be devtools or tbf, not $SHAPER" >&2; exit 2 ;; esac
DEFAULT_SCHEDULES="2000kbps@0s,350kbps@30s,2000kbps@60s;2000kbps@0s,150kbps@30s,2000kbps@50s;300kbps@0s,600kbps@20s,900kbps@40s,1500kbps@60s;450kbps@0s,700kbps@20s,1000kbps@40s,1400kbps@60s"
IFS=';' read -r -a SCHEDS <<<"${SCHEDULES:-$DEFAULT_SCHEDULES}"
OUT=${OUT:-$(mktemp -d /tmp/hlsjs-compare.XXXXXX)}
mkdir -p "$OUT"

if [ -z "${TABLE_ONLY:-}" ]; then
for b in origin edge player-sim; do
  if [ ! -x "target/release/$b" ]; then
    echo "target/release/$b missing: cargo build --release -p origin -p edge -p player-sim" >&2
    exit 1
  fi
done
command -v node >/dev/null || { echo "node missing" >&2; exit 1; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "chromium missing (${CHROMIUM:-/usr/bin/chromium})" >&2; exit 1; }
[ -d tests/browser/node_modules/hls.js ] || (cd tests/browser && npm ci --silent)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# origin, then each edge's proxy and admin port (a: Chromium's, b: player-sim's), all distinct
ports=()
while [ ${#ports[@]} -lt 5 ]; do
  p=$(free_port)
  [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
ORIGIN=${ports[0]}; EDGE=${ports[1]}; ADMIN=${ports[2]}; EDGE_B=${ports[3]}; ADMIN_B=${ports[4]}

pids=()
NS=""
cleanup() {
  if [ -f "$OUT/.pids" ]; then
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$OUT/.pids"
    rm -f "$OUT/.pids"
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$NS" ]; then
    for n in a b srv; do ip netns del "$NS-$n" 2>/dev/null || true; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Where each program runs, the address the players use for the servers, and the servers' listen address.
IN_SRV=(); IN_A=(); IN_B=(); HOST_A=127.0.0.1; HOST_B=127.0.0.1; SRV_LISTEN=127.0.0.1
if [ "$SHAPER" = tbf ]; then
  command -v tc >/dev/null || { echo "SHAPER=tbf needs tc (iproute2) and root" >&2; exit 1; }
  NS=hlsc$$
  for n in srv a b; do ip netns add "$NS-$n"; ip -n "$NS-$n" link set lo up; done
  # server end a0/b0 (shaped: what the player downloads), player end eth0
  for n in a b; do
    sub=$([ $n = a ] && echo 1 || echo 2)
    ip -n "$NS-srv" link add ${n}0 type veth peer name eth0 netns "$NS-$n"
    ip -n "$NS-srv" addr add 10.78.$sub.1/24 dev ${n}0
    ip -n "$NS-$n" addr add 10.78.$sub.2/24 dev eth0
    ip -n "$NS-srv" link set ${n}0 up
    ip -n "$NS-$n" link set eth0 up
  done
  IN_SRV=(ip netns exec "$NS-srv"); IN_A=(ip netns exec "$NS-a"); IN_B=(ip netns exec "$NS-b")
  HOST_A=10.78.1.1; HOST_B=10.78.2.1; SRV_LISTEN=0.0.0.0
fi
# the tc command that sets link DEV (a0: Chromium's, b0: player-sim's) to {kbps}; 3 KB of
# burst (two packets), 100 ms of queue
shape_cmd() { echo "tc -n $NS-srv qdisc replace dev $1 root tbf rate {kbps}kbit burst 3kb latency 100ms"; }
# Applies schedule $1 to link $2: its first rate before returning, the later ones from a
# child left in the background (its pid noted in .pids for the trap).
shape_schedule() {
  python3 - "$1" "$(shape_cmd "$2")" "$OUT/.pids" <<'PY'
import os, re, subprocess, sys, time
t0 = time.monotonic()
for n, part in enumerate(sys.argv[1].split(",")):
    rate, _, at = part.partition("@")
    kb = float(re.match(r"([0-9.]+)", rate.strip()).group(1)) * (1000 if "mbps" in rate.lower() else 1)
    m = re.match(r"([0-9.]+)(ms|s|m)?", (at.strip() or "0s"))
    t = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]
    time.sleep(max(0.0, t0 + t - time.monotonic()))
    subprocess.run(["sh", "-c", sys.argv[2].replace("{kbps}", f"{kb:g}")], check=True)
    if n == 0:
        if os.fork():
            sys.exit(0)
        with open(sys.argv[3], "a") as f:
            f.write(f"{os.getpid()}\n")
PY
}

sed -e "s|^listen = .*|listen = \"$SRV_LISTEN:$ORIGIN\"|" config/origin.toml >"$OUT/origin.toml"
RUST_LOG=warn "${IN_SRV[@]}" target/release/origin --config "$OUT/origin.toml" 2>"$OUT/origin.log" &
pids+=($!)
# Two edges, as two viewers in different places would have: with one shared edge, whichever
# player asked for a playlist second got a copy the other's request had just refreshed (a
# lone viewer reloading every target duration gets one that is up to max-age +
# stale-while-revalidate old), and in PARALLEL runs player-sim learnt of new segments 2-3 s
# before hls.js did.
for e in a b; do
  port=$EDGE; admin=$ADMIN
  [ $e = b ] && { port=$EDGE_B; admin=$ADMIN_B; }
  sed -e "s|^listen = \"127.0.0.1:8081\"|listen = \"$SRV_LISTEN:$port\"|" \
      -e "s|^listen = \"127.0.0.1:9081\"|listen = \"127.0.0.1:$admin\"|" \
      -e "s|^urls = .*|urls = [\"http://127.0.0.1:$ORIGIN\"]|" config/edge.toml >"$OUT/edge-$e.toml"
  RUST_LOG=warn "${IN_SRV[@]}" target/release/edge --config "$OUT/edge-$e.toml" \
    --access-log "$OUT/access-$e.log" 2>"$OUT/edge-$e.log" &
  pids+=($!)
done

URL="http://$HOST_A:$EDGE/live/demo/master.m3u8"   # Chromium's
URL_B="http://$HOST_B:$EDGE_B/live/demo/master.m3u8" # player-sim's
if [ "$VIA" = origin ]; then
  URL="http://$HOST_A:$ORIGIN/live/demo/master.m3u8"
  URL_B="http://$HOST_B:$ORIGIN/live/demo/master.m3u8"
fi
ready=0
for _ in $(seq 300); do
  if "${IN_SRV[@]}" curl -fs -o /dev/null "http://127.0.0.1:$ORIGIN/readyz" \
      && "${IN_A[@]}" curl -fs -o "$OUT/master.m3u8" "$URL" && "${IN_B[@]}" curl -fs -o /dev/null "$URL_B"; then
    ready=1; break
  fi
  sleep 0.2
done
[ $ready = 1 ] || { echo "origin/edge not ready (logs in $OUT)" >&2; exit 1; }
echo "origin :$ORIGIN, edges :$EDGE (hls.js) :$EDGE_B (player-sim); players via $VIA; shaper $SHAPER${NS:+ (namespaces $NS-*)}"
echo "ladder: $(grep -o 'AVERAGE-BANDWIDTH=[0-9]*\|[^-]BANDWIDTH=[0-9]*' "$OUT/master.m3u8" | tr '\n' ' ')"
echo "RUNS=$RUNS DURATION=$DURATION LATENCY=$LATENCY ABR=$ABR; JSON in $OUT"

# player-sim in the background, its pid noted for the trap (also from the PARALLEL subshell)
exec_ps() { "$@" & local p=$!; echo "$p" >>"$OUT/.pids"; wait "$p"; }
# player-sim's per-request latency is a config key (run.latency), not a flag
sed -e "s|^latency = .*|latency = \"$LATENCY\"|" config/player-sim.toml >"$OUT/player-sim.toml"
run_ps() {  # schedule tag seed
  mkdir -p "$OUT/ps-$2"
  local bw=$1
  if [ "$SHAPER" = tbf ]; then shape_schedule "$1" b0; bw=100000kbps; fi
  if ! exec_ps "${IN_B[@]}" target/release/player-sim run --url "$URL_B" --players 1 --join all --vary 0 \
      --duration "$DURATION" --bandwidth "$bw" --abr "$ABR" --config "$OUT/player-sim.toml" --seed "$3" \
      --out-dir "$OUT/ps-$2" --out "$OUT/ps-$2/report.json" --quiet \
      >"$OUT/ps-$2/stdout.log" 2>&1; then
    echo "  player-sim failed, see $OUT/ps-$2/stdout.log" >&2
  fi
}

n=0
for sched in "${SCHEDS[@]}"; do
  n=$((n + 1))
  for run in $(seq "$RUNS"); do
    tag="s$n-r$run"
    echo "[$sched] run $run/$RUNS: hls.js${PARALLEL:+ and player-sim at once}" >&2
    # in the background and waited for, so that the trap can stop it (playwright closes
    # Chromium on SIGTERM)
    shape=(); [ "$SHAPER" = tbf ] && shape=(--shape "$(shape_cmd a0)")
    rm -f "$OUT/.t0-$tag"
    "${IN_A[@]}" node tests/browser/compare.mjs --url "$URL" --schedule "$sched" --duration "$DURATION" \
      --latency "$LATENCY" "${shape[@]}" --started "$OUT/.t0-$tag" \
      --out "$OUT/hlsjs-$tag.json" >"$OUT/hlsjs-$tag.log" 2>&1 &
    hjob=$!
    pids+=($hjob)
    if [ -n "${PARALLEL:-}" ]; then
      # player-sim joins when hls.js calls loadSource (compare.mjs writes .t0-TAG then), not
      # when Chromium is launched a second or so earlier: both see the same live edge
      for _ in $(seq 6000); do
        [ -e "$OUT/.t0-$tag" ] || ! kill -0 "$hjob" 2>/dev/null && break
        sleep 0.01
      done
      run_ps "$sched" "$tag" "$run" & psjob=$!; pids+=($psjob)
    fi
    if ! wait "$hjob"; then
      echo "  compare.mjs failed, see $OUT/hlsjs-$tag.log" >&2
    fi
    if [ -n "${PARALLEL:-}" ]; then wait "$psjob" || true; else
      echo "[$sched] run $run/$RUNS: player-sim" >&2
      run_ps "$sched" "$tag" "$run"
    fi
  done
done

fi

# The side-by-side tables (medians over runs).
python3 - "$OUT" "$RUNS" "${SCHEDS[@]}" <<'PY'
import json, os, re, statistics, sys
out, runs, scheds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, nd=2):
    if x is None:
        return "-"
    if isinstance(x, float) and not x.is_integer() or nd == 3:
        return f"{x:.{nd}f}"
    return str(round(x, nd))

def steps_of(s):
    res = []
    for part in s.split(","):
        rate, _, at = part.partition("@")
        m = re.match(r"([0-9.]+)(kbps|mbps)", rate.strip(), re.I)
        kb = float(m.group(1)) * (1000 if m.group(2).lower() == "mbps" else 1)
        t = at.strip() or "0s"
        tm = re.match(r"([0-9.]+)(ms|s|m)?", t)
        v = float(tm.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[tm.group(2)]
        res.append((v, kb))
    return res

def svg_switch_times(path, sched):
    """player-sim's timelines.svg: the chosen-bitrate polyline (a step per segment, from its
    request) mapped back to (t, kbit/s) with the axes' tick labels; returns the first down-switch
    after the first drop and the first up-switch after the first rise, relative to the step."""
    try:
        svg = open(path).read()
    except OSError:
        return None, None
    lines = re.findall(r'<polyline[^>]*points="([^"]+)"[^>]*>', svg)
    polys = re.findall(r'<polyline([^>]*)>', svg)
    chosen = None
    for attrs in polys:
        if 'stroke-width="2' in attrs and 'stroke-dasharray' not in attrs.replace('stroke-dasharray=""', ''):
            chosen = re.search(r'points="([^"]+)"', attrs).group(1)
            break
    if chosen is None:
        return None, None
    pts = [tuple(map(float, p.split(","))) for p in chosen.split()]
    # x ticks: <text ... text-anchor="middle">N</text> under the axis; y ticks: text-anchor="end"
    xt = [(float(x), float(v)) for x, v in re.findall(r'<text x="([0-9.]+)" y="[0-9.]+" text-anchor="middle">([0-9.]+)</text>', svg)]
    yt = [(float(y), float(v)) for y, v in re.findall(r'<text x="[0-9.]+" y="([0-9.]+)" text-anchor="end">([0-9.]+)</text>', svg)]
    if len(xt) < 2 or len(yt) < 2:
        return None, None
    (x0, t0), (x1, t1) = xt[0], xt[-1]
    (ya, va), (yb, vb) = yt[0], yt[-1]
    T = lambda x: t0 + (x - x0) * (t1 - t0) / (x1 - x0)
    V = lambda y: va + (y - ya) * (vb - va) / (yb - ya)
    seq = []  # (t, kbps) at each segment request
    for i in range(0, len(pts) - 1, 2):
        seq.append((T(pts[i][0]), V(pts[i][1])))
    return reaction(seq, steps_of(sched), 1e9, tol=1)

def reaction(seq, steps, end, tol=0):
    """seq: (t, level or kbit/s) in time order. The first down-switch after the schedule's first
    drop and the first up-switch after its first rise, from the step's time, each searched up
    to the next step the other way (or the end)."""
    res = {}
    for i in range(1, len(steps)):
        t, kb = steps[i]
        prev = steps[i - 1][1]
        d = "down" if kb < prev else "up" if kb > prev else None
        if d is None or d in res:
            continue
        until = end
        for j in range(i + 1, len(steps)):
            dj = steps[j][1] - steps[j - 1][1]
            if (d == "down" and dj > 0) or (d == "up" and dj < 0):
                until = steps[j][0]
                break
        cur = None
        for ts, v in seq:
            if ts <= t:
                cur = v
        res[d] = None
        for ts, v in seq:
            if ts <= t or ts > until:
                continue
            if cur is not None and ((d == "down" and v < cur - tol) or (d == "up" and v > cur + tol)):
                res[d] = ts - t
                break
            cur = v
    return res.get("down"), res.get("up")

rows = [
    ("startup_s", "startup (s)", 2),
    ("avg_bitrate_kbps", "bitrate (kbit/s, time-weighted)", 0),
    ("switches", "switches (between segments)", 1),
    ("first_down_request_s", "1st down-switch, request (s)", 2),
    ("first_up_request_s", "1st up-switch, request (s)", 2),
    ("first_down_switch_s", "1st down-switch, played (s)", 2),
    ("first_up_switch_s", "1st up-switch, played (s)", 2),
    ("rebuffer_count", "stalls", 1),
    ("rebuffer_s", "stall time (s)", 2),
    ("latency_s", "latency (s, wall - PDT)", 2),
]
extra_h = [
    ("level_switched_events", "hls.js LEVEL_SWITCHED events"),
    ("fragments_aborted", "hls.js fragments aborted"),
    ("first_level_loaded", "hls.js first fragment's level"),
    ("hls_latency_s", "hls.js hls.latency (s)"),
    ("avg_bitrate_peak_kbps", "hls.js bitrate on BANDWIDTH (kbit/s)"),
]
summary = {}
for n, sched in enumerate(scheds, 1):
    H, P = {k: [] for k, _, _ in rows}, {k: [] for k, _, _ in rows}
    HX = {k: [] for k, _ in extra_h}
    for r in range(1, runs + 1):
        tag = f"s{n}-r{r}"
        try:
            hj = json.load(open(os.path.join(out, f"hlsjs-{tag}.json")))
            h = hj["figures"]
            ev = hj["events"]
            steps = steps_of(sched)
            end = hj.get("duration_s", 1e9)
            h["first_down_request_s"], h["first_up_request_s"] = reaction(
                [(e["t"], e["level"]) for e in ev if e["type"] == "frag_loading"], steps, end)
            h["first_down_switch_s"], h["first_up_switch_s"] = reaction(
                [(e["t"], e["level"]) for e in ev if e["type"] == "level_switched"], steps, end)
            h["fragments_aborted"] = len({(e.get("level"), e.get("sn")) for e in hj["events"] if e["type"] == "frag_aborted"})
            for k, _, _ in rows:
                H[k].append(h.get(k))
            for k, _ in extra_h:
                HX[k].append(h.get(k))
        except (OSError, ValueError, KeyError):
            pass
        try:
            rep = json.load(open(os.path.join(out, f"ps-{tag}", "report.json")))
            s = rep["sessions"][0]
            for k in ("startup_s", "avg_bitrate_kbps", "switches", "rebuffer_count", "rebuffer_s", "latency_s"):
                P[k].append(s.get(k))
            d, u = svg_switch_times(os.path.join(out, f"ps-{tag}", "timelines.svg"), sched)
            P["first_down_request_s"].append(d)
            P["first_up_request_s"].append(u)
        except (OSError, ValueError, KeyError, IndexError):
            pass
    print()
    print(f"schedule {sched}  ({runs} run(s), medians)")
    print(f"| {'':38} | {'hls.js':>9} | {'player-sim':>10} |")
    print(f"|{'-'*40}|{'-'*11}|{'-'*12}|")
    for k, label, nd in rows:
        print(f"| {label:38} | {fmt(med(H[k]), nd):>9} | {fmt(med(P[k]), nd):>10} |")
    for k, label in extra_h:
        print(f"| {label:38} | {fmt(med(HX[k]), 2):>9} | {'':>10} |")
    summary[sched] = {"hlsjs": {k: med(v) for k, v in {**H, **HX}.items()}, "player_sim": {k: med(v) for k, v in P.items()}}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(f"\nper-run JSON and summary.json in {out}")
PY
