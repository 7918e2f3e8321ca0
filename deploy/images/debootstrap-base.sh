#!/bin/sh
# The local base image where no container registry is reachable: Debian 12 (bookworm) minbase
# with python3, ca-certificates and netbase, trimmed like debian:bookworm-slim. It stands in for
# docker.io/library/python:3.11-slim-bookworm (the Containerfile's default BASE).
#
#   deploy/images/debootstrap-base.sh ROOTFS_DIR      (as root; about 2-3 minutes)
#
# scripts/images.sh keys its cached copy of the result by this file's SHA-256: any change
# here builds a new base, nothing else does (scripts/images.sh --refresh-base forces one).
set -eu
target=${1:?usage: debootstrap-base.sh ROOTFS_DIR}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

debootstrap --variant=minbase --include=python3,ca-certificates,netbase \
  bookworm "$target" "$mirror"

# What debian:bookworm-slim does: later package installs leave out documentation and locales.
cat > "$target/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
cat > "$target/etc/apt/apt.conf.d/slim" <<'EOF'
APT::Install-Recommends "false";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
EOF
cat > "$target/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF

# Security updates published since the point release debootstrap installed.
chroot "$target" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade && apt-get clean'

# Nothing of the build host stays in the image (debootstrap copies these from it).
rm -f "$target/etc/hostname" "$target/etc/resolv.conf" "$target/etc/machine-id"
: > "$target/etc/machine-id"
rm -rf "$target/var/lib/apt/lists/"* "$target/var/cache/apt/"*.bin \
  "$target/var/cache/apt/archives/"*.deb "$target/var/log/"*.log "$target/var/log/apt/"* \
  "$target/tmp/"* "$target/var/tmp/"* "$target/root/.cache"
find "$target/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$target/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$target/usr/share/man/"* "$target/usr/share/info/"* "$target/usr/share/lintian"
find "$target/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
  -exec rm -rf {} +
