#!/usr/bin/env bash
# Builds one OCI image per program (origin, edge, player-sim): a static release binary in an
# image FROM scratch, put together with buildah from files of this repository and of Debian
# packages installed on this machine (no registry is pulled from).
#
#   deploy/image/build.sh [--jobs N] [--no-cargo] [--oci-archive DIR] [--docker-archive DIR]
#
# Images (containers-storage, as buildah/podman see them; `localhost/` is buildah's prefix for
# names without a registry): live-stack/origin:VERSION, live-stack/edge:VERSION,
# live-stack/player-sim:VERSION, VERSION being the workspace's version (Cargo.toml).
#
# Each image holds:
#   /usr/local/bin/PROGRAM          the entrypoint (static, glibc; debug info stripped)
#   /etc/PROGRAM/PROGRAM.toml       origin and edge: the default config (config/*.toml with
#                                   every listener on 0.0.0.0; the edge's upstream is
#                                   http://origin:8080); CMD is `--config` that file, the path
#                                   the Kubernetes ConfigMaps are mounted at
#   /etc/ssl/certs/ca-certificates.crt   Mozilla's roots from Debian's ca-certificates package
#                                   (not this machine's bundle, which may hold local CAs)
#   /etc/passwd, /etc/group         root and nonroot (65532:65532, the manifests' runAsUser)
#   /etc/nsswitch.conf, /etc/hosts  `hosts: files dns` (static glibc resolves files and dns
#                                   without any libnss_*.so) and localhost
#   /tmp                            1777, the working directory
# and runs as 65532:65532.
#
# --jobs N               cargo -j N (default: cargo's)
# --no-cargo             use the binaries already in target/image (skip cargo build)
# --oci-archive DIR      also write DIR/PROGRAM.tar (oci-archive, named docker.io/live-stack/PROGRAM:VERSION)
# --docker-archive DIR   also write DIR/PROGRAM.docker.tar (docker-archive, tagged
#                        docker.io/live-stack/PROGRAM:VERSION as a kubelet resolves the manifests'
#                        `live-stack/PROGRAM:VERSION`; for `kind load image-archive`,
#                        `ctr -n k8s.io images import`, `docker load`)
#
# An image whose inputs (binary, files, image config) have not changed is kept as it is
# (label live-stack.inputs). Needs: cargo, buildah, binutils (strip, readelf), file,
# ca-certificates, openssl.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

jobs=()
cargo=1
oci_dir=""
docker_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs=(-j "$2"); shift 2 ;;
    --jobs=*) jobs=(-j "${1#--jobs=}"); shift ;;
    --no-cargo) cargo=0; shift ;;
    --oci-archive) oci_dir=$2; shift 2 ;;
    --docker-archive) docker_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "build.sh: $*" >&2; exit 1; }
for tool in cargo buildah strip readelf file openssl sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (apt-get install buildah binutils file openssl)"
done

target=x86_64-unknown-linux-gnu
target_dir=${IMAGE_TARGET_DIR:-$root/target/image}
bin_dir=$target_dir/$target/release
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml [workspace.package]"
programs=(origin edge player-sim)
uid=65532
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi

# 1. Static binaries. --target keeps crt-static off build scripts and proc macros; a target
# dir of its own keeps target/ (the tests' builds) as it is.
# Run from a test (tests/tests/image.rs under cargo or nextest), the environment carries the
# calling crate's CARGO_PKG_*, CARGO_MANIFEST_DIR, LD_LIBRARY_PATH, NEXTEST_*, ...; a build
# script watching one of them (ring's does) would rebuild half the tree whenever the caller
# changes. cargo gets the environment a shell has.
if [ "$cargo" = 1 ]; then
  echo "== cargo build (static, release) into $target_dir"
  scrub=()
  for k in $(compgen -e); do
    case "$k" in
      CARGO_PKG_*|CARGO_MANIFEST_*|CARGO_CRATE_NAME|CARGO_BIN_*|CARGO_PRIMARY_PACKAGE|\
      CARGO_TARGET_TMPDIR|NEXTEST*|RUST_RECURSION_COUNT|LD_LIBRARY_PATH|OUT_DIR) scrub+=(-u "$k") ;;
    esac
  done
  env "${scrub[@]}" RUSTFLAGS="-C target-feature=+crt-static" cargo build --release "${jobs[@]}" \
    --target "$target" --target-dir "$target_dir" -p origin -p edge -p player-sim
fi
for p in "${programs[@]}"; do
  b=$bin_dir/$p
  [ -x "$b" ] || die "$b is missing (run without --no-cargo)"
  # Static: no program interpreter (ld.so) and no needed shared libraries.
  if readelf -lW "$b" | grep -q 'Requesting program interpreter' || readelf -dW "$b" | grep -q '(NEEDED)'; then
    readelf -dW "$b" | grep NEEDED >&2 || true
    die "$b is not statically linked"
  fi
  echo "$p: $(file -b "$b" | sed 's/, BuildID\[[^]]*\]=[0-9a-f]*//'); ldd: $(ldd "$b" 2>&1 | tr -d '\t' | head -1)"
done

# 2. Files from Debian packages. ca-certificates: the Mozilla roots as the package ships them
# (/usr/share/ca-certificates/mozilla), checked against the package's md5sums, concatenated
# as update-ca-certificates does, without /usr/local/share/ca-certificates.
dpkg-query -W -f='${Status}' ca-certificates 2>/dev/null | grep -q 'install ok installed' ||
  die "Debian's ca-certificates package is not installed (apt-get install ca-certificates)"
if dpkg --verify ca-certificates 2>/dev/null | grep -q ' /usr/share/ca-certificates/mozilla/'; then
  die "files of the ca-certificates package were changed (dpkg --verify ca-certificates)"
fi
ca_version=$(dpkg-query -W -f='${Version}' ca-certificates)
mapfile -t ca_files < <(dpkg -L ca-certificates | grep '^/usr/share/ca-certificates/mozilla/.*\.crt$' | LC_ALL=C sort)
[ ${#ca_files[@]} -gt 50 ] || die "ca-certificates lists only ${#ca_files[@]} Mozilla roots"

# The root filesystems are staged in a folder of this run's own, removed on exit, with the
# working container of an image being built.
mkdir -p "$target_dir"
work=$(mktemp -d "$target_dir/rootfs.XXXXXX")
container=""
cleanup() {
  [ -z "$container" ] || buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The default configs: config/*.toml with the listeners on 0.0.0.0 and, for the edge, the
# upstream by name. Each replacement must hit exactly one line, so a changed config file
# fails here instead of giving an image that listens on loopback.
edit() { # FILE OUT then pairs of sed-regex, replacement
  local file=$1 out=$2; shift 2
  {
    echo "# The image's default config: $file with every listener on 0.0.0.0 (deploy/image/build.sh)."
    echo "# Kubernetes mounts its ConfigMap over this directory."
    cat "$file"
  } >"$out"
  while [ $# -gt 0 ]; do
    [ "$(grep -c -- "$1" "$out")" = 1 ] || die "$file: expected exactly one line matching '$1'"
    sed -i "s|$1|$2|" "$out"
    shift 2
  done
}

stage() { # PROGRAM: the root filesystem in $work/PROGRAM
  local p=$1 r=$work/$1
  mkdir -p "$r/usr/local/bin" "$r/etc/ssl/certs" "$r/tmp" "$r/usr/share/doc/ca-certificates"
  chmod 1777 "$r/tmp"
  # Debug info stripped (the release profile keeps line tables); symbols stay for backtraces.
  strip --strip-debug -o "$r/usr/local/bin/$p" "$bin_dir/$p"
  chmod 0755 "$r/usr/local/bin/$p"
  cat "${ca_files[@]}" >"$r/etc/ssl/certs/ca-certificates.crt"
  cp /usr/share/doc/ca-certificates/copyright "$r/usr/share/doc/ca-certificates/copyright"
  cat >"$r/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:$uid:$uid:nonroot:/tmp:/sbin/nologin
EOF
  cat >"$r/etc/group" <<EOF
root:x:0:
nonroot:x:$uid:
EOF
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$r/etc/nsswitch.conf"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
  case "$p" in
    origin)
      mkdir -p "$r/etc/origin"
      edit config/origin.toml "$r/etc/origin/origin.toml" \
        '^listen = "127.0.0.1:8080"' 'listen = "0.0.0.0:8080"'
      ;;
    edge)
      mkdir -p "$r/etc/edge"
      edit config/edge.toml "$r/etc/edge/edge.toml" \
        '^listen = "127.0.0.1:8081"' 'listen = "0.0.0.0:8081"' \
        '^listen = "127.0.0.1:9081"' 'listen = "0.0.0.0:9081"' \
        '^urls = \["http://127.0.0.1:8080"\]' 'urls = ["http://origin:8080"]'
      ;;
  esac
  find "$r" -exec touch -h -d @0 {} +
}

labels() { # PROGRAM DESCRIPTION
  printf "%s\n" --label "org.opencontainers.image.title=$1"
  printf "%s\n" --label "org.opencontainers.image.description=$2"
  printf "%s\n" --label "org.opencontainers.image.version=$version"
  printf "%s\n" --label "org.opencontainers.image.revision=$revision"
  printf "%s\n" --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf "%s\n" --label "org.opencontainers.image.licenses=Apache-2.0"
  printf "%s\n" --label "org.opencontainers.image.vendor=live-stack"
  printf "%s\n" --label "live-stack.ca-certificates=$ca_version"
}

# 3. Images.
for p in "${programs[@]}"; do
  stage "$p"
  r=$work/$p
  # The CA bundle must parse as PEM and hold every root.
  n=$(openssl crl2pkcs7 -nocrl -certfile "$r/etc/ssl/certs/ca-certificates.crt" | openssl pkcs7 -print_certs -noout | grep -c '^subject=')
  [ "$n" = ${#ca_files[@]} ] || die "$p: the CA bundle holds $n certificates, expected ${#ca_files[@]}"
  # The program's own check of its default config, inside the staged tree's paths.
  case "$p" in
    origin) "$bin_dir/origin" --check --config "$r/etc/origin/origin.toml" >/dev/null ;;
    edge) "$bin_dir/edge" --check --config "$r/etc/edge/edge.toml" >/dev/null ;;
  esac

  conf=(--entrypoint "[\"/usr/local/bin/$p\"]" --user "$uid:$uid" --workingdir /tmp
        --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --stop-signal SIGTERM
        --os linux --arch amd64)
  case "$p" in
    origin)
      conf+=(--cmd '["--config", "/etc/origin/origin.toml"]' --port 8080)
      mapfile -t lab < <(labels origin "HLS origin: live MPEG-TS in, ABR ladder of segments and playlists out (static binary)")
      ;;
    edge)
      conf+=(--cmd '["--config", "/etc/edge/edge.toml"]' --port 8081 --port 9081)
      mapfile -t lab < <(labels edge "HLS caching reverse proxy, edge or shield tier (static binary)")
      ;;
    player-sim)
      conf+=(--cmd '["--help"]' --port 9102)
      mapfile -t lab < <(labels player-sim "Simulated ABR players measuring QoE against an HLS URL (static binary)")
      ;;
  esac

  # Inputs: every file (path, mode, owner, content) and the image config, without the
  # labels that change on every build.
  inputs=$( { (cd "$r" && find . -printf '%p %m %y\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
              printf '%s\n' "${conf[@]}" "$version" "$ca_version"; } | sha256sum | cut -c1-64)
  name=live-stack/$p:$version
  have=$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "live-stack.inputs"}}' "$name" 2>/dev/null || true)
  if [ "$have" = "$inputs" ]; then
    echo "== $name: up to date"
  else
    echo "== $name: building"
    old=$(buildah images --noheading --format '{{.ID}}' "$name" 2>/dev/null || true)
    container=$(buildah from --name "live-stack-build-$p-$$" scratch)
    buildah copy --quiet --chown 0:0 "$container" "$r/" / >/dev/null
    buildah config "${conf[@]}" "${lab[@]}" --label "live-stack.inputs=$inputs" "$container"
    buildah commit --quiet --rm --format oci "$container" "$name" >/dev/null
    container=""
    # The image this one replaces, if nothing else names it any more.
    if [ -n "$old" ] && [ "$old" != "$(buildah images --noheading --format '{{.ID}}' "$name")" ]; then
      buildah rmi "$old" >/dev/null 2>&1 || true
    fi
  fi
  if [ -n "$oci_dir" ]; then
    mkdir -p "$oci_dir"
    rm -f "$oci_dir/$p.tar"
    buildah push --quiet "$name" "oci-archive:$oci_dir/$p.tar:docker.io/$name" >/dev/null
  fi
  if [ -n "$docker_dir" ]; then
    mkdir -p "$docker_dir"
    rm -f "$docker_dir/$p.docker.tar"
    buildah push --quiet "$name" "docker-archive:$docker_dir/$p.docker.tar:docker.io/$name" >/dev/null
  fi
done

# 4. Sizes.
echo "== images"
for p in "${programs[@]}"; do
  name=live-stack/$p:$version
  line="$name  $(buildah images --noheading --format '{{.ID}} {{.Size}}' "$name")"
  line+="  (binary $(du -h "$work/$p/usr/local/bin/$p" | cut -f1)"
  [ -n "$oci_dir" ] && line+=", $oci_dir/$p.tar $(du -h "$oci_dir/$p.tar" | cut -f1)"
  [ -n "$docker_dir" ] && line+=", $docker_dir/$p.docker.tar $(du -h "$docker_dir/$p.docker.tar" | cut -f1)"
  echo "$line)"
done
