#!/usr/bin/env bash
# Builds the images (deploy/image/build.sh; kept when up to date) and runs them with podman,
# as Kubernetes would: read-only root without a tmpfs, every capability dropped, no new
# privileges, the image's own user, no registry (--pull never). In a network namespace of its
# own (so no port of this machine is taken):
#   - origin, image defaults: GET /healthz
#   - edge, image defaults (upstream http://origin:8080, `origin` given by --add-host as a
#     container runtime writes /etc/hosts): admin /healthz, /readyz (the static binary
#     resolved `origin` and its health checks pass), the master playlist, a media playlist and
#     a segment through it
#   - edge with the image's own /etc/hosts (--no-hosts) and upstream http://localhost:8080:
#     /readyz
#   - player-sim --help; the player-sim Job's arguments from deploy/kubernetes (3 players, 6 s,
#     against the edge) writing its report to a /results volume; `merge` of that report
#   - origin, shield and edge with the args, user, env and ConfigMaps of deploy/kubernetes:
#     `--check` exits 0
# Everything it starts (containers, the namespace, files) is removed on exit, failure and
# timeout (IMAGE_TEST_TIMEOUT seconds, default 1200, build included).
#
#   deploy/image/test.sh [--no-build] [--jobs N]
#
# Needs root, podman, runc, buildah, curl, iproute2, python3 with PyYAML. runc, not crun:
# crun refuses this machine's hybrid cgroup layout ("cgroups in hybrid mode not supported").
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${IMAGE_TEST_UNDER_TIMEOUT:-}" ]; then
  export IMAGE_TEST_UNDER_TIMEOUT=1
  exec timeout -k 20 "${IMAGE_TEST_TIMEOUT:-1200}" "$0" "$@"
fi

build=1
build_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --jobs) build_args+=(--jobs "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
[ "$(id -u)" = 0 ] || fail "needs root (network namespace, rootful podman)"
runtime=${PODMAN_RUNTIME:-runc}
for tool in podman "$runtime" buildah curl ip python3 timeout; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (apt-get install podman runc buildah curl iproute2)"
done
python3 -c 'import yaml' 2>/dev/null || fail "python3 has no yaml module (pip install pyyaml)"

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
uid=65532

if [ "$build" = 1 ]; then
  step "build.sh ${build_args[*]}"
  deploy/image/build.sh "${build_args[@]}"
fi
for p in origin edge player-sim; do
  podman image exists "live-stack/$p:$version" || fail "no image live-stack/$p:$version (run deploy/image/build.sh)"
done

id=live-image-$$
ns=$id
tmp=$(mktemp -d "/tmp/$id.XXXXXX")
chmod 755 "$tmp"
containers=()

# The terminal's stdout and stderr, for cleanup: a signal's trap runs inside whatever
# redirection the interrupted command had.
exec {tty_out}>&1 {tty_err}>&2
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  exec 1>&"$tty_out" 2>&"$tty_err"
  if [ "$rc" != 0 ]; then
    for c in "${containers[@]}"; do
      echo "--- logs of $c (last 40 lines)" >&2
      timeout 20 podman logs "$c" 2>&1 | tail -40 | sed 's/\x1b\[[0-9;]*m//g' >&2 || true
    done
  fi
  for c in "${containers[@]}"; do
    timeout 60 podman rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
  if [ "$rc" = 0 ]; then echo "== image test passed"; else echo "== image test FAILED (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$ns"
ip -n "$ns" link set lo up

# podman's default limits for root (nofile 1048576) are above this machine's hard limits, and
# raising a hard limit needs CAP_SYS_RESOURCE: ask for what there is (nproc: podman caps its
# own at 32768).
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
common=(--pull never --read-only --read-only-tmpfs=false --cap-drop ALL
        --security-opt no-new-privileges --ulimit "nofile=$nofile:$nofile"
        --ulimit "nproc=$nproc:$nproc" --network "ns:/run/netns/$ns")
pm() { timeout 120 podman --runtime "$runtime" "$@"; }
start() { # NAME then podman run arguments: a detached container, removed on exit
  local name=$id-$1; shift
  containers+=("$name")
  pm run -d --name "$name" "${common[@]}" "$@" >/dev/null
}
nscurl() { ip netns exec "$ns" curl -sS --max-time 5 "$@"; }
# wait_for URL BODY-PREFIX SECONDS: until URL answers 200 with a body starting so.
wait_for() {
  local url=$1 want=$2 deadline=$((SECONDS + $3)) body=""
  while [ $SECONDS -lt $deadline ]; do
    if body=$(nscurl -f "$url" 2>/dev/null) && [[ "$body" == "$want"* ]]; then
      echo "   $url: 200 $(head -1 <<<"$body" | cut -c1-40)"
      return 0
    fi
    sleep 0.3
  done
  fail "$url did not answer 200 '$want' within $3 s (last: $(nscurl -i "$url" 2>&1 | head -1))"
}
# in_image NAME PROGRAM: the container's main process is PROGRAM from the image, as 65532.
in_image() {
  local pid
  pid=$(podman inspect --format '{{.State.Pid}}' "$id-$1")
  [ "$(readlink "/proc/$pid/exe")" = "/usr/local/bin/$2" ] || fail "$1 runs $(readlink "/proc/$pid/exe")"
  grep -q "^Uid:[[:space:]]*${uid}[[:space:]]" "/proc/$pid/status" || fail "$1 does not run as uid $uid"
  grep -q '^CapEff:[[:space:]]*0*$' "/proc/$pid/status" || fail "$1 holds capabilities"
  echo "   $1: /usr/local/bin/$2 from the image, uid $uid, no capabilities"
}

step "origin (image defaults)"
start origin "live-stack/origin:$version"
wait_for http://127.0.0.1:8080/healthz ok 30
in_image origin origin

step "edge (image defaults, upstream http://origin:8080)"
start edge --add-host origin:127.0.0.1 "live-stack/edge:$version"
wait_for http://127.0.0.1:9081/healthz ok 30
wait_for http://127.0.0.1:9081/readyz ready 30
in_image edge edge
master=$(nscurl -f http://127.0.0.1:8081/live/demo/master.m3u8) || fail "master playlist through the edge"
[[ "$master" == "#EXTM3U"* ]] || fail "master playlist: $master"
media=$(grep -m1 -v '^#' <<<"$master")
echo "   /live/demo/master.m3u8: $(grep -c '^#EXT-X-STREAM-INF' <<<"$master") renditions"
wait_for "http://127.0.0.1:8081/live/demo/$media" "#EXTM3U" 30
seg=$(nscurl -f "http://127.0.0.1:8081/live/demo/$media" | grep -m1 -v '^#')
nscurl -f -o "$tmp/seg.ts" "http://127.0.0.1:8081/live/demo/${media%/*}/$seg" || fail "segment $seg"
[ "$(head -c1 "$tmp/seg.ts" | od -An -tx1 | tr -d ' ')" = 47 ] || fail "segment $seg is not MPEG-TS"
echo "   /live/demo/${media%/*}/$seg: $(stat -c %s "$tmp/seg.ts") bytes of MPEG-TS"

step "edge with the image's /etc/hosts (--no-hosts), upstream http://localhost:8080"
start edge-localhost --no-hosts "live-stack/edge:$version" --config /etc/edge/edge.toml \
  --upstream http://localhost:8080 --listen 127.0.0.1:18081 --admin-listen 127.0.0.1:19081
wait_for http://127.0.0.1:19081/readyz ready 30

step "player-sim"
help=$(pm run --rm "${common[@]}" "live-stack/player-sim:$version" --help) || fail "player-sim --help"
grep -q '^Usage: player-sim' <<<"$help" || fail "player-sim --help: $help"
echo "   --help: $(head -1 <<<"$help" | cut -c1-70)"

# The Kubernetes workloads: image, args ($(VAR) expanded), user, env (Secrets as in
# secret.yaml; the Job's completion index 0) and ConfigMap volumes, from deploy/kubernetes, as
# bash arrays k8s_NAME.
python3 - "$tmp/k8s" >"$tmp/k8s.sh" <<'EOF'
import base64, glob, os, re, shlex, sys, yaml
out = sys.argv[1]
docs = [d for f in sorted(glob.glob("deploy/kubernetes/*.yaml")) for d in yaml.safe_load_all(open(f)) if d]
cms = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
secrets = {d["metadata"]["name"]: {**{k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()},
                                   **d.get("stringData", {})} for d in docs if d["kind"] == "Secret"}
names = []
for d in docs:
    if d["kind"] not in ("Deployment", "StatefulSet", "Job"):
        continue
    pod = d["spec"]["template"]["spec"]
    sc = pod.get("securityContext", {})
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        name = re.sub(r"[^A-Za-z0-9]", "_", d["metadata"]["name"])
        env = {"JOB_COMPLETION_INDEX": "0"}
        opts = ["--user", f'{sc["runAsUser"]}:{sc["runAsGroup"]}']
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            val = secrets[ref["name"]][ref["key"]] if ref else e.get("value", env.get(e["name"]))
            assert val is not None, f'{d["metadata"]["name"]}: no value for {e["name"]}'
            env[e["name"]] = val
            opts += ["-e", f'{e["name"]}={val}']
        for m in c.get("volumeMounts", []):
            v = vols[m["name"]]
            if "configMap" in v:
                src = os.path.join(out, name, m["name"])
                os.makedirs(src, exist_ok=True)
                for k, text in cms[v["configMap"]["name"]].items():
                    with open(os.path.join(src, k), "w") as fh:
                        fh.write(text)
                    os.chmod(os.path.join(src, k), 0o644)
                opts += ["-v", f'{src}:{m["mountPath"]}:ro']
        args = [re.sub(r"\$\((\w+)\)", lambda g: env.get(g.group(1), g.group(0)), a) for a in c.get("args", [])]
        print(f"k8s_{name}=({' '.join(map(shlex.quote, opts + [c['image']] + args))})")
        names.append(name)
print(f"k8s_names=({' '.join(names)})")
EOF
k8s_names=()
k8s_player_sim=()
# shellcheck disable=SC1091
source "$tmp/k8s.sh"
[ ${#k8s_names[@]} -ge 5 ] || fail "found only ${k8s_names[*]} in deploy/kubernetes"

# The player-sim Job's own arguments, pointed at this edge, shorter and smaller.
mkdir -p "$tmp/results"
chown "$uid:$uid" "$tmp/results"
job=()
prev=""
for a in "${k8s_player_sim[@]}"; do
  case "$prev" in
    --url) a=http://127.0.0.1:8081/live/demo/master.m3u8 ;;
    --players) a=3 ;;
    --duration) a=6s ;;
    --metrics-listen) a=127.0.0.1:9102 ;;
  esac
  job+=("$a")
  prev=$a
done
job+=(--join all)  # the default ramp is longer than this run
echo "   podman run ... ${job[*]}"
pm run --rm "${common[@]}" -v "$tmp/results:/results" "${job[@]}" >"$tmp/player-sim.log" 2>&1 ||
  { cat "$tmp/player-sim.log" >&2; fail "the player-sim Job's run"; }
python3 - "$tmp/results/report-0.json" <<'EOF' || fail "player-sim report"
import json, sys
r = json.load(open(sys.argv[1]))
players, failed, startup = r["players"], r["failed"], r["aggregate"]["startup_s"]["mean"]
assert r["mode"] == "live" and players == 3 and failed == 0, f"players {players}, failed {failed}"
assert startup > 0, f"startup {startup}"
print(f"   report-0.json: {players} players, none failed, startup {startup:.2f} s mean")
EOF
pm run --rm "${common[@]}" -v "$tmp/results:/results" "live-stack/player-sim:$version" \
  merge --out /results/merged.json /results/report-0.json >"$tmp/merge.log" 2>&1 ||
  { cat "$tmp/merge.log" >&2; fail "player-sim merge"; }
[ -s "$tmp/results/merged.json" ] || fail "merge wrote no merged.json"
echo "   merge: merged.json"

step "deploy/kubernetes workloads: their args, user, env and ConfigMaps, --check"
for n in "${k8s_names[@]}"; do
  declare -n w="k8s_$n"
  img=""
  for a in "${w[@]}"; do [[ "$a" == live-stack/* ]] && img=$a && break; done
  [ -n "$img" ] || fail "$n: no live-stack/ image"
  [[ "$img" == *":$version" ]] || fail "$n: image $img, built $version"
  user=$(podman image inspect --format '{{.Config.User}}' "$img")
  [ "$user" = "${w[1]}" ] || fail "$n runs as ${w[1]} (runAsUser:runAsGroup), the image's USER is $user"
  case "$img" in
    live-stack/player-sim:*) echo "   $n: $img as ${w[1]}"; continue ;;
  esac
  out=$(pm run --rm "${common[@]}" "${w[@]}" --check 2>&1) || { echo "$out" >&2; fail "$n: --check with its manifest's config"; }
  echo "   $n: $img ${w[*]: -2} --check: ok"
done
