#!/usr/bin/env bash
# Build the edgeproof container images with buildah: no Docker engine, no registry needed.
#
#   scripts/images.sh [OPTIONS] [attestor] [agent]    build (both by default); `make images`
#   scripts/images.sh env                             print the exports that point podman at them
#
# Options:
#   --base auto|debootstrap|IMAGE   the Containerfile's BASE. auto (default): the registry's
#                                   python:3.11-slim-bookworm if a registry answers, else a
#                                   Debian base built here with debootstrap (cached).
#   --refresh-base                  rebuild the debootstrap base even if one is cached
#   --wheels host|pypi              host (default): dependency wheels built here with this
#                                   machine's pip (same versions as .venv), passed to the build
#                                   as a build context; pypi: built inside the image build
#   --out DIR                       write DIR/<image>.iid (the image IDs) and DIR/podman.env
#
# Everything it keeps lives outside the tree, in $EDGEPROOF_IMAGE_CACHE (default
# $XDG_CACHE_HOME/edgeproof/images, else /var/cache/edgeproof/images): the base's root file
# system, the wheelhouse, image storage (its own, overlay or vfs) and build logs.
# See deploy/images/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

CACHE=${EDGEPROOF_IMAGE_CACHE:-${XDG_CACHE_HOME:-/var/cache}/edgeproof/images}
BUILD_TIMEOUT=${EDGEPROOF_IMAGE_BUILD_TIMEOUT:-1800}
REGISTRY_BASE=docker.io/library/python:3.11-slim-bookworm
CONTAINERFILE=deploy/images/Containerfile
started=$SECONDS

say() { printf '[images %4ds] %s\n' "$((SECONDS - started))" "$*"; }
die() { printf 'images: %s\n' "$*" >&2; exit 1; }

storage_env() {  # the variables podman and buildah need to use this image store
  printf 'CONTAINERS_STORAGE_CONF=%s\n' "$CACHE/storage.conf"
  printf 'CONTAINERS_CONF=%s\n' "$repo/deploy/images/containers.conf"
}

overlay_works() {  # a real overlay mount where the store lives (not every file system takes one)
  local d ok=1
  d=$(mktemp -d "$CACHE/overlay-probe.XXXXXX")
  mkdir "$d/lower" "$d/upper" "$d/work" "$d/merged"
  if mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" \
       "$d/merged" 2>/dev/null; then
    umount "$d/merged"
    ok=0
  fi
  rm -rf "$d"
  return "$ok"
}

write_storage_conf() {
  local driver=${EDGEPROOF_IMAGE_DRIVER:-}
  if [ -z "$driver" ]; then
    if overlay_works; then driver=overlay; else driver=vfs; fi
  fi
  # The runtime state belongs on tmpfs (/run): it must not outlive a reboot.
  local runroot
  runroot=/run/edgeproof-images/$(printf %s "$CACHE" | sha256sum | cut -c1-12)
  cat > "$CACHE/storage.conf.new" <<EOF
# Written by scripts/images.sh: the edgeproof images' own store, outside any checkout.
[storage]
driver = "$driver"
graphroot = "$CACHE/storage-$driver"
runroot = "$runroot"
EOF
  mv "$CACHE/storage.conf.new" "$CACHE/storage.conf"
  STORAGE_DRIVER=$driver
}

run_logged() {  # run_logged LOG CMD...: progress lines on stdout, everything in LOG
  local log=$1 rc=0
  shift
  "$@" > "$log" 2>&1 &
  local pid=$!
  # Follow the log for build steps while the command runs.
  tail -n +1 -F --pid="$pid" "$log" 2>/dev/null \
    | grep --line-buffered -E '^(\[[0-9]+/[0-9]+\] )?STEP [0-9]+/|^--> Using cache|^I: (Retrieving|Installing|Configuring) (core|base|python3)' \
    | while IFS= read -r line; do say "  ${line:0:110}"; done || true
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    printf '\n--- last 40 lines of %s ---\n' "$log" >&2
    tail -n 40 "$log" >&2
    [ "$rc" -eq 124 ] && printf 'timed out after %ss\n' "$BUILD_TIMEOUT" >&2
    return "$rc"
  fi
}

# buildah's layer cache keys a LABEL step by its text, not by the build arguments it expands:
# a build at a new commit reused the previous commit's label layer, so the image claimed the
# old revision. Check the labels that carry build arguments and restamp them when they differ
# (one cheap commit, no layer rebuilt). A Docker build expands them correctly on its own.
stamp_labels() {  # stamp_labels IIDFILE TAG VERSION REVISION SOURCE
  local iidfile=$1 tag=$2 want got ctr
  want="$3|$4|$5"
  got=$(buildah inspect --type image --format \
    '{{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}|{{index .OCIv1.Config.Labels "org.opencontainers.image.revision"}}|{{index .OCIv1.Config.Labels "org.opencontainers.image.source"}}' \
    "$(cat "$iidfile")")
  [ "$got" != "$want" ] || return 0
  say "restamping $tag labels (the layer cache held $got)"
  ctr=$(buildah from --pull-never "$(cat "$iidfile")")
  buildah config --label "org.opencontainers.image.version=$3" \
    --label "org.opencontainers.image.revision=$4" --label "org.opencontainers.image.source=$5" "$ctr"
  buildah commit --quiet --format docker --rm --iidfile "$iidfile" "$ctr" "$tag" >/dev/null
}

# --- the base image ----------------------------------------------------------------------
registry_reachable() {
  command -v skopeo >/dev/null 2>&1 \
    && timeout 30 skopeo inspect --raw "docker://$REGISTRY_BASE" >/dev/null 2>&1
}

debootstrap_base() {  # sets BASE_REF to the cached debootstrap base, building it if needed
  local key tarball ctr mnt
  key=$(sha256sum deploy/images/debootstrap-base.sh | cut -c1-16)
  BASE_REF=localhost/edgeproof-base:bookworm-$key
  tarball=$CACHE/base/bookworm-$key.tar
  if [ "$REFRESH_BASE" = 0 ] && buildah inspect --type image "$BASE_REF" >/dev/null 2>&1; then
    say "base: $BASE_REF (cached)"
    return
  fi
  mkdir -p "$CACHE/base"
  if [ "$REFRESH_BASE" = 1 ] || [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    local rootfs
    rootfs=$(mktemp -d "$CACHE/base/rootfs.XXXXXX")
    say "base: debootstrap bookworm (minbase + python3), about 3 minutes; log $CACHE/logs/base.log"
    if ! run_logged "$CACHE/logs/base.log" timeout -k 10 "$BUILD_TIMEOUT" \
         sh deploy/images/debootstrap-base.sh "$rootfs"; then
      rm -rf "$rootfs"
      die "the debootstrap base failed (log above)"
    fi
    tar -C "$rootfs" --numeric-owner -cf "$tarball.new" .
    rm -rf "$rootfs"
    mv "$tarball.new" "$tarball"
    find "$CACHE/base" -maxdepth 1 -name 'bookworm-*.tar' ! -name "${tarball##*/}" -delete
  fi
  say "base: importing $tarball as $BASE_REF"
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$mnt" --numeric-owner -xf "$tarball"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 \
    --label "org.opencontainers.image.description=Debian bookworm minbase + python3 (debootstrap)" \
    --label "org.edgeproof.base.key=$key" "$ctr"
  buildah commit --quiet --rm --format docker "$ctr" "$BASE_REF" >/dev/null
  # Earlier bases lose their name; the prune below removes them once nothing uses them.
  local old
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/edgeproof-base); do
    [ "$old" = "$BASE_REF" ] || podman untag "$old" "$old" >/dev/null 2>&1 || true
  done
}

# --- the wheelhouse ----------------------------------------------------------------------
host_wheelhouse() {  # sets WHEELHOUSE to a directory with every wheel the build installs
  local py=${PYTHON:-$repo/.venv/bin/python} key tmp
  [ -x "$py" ] || py=python3
  "$py" -m pip --version >/dev/null 2>&1 || die "$py has no pip (run make setup)"
  mkdir -p "$CACHE/wheelhouse" "$CACHE/tmp"
  "$py" deploy/images/requirements.py pyproject.toml wheelhouse > "$CACHE/tmp/wheelhouse.txt"
  # The versions the test suite runs with (.venv), where the ranges allow them.
  # (Direct references, "name @ URL", cannot be constraints.)
  "$py" -m pip freeze --exclude-editable | { grep -v ' @ ' || true; } > "$CACHE/tmp/constraints.txt"
  key=$( { cat "$CACHE/tmp/wheelhouse.txt" "$CACHE/tmp/constraints.txt"
           "$py" -c 'import sys, sysconfig; print(sys.version_info[:2], sysconfig.get_platform())'
           dpkg-query -W -f='${Version}' libtss2-dev 2>/dev/null || true; } \
         | sha256sum | cut -c1-16)
  WHEELHOUSE=$CACHE/wheelhouse/$key
  if [ -f "$WHEELHOUSE/.complete" ]; then
    say "wheelhouse: $WHEELHOUSE (cached)"
    return
  fi
  say "wheelhouse: building wheels with $py into $WHEELHOUSE; log $CACHE/logs/wheelhouse.log"
  tmp=$(mktemp -d "$CACHE/wheelhouse/new.XXXXXX")
  if ! run_logged "$CACHE/logs/wheelhouse.log" timeout -k 10 "$BUILD_TIMEOUT" \
       "$py" -m pip wheel --quiet --wheel-dir "$tmp" -r "$CACHE/tmp/wheelhouse.txt" \
       -c "$CACHE/tmp/constraints.txt"; then
    rm -rf "$tmp"
    die "building the wheelhouse failed (log above)"
  fi
  touch "$tmp/.complete"
  rm -rf "$WHEELHOUSE"
  mv "$tmp" "$WHEELHOUSE"
  find "$CACHE/wheelhouse" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
}

# --- main --------------------------------------------------------------------------------
# All of it in a function, read whole before it runs: editing this file (a rebase) while a
# build runs cannot change what the running build does.
main() {
  BASE_CHOICE=${EDGEPROOF_IMAGE_BASE:-auto}
  REFRESH_BASE=0
  WHEELS=host
  OUT=
  TARGETS=()
  while [ $# -gt 0 ]; do
    case $1 in
      env) mkdir -p "$CACHE"; [ -f "$CACHE/storage.conf" ] || write_storage_conf
           storage_env | sed 's/^/export /'; exit 0 ;;
      --base) BASE_CHOICE=${2:?--base needs a value}; shift ;;
      --refresh-base) REFRESH_BASE=1 ;;
      --wheels) WHEELS=${2:?--wheels needs host or pypi}; shift ;;
      --out) OUT=${2:?--out needs a directory}; shift ;;
      attestor|agent) TARGETS+=("$1") ;;
      -h|--help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
      *) die "unknown argument: $1 (see scripts/images.sh --help)" ;;
    esac
    shift
  done
  [ ${#TARGETS[@]} -gt 0 ] || TARGETS=(attestor agent)
  case $WHEELS in host|pypi) ;; *) die "--wheels is host or pypi, not $WHEELS" ;; esac

  [ "$(id -u)" -eq 0 ] || die "building images needs root (buildah's own store); run: sudo $0 $*"
  command -v buildah >/dev/null || die "buildah not found; run make setup (scripts/sysdeps.sh)"
  mkdir -p "$CACHE/logs"
  # One build at a time per store: concurrent runs (two checkouts' test suites) wait here.
  exec 9> "$CACHE/lock"
  if ! flock -n 9; then
    say "waiting for another image build to finish (lock $CACHE/lock)"
    flock 9
  fi
  write_storage_conf
  export CONTAINERS_STORAGE_CONF=$CACHE/storage.conf
  export CONTAINERS_CONF=$repo/deploy/images/containers.conf
  say "store: $CACHE/storage-$STORAGE_DRIVER ($STORAGE_DRIVER)"

  case $BASE_CHOICE in
    auto) if registry_reachable; then BASE_REF=$REGISTRY_BASE; say "base: $BASE_REF (registry)"
          else say "base: no registry answers for $REGISTRY_BASE; using the debootstrap base"
               debootstrap_base; fi ;;
    debootstrap) debootstrap_base ;;
    *) BASE_REF=$BASE_CHOICE; say "base: $BASE_REF" ;;
  esac

  build_args=()
  if [ "$WHEELS" = host ]; then
    host_wheelhouse
    build_args+=(--build-context "wheelhouse=$WHEELHOUSE")
  else
    # pip inside the build verifies the index with the host's CA bundle (a proxy may re-sign).
    for ca in /etc/ssl/certs/ca-certificates.crt; do
      [ -f "$ca" ] && build_args+=(--volume "$ca:$ca:ro")
    done
  fi

  version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
  revision=unknown
  if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
    revision=$(git rev-parse HEAD)
    # A build from uncommitted files says so: the image is not that commit.
    if [ -n "$(git status --porcelain -- pyproject.toml README.md identity attestor agent deploy/images)" ]; then
      revision=$revision-dirty
    fi
  fi
  source_url=${EDGEPROOF_IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo unknown)}

  [ -z "$OUT" ] || { mkdir -p "$OUT"; storage_env > "$OUT/podman.env"; }
  for target in "${TARGETS[@]}"; do
    tag=localhost/edgeproof-$target:$version
    say "building $tag (revision $revision); log $CACHE/logs/$target.log"
    iidfile=$CACHE/tmp/$target.iid
    mkdir -p "$CACHE/tmp"
    run_logged "$CACHE/logs/$target.log" timeout -k 10 "$BUILD_TIMEOUT" \
      buildah bud --isolation chroot --layers --format docker -f "$CONTAINERFILE" \
        --target "$target" --build-arg "BASE=$BASE_REF" --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url" \
        "${build_args[@]}" --iidfile "$iidfile" -t "$tag" . \
      || die "building $tag failed (log above)"
    stamp_labels "$iidfile" "$tag" "$version" "$revision" "$source_url"
    [ -z "$OUT" ] || cp "$iidfile" "$OUT/$target.iid"
    say "built $tag $(cut -c1-19 "$iidfile")"
  done
  # Earlier builds' leftovers: images without a name or a child, a day old. Not younger ones:
  # a stage's last layer (requirements, app) has neither, and is the next build's cache.
  podman image prune --force --filter until=24h >/dev/null 2>&1 || true
  say "done in $((SECONDS - started)) s; run them with: eval \"\$(scripts/images.sh env)\"; podman run ..."
}

main "$@"
exit
