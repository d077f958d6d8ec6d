#!/usr/bin/env bash
# Player-simulator benchmarks. Prints, in one run:
#   1. offline sessions/s per core for each controller (cargo bench, 48-chunk sessions)
#   2. the largest live population one box holds against one edge: for each population size,
#      N players through a real edge in front of a real origin on a LOW-bitrate ladder
#      (~190/150 kbit/s with audio, made here with ffmpeg), their QoE, and CPU per player
#      (player-sim's CPU time / (players × run time)) beside the edge's own CPU.
#   3. the HSDPA × Envivio table, every controller (player-sim trace --abr all).
# "Holds" = no failed session, mean rebuffer ratio under 1 %, p95 startup under 4 s.
# Loopback only; bounded (about 1 minute per population size plus builds); stops by itself.
# Usage: bench/player.sh [SIZES...]   (default: 2500 5000 10000 12500)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-2500 5000 10000 12500}")
read -r -a SIZES <<<"${SIZES[*]}"
DURATION=${DURATION:-60}

command -v ffmpeg >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
}
cargo build --release -q -p origin -p edge -p player-sim
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # each process holds one fd per player connection

echo "== 1. offline sessions/s per core =="
cargo bench -q -p player-sim --bench offline 2>/dev/null | grep -E "sessions" || true

ORIGIN=18100 EDGE=18101
EDGE_ADMIN=18102
for p in $ORIGIN $EDGE; do
  if ss -ltn | grep -q "127.0.0.1:$p "; then echo "port $p is already in use" >&2; exit 1; fi
done
work=$(mktemp -d /tmp/player-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A low-bitrate ladder with the fixtures' structure (8 s, closed 2 s GOPs, aligned).
SRC=(-f lavfi -i "testsrc2=size=320x180:rate=25:duration=8"
     -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000:duration=8")
common=(-map 0:v -map 1:a -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p
        -g 50 -keyint_min 50 -sc_threshold 0 -bf 2 -x264-params "open_gop=0:scenecut=0"
        -c:a aac -b:a 24k -ac 1 -ar 48000
        -muxdelay 0 -muxpreload 0 -pes_payload_size 0 -mpegts_flags +resend_headers -f mpegts -y)
ffmpeg -hide_banner -loglevel error "${SRC[@]}" "${common[@]}" -vf scale=192:108 \
  -b:v 64k -maxrate 96k -bufsize 128k "$work/lo1.ts"
ffmpeg -hide_banner -loglevel error "${SRC[@]}" "${common[@]}" -vf scale=128:72 \
  -b:v 24k -maxrate 36k -bufsize 48k "$work/lo0.ts"

cat > "$work/origin.toml" <<TOML
listen = "127.0.0.1:$ORIGIN"
[[streams]]
name = "demo"
source = "loop"
renditions = [{ name = "lo1", file = "$work/lo1.ts" }, { name = "lo0", file = "$work/lo0.ts" }]
TOML
cat > "$work/edge.toml" <<TOML
listen = "127.0.0.1:$EDGE"
[admin]
listen = "127.0.0.1:$EDGE_ADMIN"   # not the default 9081: another edge may be running
[server]
max_connections = 60000
max_connections_per_client = 0   # every player comes from 127.0.0.1
max_requests_per_client = 0
[overload]
max_active = 50000               # measure capacity, not shedding
new_joins_above = 40000
[upstream]
urls = ["http://127.0.0.1:$ORIGIN"]
TOML
RUST_LOG=warn target/release/origin --config "$work/origin.toml" 2>"$work/origin.log" &
pids+=($!)
RUST_LOG=warn target/release/edge --config "$work/edge.toml" 2>"$work/edge.log" &
EDGE_PID=$!
pids+=($EDGE_PID)
for _ in $(seq 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$ORIGIN/readyz" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$ORIGIN/readyz" || { echo "origin not ready" >&2; cat "$work/origin.log" >&2; exit 1; }
echo
echo "== 2. live players against one edge (${DURATION} s each, ramp over 20 s, ladder:"
curl -s "http://127.0.0.1:$EDGE/live/demo/master.m3u8" | grep -o 'AVERAGE-BANDWIDTH=[0-9]*' | tr '\n' ' '
echo ") =="
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
printf "%8s %9s %10s %10s %10s %8s %11s %13s %11s %6s\n" players failed "rebuf %" "p95 rebuf%" \
  "startup95" "kbps" "latency s" "sim CPU/plyr" "edge CPU %" holds
for n in "${SIZES[@]}"; do
  e0=$(cpu_of $EDGE_PID)
  /usr/bin/env time -f "%U %S" -o "$work/time" target/release/player-sim run \
    --url "http://127.0.0.1:$EDGE/live/demo/master.m3u8" --players "$n" --duration "${DURATION}s" \
    --abr throughput --bandwidth 1000kbps --vary 0.3 --join ramp:20s --quiet \
    --out-dir "$work/out-$n" >"$work/run-$n.log" 2>&1 || { cat "$work/run-$n.log" >&2; exit 1; }
  e1=$(cpu_of $EDGE_PID)
  read -r u s <"$work/time"
  python3 - "$work/out-$n/report.json" "$n" "$DURATION" "$u" "$s" "$e0" "$e1" "$TICK" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n, dur, u, s, e0, e1, tick = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
a = r["aggregate"]
failed = sum(1 for x in r["sessions"] if x.get("error"))
rebuf, rebuf95 = a["rebuffer_ratio"]["mean"] * 100, a["rebuffer_ratio"]["p95"] * 100
st95 = a["startup_s"]["p95"]
lat = a.get("latency_s", {}).get("mean", float("nan"))
# Players are present for the run minus their join offset (ramp over 20 s: 10 s on average).
player_s = n * (dur - 10.0)
cpu = (u + s) / player_s * 100
edge = (e1 - e0) / tick / dur * 100
holds = failed == 0 and rebuf < 1.0 and st95 < 4.0
print(f"{n:8d} {failed:9d} {rebuf:10.3f} {rebuf95:10.2f} {st95:10.2f} {a['avg_bitrate_kbps']['mean']:8.0f} {lat:11.1f} {cpu:12.4f}% {edge:10.0f}% {'yes' if holds else 'NO':>6}")
PY
  grep -E "sessions failed" "$work/run-$n.log" | sed 's/^/         /'
done

echo
echo "== 3. HSDPA traces x Envivio movie, every controller =="
target/release/player-sim trace --movie ../shared/data/movies/envivio_dash3/movie_envivio_sabre.json \
  --traces ../shared/data/traces/hsdpa_norway_3g --abr all
