#!/usr/bin/env bash
# Build the local Debian/Python base image (no registry needed) and load it into the private dockerd.
#
#   hack/base-image.sh            -> prints the tag, zyra-k8s/base-python:bookworm
#
# It stands in for python:3.11-slim-bookworm as the BASE_IMAGE build argument of the project's
# Dockerfiles: Debian bookworm minbase (debootstrap) + python3 3.11 + ca-certificates, with a
# virtual environment AT /usr/local, so that, as in the official image, `python`, `python3`, `pip`
# are /usr/local/bin/* and `pip install` goes to /usr/local/lib/python3.11/site-packages (no PEP 668
# "externally managed" refusal). apt works inside builds (deb.debian.org over http).
# The rootfs tarball is cached: $ZYRA_K8S_CACHE/base/<suite>-<hash of this recipe>.tar (~60-90 s cold).
#
# Settings: BASE_SUITE (bookworm), BASE_TAG (zyra-k8s/base-python:$BASE_SUITE),
#           BASE_MIRROR (http://deb.debian.org/debian), BASE_EXTRA_PACKAGES (comma-separated).
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HACK_DIR/lib/common.sh"
. "$HACK_DIR/lib/docker.sh"

BASE_SUITE=${BASE_SUITE:-bookworm}
BASE_TAG=${BASE_TAG:-zyra-k8s/base-python:$BASE_SUITE}
BASE_MIRROR=${BASE_MIRROR:-http://deb.debian.org/debian}
# What a `pip install` of pure-Python and manylinux wheels needs; no compiler (add build-essential
# through BASE_EXTRA_PACKAGES or in the Dockerfile if an sdist must be compiled).
BASE_PACKAGES=python3,python3-venv,ca-certificates,netbase,tzdata${BASE_EXTRA_PACKAGES:+,$BASE_EXTRA_PACKAGES}
RECIPE_VERSION=1   # bump when the recipe below changes

base_tarball() {
  local key
  key=$(printf '%s|%s|%s|%s' "$RECIPE_VERSION" "$BASE_SUITE" "$BASE_MIRROR" "$BASE_PACKAGES" | sha256sum | cut -c1-12)
  echo "$ZYRA_K8S_CACHE/base/$BASE_SUITE-$key.tar"
}

make_rootfs() {
  local tarball=$1 rootfs
  apt_ensure debootstrap debian-archive-keyring
  mkdir -p "$(dirname "$tarball")"
  rootfs=$(mktemp -d "$ZYRA_K8S_CACHE/base/rootfs.XXXXXX")
  # shellcheck disable=SC2064
  trap "umount_tree '$rootfs'; rm -rf '$rootfs'" EXIT
  log "debootstrap $BASE_SUITE ($BASE_PACKAGES) into $rootfs"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$rootfs" "$BASE_MIRROR" \
      > "$rootfs.log" 2>&1 || { tail -30 "$rootfs.log" >&2; die "debootstrap failed"; }
  rm -f "$rootfs.log"
  cat > "$rootfs/etc/apt/sources.list" <<SRC
deb $BASE_MIRROR $BASE_SUITE main
deb $BASE_MIRROR $BASE_SUITE-updates main
deb http://deb.debian.org/debian-security $BASE_SUITE-security main
SRC
  # python:3.11-slim layout: a venv at /usr/local (pip, python on PATH, site-packages there).
  chroot "$rootfs" /usr/bin/python3 -m venv /usr/local
  chroot "$rootfs" /bin/sh -c 'cd /usr/local/bin && ln -sf python3 python'
  # docker-slim style trimming: no apt lists, caches, docs, man pages, __pycache__
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
         "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
  find "$rootfs/usr/lib/python3"* -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
  # no hostname/resolv.conf/hosts of this machine in the image (the runtime provides them)
  : > "$rootfs/etc/hostname"; rm -f "$rootfs/etc/resolv.conf"; : > "$rootfs/etc/resolv.conf"
  umount_tree "$rootfs"
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"; trap - EXIT
  log "rootfs cached: $tarball ($(du -h "$tarball" | cut -f1))"
}

# debootstrap mounts /proc and /sys in the target; an interrupted run may leave them.
umount_tree() {
  findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d) == 1' | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

# base_image_ensure: rootfs cached, imported into the private dockerd (started if needed; the caller
# stops it). Sets BASE_TAG.
base_image_ensure() {
  need_root
  local tarball; tarball=$(base_tarball)
  # in a subshell: its EXIT trap (cleaning a half-made rootfs) must not replace the caller's
  [ -f "$tarball" ] || ( make_rootfs "$tarball" )
  docker_up
  local want; want=$(basename "$tarball" .tar)
  if [ "$(docker_ image inspect -f '{{index .Config.Labels "zyra-k8s.base"}}' "$BASE_TAG" 2>/dev/null)" != "$want" ]; then
    log "docker import $tarball as $BASE_TAG"
    docker_ import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL zyra-k8s.base=$want" \
        --change 'CMD ["python3"]' \
        "$tarball" "$BASE_TAG" >/dev/null
  fi
}

# Executed: build it and print the tag. Sourced (build-image.sh): only define the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  need_root
  docker_lock
  trap docker_down_if_started EXIT
  base_image_ensure
  echo "$BASE_TAG"
fi
