#!/usr/bin/env bash
# TLS termination benchmark: the edge (rustls, ring) side by side with nginx 1.22 (OpenSSL 3.0)
# on the same certificate (a throwaway ECDSA P-256 chain: root, intermediate, leaf for
# localhost/127.0.0.1), in front of the same origin. Prints, in one run:
#   1. TLS handshakes/s: TLS 1.3 full, TLS 1.3 resumed (ticket), TLS 1.2 full
#   2. cache-hit req/s and MiB/s over TLS on a 1 KB and a 1 MiB object, HTTP/1.1 (wrk -t2
#      -c64) and HTTP/2 (h2load -c64, 10 streams per connection for 1 KB, 1 for 1 MiB),
#      caches warmed first, best of 3 short runs
#   3. memory (PSS) of the proxy holding 10,000 idle TLS keep-alive connections, with a fresh
#      edge holding them over plain HTTP as a reference
# with the edge/nginx ratio and a verdict per figure (goal: edge >= nginx; memory: edge <= nginx).
#
# Handshakes come from bench/src/bin/tls-handshakes (rustls client), not `openssl s_time`:
# s_time makes one connection at a time, so it measures the round trip rather than the
# server (it kept either proxy at 20-30 % of its core here), and its -reuse never resumes a
# TLS 1.3 session (it does not read the tickets). tls-handshakes keeps 32 handshakes in
# flight, skips certificate checks, and reads every connection to its close (which collects
# the tickets and makes the server finish each handshake it counts).
#
# Equal CPU budget: each proxy is pinned to core 0 (edge `worker_threads = 1`, nginx
# `worker_processes 1`), load generators and origin to core 1. On loopback one client core
# barely keeps up with one proxy core for handshakes and 1 KB hits, and not at all for 1 MiB
# hits, so every figure is measured a second time with each proxy also capped at QUOTA % of
# one core (cgroup cpu controller, as bench/edge.sh does), where the proxy is the bottleneck.
# Every row shows both processes' CPU; the verdict reads the capped ratio unless nginx's
# client was saturated there (then the pinned one; a client-bound edge only understates the
# edge). Runs alternate edge and nginx, so other work on the box hits both alike. Neither
# side uses kTLS (nginx's sendfile over TLS is not configured, and this kernel has no tls
# module): both encrypt in user space.
#
# DURATION=N shortens or lengthens every measurement (seconds, default 3). Loopback only;
# stops by itself (about 5 minutes). Needs root for apt and for the cgroup cap.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # 10,000 idle connections on each side

D=${DURATION:-3}
QUOTA=40
IDLE=10000
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p edge -p bench

ORIGIN=18290 EDGE_PLAIN=18291 EDGE=18292 NGINX=18293 EDGE_REF=18294
EDGE_ADMIN=18295 EDGE_REF_ADMIN=18296
declare -A PORT=([edge]=$EDGE [nginx]=$NGINX)
if [ "$(nproc)" -ge 2 ]; then PROXY="taskset -c 0"; LOAD="taskset -c 1"; else PROXY=""; LOAD=""; fi
work=$(mktemp -d /dev/shm/tls-bench.XXXXXX)
chmod 755 "$work"
pids=()
CG_PREFIX=tlsbench
. bench/cgroup.sh
cleanup() {
  cg_cleanup
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for p in $ORIGIN $EDGE_PLAIN $EDGE $NGINX $EDGE_REF $EDGE_ADMIN $EDGE_REF_ADMIN; do
  if ss -ltn | grep -q "127.0.0.1:$p "; then echo "port $p is already in use; stop what holds it first" >&2; exit 1; fi
done
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null --cacert "$work/tls/ca.pem" "$1" && return 0; sleep 0.1; done; echo "$1 did not come up" >&2; return 1; }

# One certificate for both: root CA -> intermediate -> leaf (ECDSA P-256, SHA-256), the
# servers send leaf + intermediate as a public deployment does.
mkdir "$work/tls"
(
  cd "$work/tls"
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  key ca.key; key int.key; key server.key
  openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=tls bench root" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" -out ca.pem
  openssl req -new -key int.key -subj "/CN=tls bench intermediate" -out int.csr
  printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n' > int.ext
  openssl x509 -req -in int.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 -sha256 -extfile int.ext -out int.pem 2>/dev/null
  openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl x509 -req -in server.csr -CA int.pem -CAkey int.key -set_serial 3 -days 2 -sha256 -extfile server.ext -out leaf.pem 2>/dev/null
  cat leaf.pem int.pem > chain.pem
  openssl verify -CAfile ca.pem -untrusted int.pem leaf.pem >/dev/null
)
CERT=$work/tls/chain.pem KEY=$work/tls/server.key

$LOAD target/release/slow-origin --listen 127.0.0.1:$ORIGIN --delay-ms 0 2>"$work/origin.log" &
pids+=($!)

cat > "$work/edge.toml" <<TOML
listen = "127.0.0.1:$EDGE_PLAIN"
listeners = [{ addr = "127.0.0.1:$EDGE", tls = true }]
[admin]
listen = "127.0.0.1:$EDGE_ADMIN"   # not the default 9081: another edge may be running
[tls]
certificates = [{ cert = "$CERT", key = "$KEY", names = ["localhost"] }]
[server]
max_connections = 20000
worker_threads = 1
max_connections_per_client = 0   # the whole load comes from 127.0.0.1
max_requests_per_client = 0
[upstream]
urls = ["http://127.0.0.1:$ORIGIN"]
TOML
RUST_LOG=warn $PROXY target/release/edge --config "$work/edge.toml" 2>"$work/edge.log" &
EDGE_PID=$!
pids+=($EDGE_PID)

mkdir -p "$work/nginx/cache" "$work/nginx/tmp"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx/tmp; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  proxy_cache_path $work/nginx/cache levels=1:2 keys_zone=hls:64m max_size=1g inactive=60m use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX ssl http2 backlog=4096;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache hls;
      proxy_cache_valid 200 10m;
    }
  }
}
CONF
$PROXY nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
NGINX_PID=$!
pids+=($NGINX_PID)
wait_port "http://127.0.0.1:$ORIGIN/"; wait_port "https://127.0.0.1:$EDGE/"; wait_port "https://127.0.0.1:$NGINX/"
NGINX_WORKER=$(pgrep -P "$NGINX_PID" -f "worker process" | tr '\n' ' ')
declare -A PIDS=([edge]=$EDGE_PID [nginx]="$NGINX_PID $NGINX_WORKER")

# Warm both caches: the same objects, fetched through each proxy (twice: a hit the second time).
for proxy in edge nginx; do for obj in hit.m3u8 hit.ts; do for _ in 1 2; do
  curl -s -o /dev/null --cacert "$work/tls/ca.pem" "https://localhost:${PORT[$proxy]}/$obj"
done; done; done

echo "   box load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores; the proxies use one, the load tools the other)"
declare -A RES
CLK=$(getconf CLK_TCK)
TIMEFORMAT=%P
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
# load PROXY CMD...: runs CMD on the load core; OUT gets its output, CCPU its CPU and PCPU the
# proxy's over the run (% of one core).
load() {
  local proxy=$1 c0 c1 t0 t1; shift
  # shellcheck disable=SC2086
  c0=$(ticks ${PIDS[$proxy]}); t0=$(date +%s%N)
  # A hung client (h2load once did not stop after -D here) costs one figure, not the run.
  OUT=$( { time $LOAD timeout -k 5 $((D + 30)) "$@" 2>&1; } 2>"$work/time" ) || OUT="$OUT (exit $?: timed out or failed)"
  # shellcheck disable=SC2086
  t1=$(date +%s%N); c1=$(ticks ${PIDS[$proxy]})
  CCPU=$(awk '{printf "%.0f", $1}' "$work/time")
  PCPU=$(awk -v c="$((c1 - c0))" -v t="$((t1 - t0))" -v k="$CLK" 'BEGIN {printf "%.0f", c * 100 / k / (t / 1e9)}')
}
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }
# awk: wrk's and h2load's byte units (both binary) in MiB.
MIB='function mib(v) { u = v; sub(/[0-9.]+/, "", u); v += 0
  return u ~ /^G/ ? v * 1024 : u ~ /^M/ ? v : u ~ /^K/ ? v / 1024 : v / 1048576 }'

gt() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a > b)}'; }

# One measurement of FIGURE against PROXY: sets VAL (the figure) and BAD (what went wrong).
measure() {
  local fig=$1 proxy=$2 port=${PORT[$2]} o
  BAD=""
  case $fig in
    hs13|hs13r|hs12)
      local flags=""
      case $fig in hs13r) flags="--resume";; hs12) flags="--tls12";; esac
      # shellcheck disable=SC2086
      load "$proxy" target/release/tls-handshakes "127.0.0.1:$port" --secs "$D" $flags
      RPS=$(field "$OUT" per_sec) MBS=""
      [ "$(field "$OUT" failed)" = 0 ] || BAD="failed=$(field "$OUT" failed)"
      [ $fig != hs13r ] || [ "$(field "$OUT" resumed)" = "$(field "$OUT" handshakes)" ] \
        || BAD="$BAD resumed only $(field "$OUT" resumed) of $(field "$OUT" handshakes)"
      ;;
    h1-*)
      load "$proxy" wrk -t2 -c64 -d"${D}s" "https://localhost:$port/${fig#h1-}"
      RPS=$(awk '/^Requests\/sec/ {print $2}' <<<"$OUT")
      MBS=$(awk "$MIB"' /^Transfer\/sec/ {print mib($2)}' <<<"$OUT")
      BAD=$(grep -E 'Non-2xx|Socket errors' <<<"$OUT" | tr '\n' ' ' || true)
      ;;
    h2-*)
      # 10 streams per connection for the 1 KB object, one (a player's segment fetch) for 1 MiB.
      local streams=10
      if [ "${fig#h2-}" = hit.ts ]; then streams=1; fi
      load "$proxy" h2load -t1 -c64 -m$streams -D "$D" "https://localhost:$port/${fig#h2-}"
      RPS=$(awk '/^finished in/ {print $4}' <<<"$OUT")
      MBS=$(awk "$MIB"' /^finished in/ {print mib($6)}' <<<"$OUT")
      o=$(awk '/^status codes:/ {print $5 + $7 + $9 " non-2xx"} /^requests:/ {print $10 + $12 " failed/errored"}' <<<"$OUT" | grep -v '^0 ' || true)
      BAD=$(tr '\n' ' ' <<<"$o")
      grep -q '^h2$\|Application protocol: h2' <<<"$OUT" || BAD="$BAD not h2"
      ;;
  esac
  RPS=${RPS:-0}
  # The figure: req/s, but MiB/s for the 1 MiB object (bytes received during the run, which
  # counts responses still in flight at the end: 64 responses sharing the proxy finish at
  # nearly the same moment, so completed requests move in steps of 64).
  if [[ $fig == *hit.ts ]]; then VAL=${MBS:-0}; else VAL=$RPS; fi
  if grep -q 'timed out or failed' <<<"$OUT"; then BAD="$BAD $(grep -o 'exit [0-9]*: timed out or failed' <<<"$OUT")"; fi
}

HS_FIGS=(hs13 hs13r hs12)
HIT_FIGS=(h1-hit.m3u8 h1-hit.ts h2-hit.m3u8 h2-hit.ts)
declare -A NAME=([hs13]="TLS 1.3 full" [hs13r]="TLS 1.3 resumed" [hs12]="TLS 1.2 full"
  [h1-hit.m3u8]="HTTP/1.1 1 KB" [h1-hit.ts]="HTTP/1.1 1 MiB" [h2-hit.m3u8]="HTTP/2 1 KB" [h2-hit.ts]="HTTP/2 1 MiB")
# run_figs TAG REPS FIG...: the best of REPS runs of each figure for each proxy, alternating
# edge and nginx; prints a row per figure.
run_figs() {
  local tag=$1 reps=$2 fig proxy rep; shift 2
  for fig in "$@"; do
    for proxy in edge nginx; do RES[$fig-$proxy-$tag]=0; RES[$fig-$proxy-$tag-bad]=""; done
    for rep in $(seq "$reps"); do for proxy in edge nginx; do
      measure "$fig" "$proxy"
      if gt "$VAL" "${RES[$fig-$proxy-$tag]}"; then
        RES[$fig-$proxy-$tag]=$VAL; RES[$fig-$proxy-$tag-cpu]=$PCPU; RES[$fig-$proxy-$tag-client]=$CCPU
        RES[$fig-$proxy-$tag-rps]=$RPS; RES[$fig-$proxy-$tag-mbs]=$MBS
      fi
      [ -z "${BAD// /}" ] || RES[$fig-$proxy-$tag-bad]="${RES[$fig-$proxy-$tag-bad]} $proxy: $BAD;"
    done; done
    local e=${RES[$fig-edge-$tag]} n=${RES[$fig-nginx-$tag]} mb="" bad="${RES[$fig-edge-$tag-bad]}${RES[$fig-nginx-$tag-bad]}"
    if [[ $fig == h* ]] && [[ $fig != hs* ]]; then
      mb=$(printf ' %9.1f %9.1f' "${RES[$fig-edge-$tag-mbs]:-0}" "${RES[$fig-nginx-$tag-mbs]:-0}")
    fi
    printf '   %-16s %10.0f %9.0f%s   %-9s %-9s %8.2fx%s\n' "${NAME[$fig]}" "${RES[$fig-edge-$tag-rps]:-0}" "${RES[$fig-nginx-$tag-rps]:-0}" \
      "$mb" "$(cpus edge)" "$(cpus nginx)" "$(awk -v e="$e" -v n="$n" 'BEGIN {print (n > 0 ? e / n : 0)}')" "${bad:+  FAILED:$bad}"
  done
}
# "proxy%/client%" of the best run, with * when the client's core was saturated (>= 95 %).
cpus() {
  local c=${RES[$fig-$1-$tag-client]:-0}
  printf '%s%%/%s%%%s' "${RES[$fig-$1-$tag-cpu]:-0}" "$c" "$([ "$c" -ge 95 ] && echo '*')"
}
hs_head() { printf '   %-16s %10s %9s   %-9s %-9s %9s\n' figure edge nginx "edge CPU" "nginx CPU" "edge/nginx"; }
hit_head() { printf '   %-16s %10s %9s %9s %9s   %-9s %-9s %9s\n' figure "edge req/s" nginx "edge MiB/s" nginx "edge CPU" "nginx CPU" "edge/nginx"; }

# Memory first, on processes that have only served the warm-up: what 10,000 idle TLS
# connections cost, not what earlier load left in the allocator. PSS (RSS with shared pages
# split between their users), so nginx's master and worker are summed without counting the
# binary and libraries twice. The last row is a reference, not a figure: a fresh edge of the
# same config holding the same connections over plain HTTP, which splits the edge's cost per
# connection into HTTP and TLS.
pss_kib() { local s=0 p; for p in "$@"; do s=$((s + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); done; echo $s; }
cat > "$work/edge-plain.toml" <<TOML
listen = "127.0.0.1:$EDGE_REF"
[admin]
listen = "127.0.0.1:$EDGE_REF_ADMIN"
[server]
max_connections = 20000
worker_threads = 1
max_connections_per_client = 0
max_requests_per_client = 0
[upstream]
urls = ["http://127.0.0.1:$ORIGIN"]
TOML
echo "== memory holding $IDLE idle keep-alive connections (idle-conns --tls: TLS 1.3 handshake, one 1 KB GET, then idle)"
printf '   %-22s %12s %12s %14s %8s\n' proxy "PSS before" "PSS holding" "per connection" failed
for proxy in edge nginx edge-plain; do
  if [ $proxy = edge-plain ]; then
    RUST_LOG=warn $PROXY target/release/edge --config "$work/edge-plain.toml" 2>>"$work/edge.log" &
    PIDS[$proxy]=$!; pids+=($!)
    wait_port "http://127.0.0.1:$EDGE_REF/"; curl -s -o /dev/null "http://127.0.0.1:$EDGE_REF/hit.m3u8"
    url="http://127.0.0.1:$EDGE_REF/hit.m3u8" label="edge, plain HTTP (ref.)" tls=""
  else
    url="https://localhost:${PORT[$proxy]}/hit.m3u8" label=$proxy tls=--tls
  fi
  # shellcheck disable=SC2086
  before=$(pss_kib ${PIDS[$proxy]})
  $LOAD target/release/idle-conns $tls --connections $IDLE --hold-secs 4 "$url" > "$work/idle.out" &
  idle=$!
  for _ in $(seq 240); do grep -q established "$work/idle.out" 2>/dev/null && break; sleep 0.25; done
  sleep 1
  # shellcheck disable=SC2086
  holding=$(pss_kib ${PIDS[$proxy]})
  wait $idle || true
  failed=$(field "$(cat "$work/idle.out")" failed)
  RES[rss-$proxy]=$holding; RES[rss-$proxy-bad]=$([ "${failed:-x}" = 0 ] || echo "failed=${failed:-?}")
  printf '   %-22s %8d MiB %8d MiB %11.1f KiB %8s\n' "$label" $((before / 1024)) $((holding / 1024)) \
    "$(awk -v a="$before" -v b="$holding" -v n="$IDLE" 'BEGIN {print (b - a) / n}')" "${failed:-?}"
  if [ $proxy = edge-plain ]; then kill "${PIDS[$proxy]}"; wait "${PIDS[$proxy]}" 2>/dev/null || true; continue; fi
  # Let the proxy close them before the next one starts.
  # shellcheck disable=SC2086
  for _ in $(seq 40); do [ "$(for p in ${PIDS[$proxy]}; do ls "/proc/$p/fd"; done | wc -l)" -lt 1000 ] && break; sleep 0.25; done
done

echo "   CPU columns: proxy/client in % of one core during the best run; * = the client's core was saturated, so"
echo "   that number is the client's limit. edge/nginx compares handshakes/s, req/s, and MiB/s for the 1 MiB object."
echo "== TLS handshakes/s (tls-handshakes: 32 in flight, ${D} s after 0.5 s warm-up, best of 2; pinned to core 0)"
hs_head; run_figs pinned 2 "${HS_FIGS[@]}"
echo "== cache-hit throughput over TLS (wrk -t2 -c64 / h2load -c64 -m10 (1 KB), -m1 (1 MiB); ${D} s, best of 3; pinned)"
hit_head; run_figs pinned 3 "${HIT_FIGS[@]}"

CAPPED=0
if cg_probe=$(cg_make probe) && [ -n "$cg_probe" ]; then
  cg_leave "$cg_probe"
  CAPPED=1
  # shellcheck disable=SC2086
  { d=$(cg_make edge); cg_join "$d" ${PIDS[edge]}; d=$(cg_make nginx); cg_join "$d" ${PIDS[nginx]}; }
  echo "== the same with each proxy capped at $QUOTA % of one core (cgroup cpu; the proxy is the bottleneck)"
  hs_head; run_figs capped 2 "${HS_FIGS[@]}"
  hit_head; run_figs capped 3 "${HIT_FIGS[@]}"
  cg_cleanup
else
  echo "== (no writable cgroup cpu controller here: capped runs skipped; the verdict reads the pinned runs)"
fi
grep -E '\[(alert|emerg|crit)\]' "$work/nginx/error.log" | grep -v setrlimit | sed 's/^/   nginx: /' | head -5 || true
grep -E 'ERROR|panic' "$work/edge.log" | sed 's/^/   edge: /' | head -5 || true

echo "== verdict (goal: edge >= nginx on every figure; memory: lower is better)"
python3 - <<PY
r = {$(for k in "${!RES[@]}"; do printf '"%s": "%s", ' "$k" "${RES[$k]}"; done)}
names = {$(for k in "${!NAME[@]}"; do printf '"%s": "%s", ' "$k" "${NAME[$k]}"; done)}
f = lambda k: float(r.get(k) or 0)
# A ratio >= 1 settles "edge >= nginx" when nginx's run was not client-bound (its client's
# core below 95 %): a client-bound edge only understates the edge. A ratio < 1 settles the
# opposite when the edge's run was not client-bound. Capped runs are read first.
for fig, unit in [("hs13", "handshakes/s"), ("hs13r", "handshakes/s"), ("hs12", "handshakes/s"),
                  ("h1-hit.m3u8", "req/s"), ("h1-hit.ts", "MiB/s"), ("h2-hit.m3u8", "req/s"), ("h2-hit.ts", "MiB/s")]:
    tags = ["capped", "pinned"] if $CAPPED else ["pinned"]
    ratios, verdict = [], None
    for tag in tags:
        e, n = f(f"{fig}-edge-{tag}"), f(f"{fig}-nginx-{tag}")
        x = e / n if n else 0.0
        ratios.append(f"{x:.2f}x {tag}")
        if r.get(f"{fig}-edge-{tag}-bad", "").strip() or r.get(f"{fig}-nginx-{tag}-bad", "").strip():
            verdict = verdict or f"NOT met (the {tag} runs had errors, see above)"
        elif x >= 1 and f(f"{fig}-nginx-{tag}-client") < 95:
            verdict = verdict or f"met (read from the {tag} runs)"
        elif x < 1 and f(f"{fig}-edge-{tag}-client") < 95:
            verdict = verdict or f"NOT met (read from the {tag} runs)"
    verdict = verdict or "inconclusive (the client was the bottleneck in every run)"
    print(f"   {names[fig] + ' ' + unit:<30} edge/nginx {', '.join(ratios)} -> {verdict}")
e, n = f("rss-edge") / 1024, f("rss-nginx") / 1024
bad = r.get("rss-edge-bad", "") or r.get("rss-nginx-bad", "")
print(f"   {'memory, $IDLE idle TLS conns':<30} edge {e:.0f} MiB, nginx {n:.0f} MiB, edge/nginx {e / n:.2f}x -> "
      + ("NOT met (connections failed, see above)" if bad else ("met" if e <= n else "NOT met")))
PY
