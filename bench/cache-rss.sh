#!/usr/bin/env bash
# Cache memory benchmark: resident memory of the edge and of Varnish (malloc storage) when
# each holds a full cache of the same capacity, filled with the same realistic segments
# (100 KB to 2 MB, as 2 s segments of 0.4 to 8 Mbit/s), about 2.3 times the capacity so
# both evict. Target: edge RSS <= capacity + 150 MiB. Prints both and their ratio.
# Loopback only; stops by itself (about a minute). Needs root for apt and for varnishd.
set -euo pipefail
cd "$(dirname "$0")/.."

CAP_MIB=${CAP_MIB:-512}
OBJECTS=${OBJECTS:-1200}
command -v varnishd >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq varnish >/dev/null
}
cargo build --release -q -p edge -p bench

ORIGIN=18190 EDGE=18191 VARNISH=18193
EDGE_ADMIN=18194
work=$(mktemp -d /dev/shm/cache-rss.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  varnishadm -n "$work/varnish" stop >/dev/null 2>&1 || true
  pkill -f "varnishd.*$work" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for p in $ORIGIN $EDGE $VARNISH; do
  if ss -ltn | grep -q "127.0.0.1:$p "; then echo "port $p is already in use; stop what holds it first" >&2; exit 1; fi
done
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 did not come up" >&2; return 1; }
rss_mib() { awk '/VmRSS/ {s += $2} END {print int(s / 1024)}' "$@"; }

target/release/slow-origin --listen 127.0.0.1:$ORIGIN --delay-ms 0 --fill "$OBJECTS" 2>"$work/origin.log" &
pids+=($!)
cat > "$work/edge.toml" <<TOML
listen = "127.0.0.1:$EDGE"
[admin]
listen = "127.0.0.1:$EDGE_ADMIN"   # not the default 9081: another edge may be running
[server]
max_connections_per_client = 0   # the whole load comes from 127.0.0.1
max_requests_per_client = 0
[cache]
capacity_bytes = $((CAP_MIB * 1048576))
[upstream]
urls = ["http://127.0.0.1:$ORIGIN"]
TOML
RUST_LOG=warn target/release/edge --config "$work/edge.toml" 2>"$work/edge.log" &
EDGE_PID=$!
pids+=($EDGE_PID)

cat > "$work/default.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN"; }
sub vcl_recv { unset req.http.Cookie; }
VCL
mkdir -p "$work/varnish"
varnishd -n "$work/varnish" -a 127.0.0.1:$VARNISH -f "$work/default.vcl" -s "malloc,${CAP_MIB}M" \
  -P "$work/varnish.pid" >/dev/null
wait_port $ORIGIN; wait_port $EDGE; wait_port $VARNISH

fill() {
  for _ in 1 2; do
    seq 0 $((OBJECTS - 1)) | xargs -P 8 -I{} curl -s -o /dev/null "http://127.0.0.1:$1/fill/{}.ts"
  done
}
echo "== $OBJECTS segments (100 KB-2 MB) through a ${CAP_MIB} MiB cache, twice"
fill $EDGE
fill $VARNISH
sleep 1
edge=$(rss_mib /proc/$EDGE_PID/status)
mgr=$(cat "$work/varnish.pid")
vpids=("/proc/$mgr/status")
for c in $(pgrep -P "$mgr"); do vpids+=("/proc/$c/status"); done
varnish=$(rss_mib "${vpids[@]}")
stored=$(curl -s "http://127.0.0.1:$EDGE_ADMIN/metrics" | awk '/^edge_cache_bytes / {print int($2 / 1048576)}')
echo "   edge:    RSS $edge MiB (cache holds $stored MiB; overhead $((edge - CAP_MIB)) MiB over capacity)"
echo "   varnish: RSS $varnish MiB (manager + child; overhead $((varnish - CAP_MIB)) MiB over capacity)"
echo "   edge / varnish RSS: $(awk -v a="$edge" -v b="$varnish" 'BEGIN {printf "%.2f", a / b}')"
echo "== verdict"
if [ $((edge - CAP_MIB)) -le 150 ]; then
  echo "   edge RSS <= capacity + 150 MiB: met"
else
  echo "   edge RSS <= capacity + 150 MiB: not met"
fi
