#!/usr/bin/env bash
# Origin benchmarks, each printed beside a peer measured in the same run:
#  (a) demux+segment+publish throughput per core  vs  ffmpeg's HLS segmenter (-c copy)
#  (b) delay from the arrival of the input that completes a segment (its last packet, or the
#      next keyframe that shows it ended) to the playlist listing it, under a real ffmpeg
#      push at real-time pace (target <= 10 ms)
#  (c) playlist and segment requests/s with wrk  vs  nginx serving the same bytes as files
# Loopback only, bounded in time (about 2 minutes). Needs root for apt when tools are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for t in wrk nginx ffmpeg; do command -v "$t" >/dev/null 2>&1 || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -q -p origin
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "== (a) throughput"
cargo bench -q -p origin --bench segmenter 2>/dev/null | sed 's/^/   /'

PORT=18080
NGINX_PORT=18081
cat > "$work/origin.toml" <<TOML
listen = "127.0.0.1:$PORT"
[[streams]]
name = "demo"
source = "loop"
[[streams]]
name = "bench"
source = "push"
[[streams.renditions]]
name = "360p"
[[streams.renditions]]
name = "240p"
[[streams.renditions]]
name = "144p"
TOML
RUST_LOG=warn target/release/origin --config "$work/origin.toml" 2>"$work/origin.log" &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== (b) publish delay: 3 renditions pushed by ffmpeg at real-time pace for 24 s"
args=()
for r in 360p 240p 144p; do args+=(-re -stream_loop 2 -i "origin/fixtures/$r.ts"); done
i=0
for r in 360p 240p 144p; do
  args+=(-map "$i" -c copy -flush_packets 1 -f mpegts -method PUT "http://127.0.0.1:$PORT/ingest/bench/$r"); i=$((i+1))
done
ffmpeg -hide_banner -nostdin -v error "${args[@]}"
curl -fs "http://127.0.0.1:$PORT/metrics" > "$work/metrics.txt"
python3 - "$work/metrics.txt" <<'PY'
import re, sys
buckets, count = [], 0
for line in open(sys.argv[1]):
    m = re.match(r'origin_segment_publish_delay_seconds_bucket\{stream="bench",le="([^"]+)"\} (\d+)', line)
    if m:
        buckets.append((float("inf") if m[1] == "+Inf" else float(m[1]), int(m[2])))
    m = re.match(r'origin_segment_publish_delay_seconds_count\{stream="bench"\} (\d+)', line)
    if m:
        count = int(m[1])
total = re.search(r'origin_segment_publish_delay_seconds_sum\{stream="bench"\} ([0-9.e-]+)', open(sys.argv[1]).read())
def q(p):
    need = p * count
    for le, c in buckets:
        if c >= need:
            return le
print(f"   segments published by the push: {count}")
print(f"   mean delay: {float(total[1]) / max(count, 1) * 1000:.3f} ms")
for p in (0.5, 0.99, 1.0):
    print(f"   p{int(p*100)}: <= {q(p)*1000:g} ms (histogram bucket bound)")
print(f"   target <= 10 ms: {'met' if q(1.0) <= 0.01 else 'NOT met'}")
PY

echo "== (c) requests/s: origin vs nginx serving the same playlist and segment from files"
pl="http://127.0.0.1:$PORT/live/demo/360p/index.m3u8"
# The newest segment: it stays fetchable for the whole run (listed, then retained).
msn=$(curl -fs "$pl" | grep -E '^[0-9]+\.ts$' | tail -1)
mkdir -p "$work/www/live/demo/360p" "$work/nginx"
curl -fs "$pl" > "$work/www/live/demo/360p/index.m3u8"
curl -fs "http://127.0.0.1:$PORT/live/demo/360p/$msn" > "$work/www/live/demo/360p/$msn"
seg_bytes=$(stat -c %s "$work/www/live/demo/360p/$msn")
chmod -R a+rX "$work"   # nginx workers run unprivileged
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  open_file_cache max=100 inactive=60s;
  keepalive_requests 1000000;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$NGINX_PORT; root $work/www; }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
sleep 0.5
run_wrk() { wrk -t1 -c64 -d8s --latency "$1" 2>&1; }
summary() { # name wrk-output -> prints a row on stderr, req/s on stdout
  local rps mbs p99 bad
  rps=$(grep -E '^Requests/sec' <<<"$2" | awk '{print $2}')
  mbs=$(grep -E '^Transfer/sec' <<<"$2" | awk '{print $2}')
  p99=$(grep -E '^ +99%' <<<"$2" | awk '{print $2}')
  bad=$(grep -E 'Non-2xx' <<<"$2" || true)
  printf '   %-30s %12s req/s %10s/s  p99 %-8s %s\n' "$1" "$rps" "$mbs" "$p99" "${bad:+ FAILED: $bad}" >&2
  echo "$rps"
}
o_pl=$(run_wrk "$pl"); n_pl=$(run_wrk "http://127.0.0.1:$NGINX_PORT/live/demo/360p/index.m3u8")
o_sg=$(run_wrk "http://127.0.0.1:$PORT/live/demo/360p/$msn"); n_sg=$(run_wrk "http://127.0.0.1:$NGINX_PORT/live/demo/360p/$msn")
a=$(summary "origin playlist" "$o_pl")
b=$(summary "nginx  playlist (static file)" "$n_pl")
c=$(summary "origin segment ($((seg_bytes/1024)) KiB)" "$o_sg")
d=$(summary "nginx  segment (static file)" "$n_sg")
python3 -c "print(f'   ratio origin/nginx: playlist {$a/$b:.2f}x, segment {$c/$d:.2f}x')"
echo "   (wrk -t1 -c64 -d8s on the same 2-core box as the server; nginx worker_processes auto, sendfile)"
