#!/usr/bin/env bash
# Build a Debian base image with Python 3.11 locally, from Debian's packages only, for machines that
# reach a Debian mirror but no registry of container images (so `python:3.11-slim` cannot be pulled).
#
#   bash deploy/build-base.sh [IMAGE]        # default IMAGE: localhost/aiops-debian-python:bookworm
#   podman build --build-arg BASE_IMAGE=localhost/aiops-debian-python:bookworm \
#       -f deploy/Containerfile -t aiops-agents:dev .
#
# Needs root (or an unshare-capable user), `mmdebstrap` and `podman` (Debian packages of those names).
# The root filesystem tarball is kept in AIOPS_DEPLOY_CACHE (default /var/tmp/aiops-deploy-cache) and
# the image in podman's storage: a second run with both present does nothing. FORCE=1 rebuilds.
# Environment: DEBIAN_SUITE (bookworm: Python 3.11), DEBIAN_MIRROR (http://deb.debian.org/debian).
set -euo pipefail

IMAGE="${1:-localhost/aiops-debian-python:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${AIOPS_DEPLOY_CACHE:-/var/tmp/aiops-deploy-cache}"
TARBALL="$CACHE/debian-python-$SUITE.tar"

for tool in mmdebstrap podman; do
    command -v "$tool" >/dev/null || { echo "build-base: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done

if [ "${FORCE:-0}" != 1 ] && podman image exists "$IMAGE"; then
    echo "build-base: $IMAGE already exists (FORCE=1 rebuilds)"
    exit 0
fi

mkdir -p "$CACHE"
if [ "${FORCE:-0}" = 1 ] || [ ! -s "$TARBALL" ]; then
    started=$(date +%s)
    # python3-venv brings ensurepip (pip for the build stage); ca-certificates serves TLS to Temporal
    # Cloud and PyPI. Documentation, man pages and locales are left out: nobody reads them in a pod.
    mmdebstrap --variant=apt --mode=auto --format=tar \
        --include=python3,python3-venv,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        "$SUITE" "$TARBALL.partial" "$MIRROR" </dev/null
    mv "$TARBALL.partial" "$TARBALL"
    echo "build-base: root filesystem $TARBALL built in $(( $(date +%s) - started ))s"
fi

podman import \
    --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV=LANG=C.UTF-8' \
    --change 'CMD=["python3"]' \
    --message "Debian $SUITE with python3 and python3-venv, built by deploy/build-base.sh" \
    "$TARBALL" "$IMAGE" >/dev/null
echo "build-base: imported $IMAGE"
