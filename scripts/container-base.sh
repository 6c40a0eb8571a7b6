#!/usr/bin/env bash
# Make a local stand-in for `debian:bookworm-slim` from Debian's own packages, as a rootfs tarball.
#
# The Containerfile's base is a build argument (default `debian:bookworm-slim` for users). No
# public container registry is reachable from the test machines, so the tests build on a base
# made here: mmdebstrap's `minbase` variant of bookworm with the same dpkg path excludes the
# official slim image uses (no docs, man pages or locales), written to a tarball that the test
# `podman import`s. Prints the tarball's path on stdout.
#
# The tarball is cached under $MOORAGE_TEST_CACHE_DIR (default /var/cache/moorage-test), keyed by
# suite and by this script's options, so CI on this machine makes it once (about a minute) and
# reuses it. Needs root and Debian's mmdebstrap (scripts/test.sh installs it).
set -euo pipefail

SUITE="${1:-bookworm}"
CACHE="${MOORAGE_TEST_CACHE_DIR:-/var/cache/moorage-test}/container-base"
# Bump when the options below change, so a cached tarball made with other options is not reused.
RECIPE=2
OUT="$CACHE/debian-$SUITE-slim-r$RECIPE.tar"

if [ -s "$OUT" ]; then
    echo "$OUT"
    exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
    echo "mmdebstrap is not installed (apt-get install mmdebstrap); it makes the test's base image" >&2
    exit 1
fi
mkdir -p "$CACHE"
tmp="$(mktemp "$CACHE/.debian-$SUITE.XXXXXX.tar")"
trap 'rm -f "$tmp"' EXIT
# The slim image's excludes (docker-library's debuerreotype --slimify): documentation, manual
# pages and locales are dropped at unpack time, copyrights kept. The merged-usr hook lays out /usr
# itself, as the official image does, instead of installing the usrmerge package (and perl with it).
mmdebstrap --quiet --variant=minbase --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$SUITE" "$tmp" >&2
mv "$tmp" "$OUT"
trap - EXIT
echo "$OUT"
