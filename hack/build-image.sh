#!/usr/bin/env bash
# Build one of the project's images with no registry and load it into the local cluster.
#
#   hack/build-image.sh <name:tag> <dockerfile> [context]     (context defaults to the repo root)
#
# 1. makes sure the local base image exists (hack/base-image.sh: debootstrap bookworm + Python 3.11,
#    tag zyra-k8s/base-python:bookworm) and passes it as --build-arg BASE_IMAGE=...: the images tested
#    are built from the same Dockerfiles as the shipped ones, only the base is swapped;
# 2. builds with a private dockerd (hack/lib/docker.sh; BuildKit, `--network host`);
# 3. if the local cluster runs, `docker save | ctr -n k8s.io images import -` into its containerd.
#    Pods then use the image by the same name with imagePullPolicy: Never or IfNotPresent (avoid the
#    tag `latest`, for which Kubernetes defaults to Always).
#
# ---- Rules for the Dockerfiles under images/ -----------------------------------------------------
#   ARG BASE_IMAGE=python:3.11-slim-bookworm
#   FROM ${BASE_IMAGE}
#   ...
#   RUN --mount=type=secret,id=ca,target=/etc/ssl/certs/ca-certificates.crt \
#       PIP_CERT=/etc/ssl/certs/ca-certificates.crt pip install --no-cache-dir ...
# * No `# syntax=` line: it would pull the Dockerfile frontend from a registry. Docker 20.10's
#   built-in frontend already knows RUN --mount.
# * The CA secret: pip here only trusts the host's CA bundle (/etc/ssl/certs/ca-certificates.crt,
#   which has a TLS-intercepting CA). This script passes it as the BuildKit secret `ca`
#   (--secret id=ca,src=$ZYRA_BUILD_CA_FILE, default that host bundle); it is mounted only during
#   that RUN and is in no layer of the image. Without the secret (a laptop building against the
#   public base), BuildKit mounts nothing and the image's own bundle is used: the same line works
#   in both places. Use the same mount for anything else fetching over TLS (curl, git:
#   SSL_CERT_FILE / GIT_SSL_CAINFO pointing to the same path).
# * The base has no compiler; apt-get works in a RUN (http://deb.debian.org).
# ---------------------------------------------------------------------------------------------------
# Settings: BASE_IMAGE (override the base; default: build the local one), ZYRA_BUILD_CA_FILE,
#   ZYRA_IMAGE_NO_LOAD=1 (only build), ZYRA_DOCKER_KEEP=1 (leave the private dockerd running for
#   the next build: faster; stop it with hack/docker.sh down), DOCKER_BUILD_ARGS (extra args).
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
. "$HACK_DIR/lib/common.sh"
. "$HACK_DIR/lib/docker.sh"

[ $# -ge 2 ] || { sed -n '2,5p' "$0" >&2; exit 2; }
IMAGE=$1 DOCKERFILE=$2 CONTEXT=${3:-$REPO_ROOT}
[ -f "$DOCKERFILE" ] || die "no Dockerfile at $DOCKERFILE"
[ -d "$CONTEXT" ] || die "no build context directory $CONTEXT"
case "$IMAGE" in *:*) ;; *) die "give the image a tag (name:tag), not the implicit :latest" ;; esac
need_root
docker_lock

trap docker_down_if_started EXIT
if [ -z "${BASE_IMAGE:-}" ]; then
  . "$HACK_DIR/base-image.sh"
  base_image_ensure      # starts the private dockerd
  BASE_IMAGE=$BASE_TAG
else
  docker_up
fi

CA_FILE=${ZYRA_BUILD_CA_FILE:-/etc/ssl/certs/ca-certificates.crt}
secret=()
[ -f "$CA_FILE" ] && secret=(--secret "id=ca,src=$CA_FILE")
log "docker build $IMAGE from $DOCKERFILE (BASE_IMAGE=$BASE_IMAGE)"
# shellcheck disable=SC2086
docker_ build --network host --progress plain --build-arg "BASE_IMAGE=$BASE_IMAGE" "${secret[@]}" \
    -t "$IMAGE" -f "$DOCKERFILE" ${DOCKER_BUILD_ARGS:-} "$CONTEXT" > "$ZYRA_DOCKER_HOME/last-build.log" 2>&1 \
  || { tail -40 "$ZYRA_DOCKER_HOME/last-build.log" >&2; die "docker build failed (full log: $ZYRA_DOCKER_HOME/last-build.log)"; }
log "built $IMAGE ($(docker_ image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"

if [ "${ZYRA_IMAGE_NO_LOAD:-0}" = 1 ]; then exit 0; fi
CTR_SOCK=$ZYRA_CLUSTER_HOME/ctr/containerd.sock
if [ -S "$CTR_SOCK" ] && ctr --address "$CTR_SOCK" version >/dev/null 2>&1; then
  docker_ save "$IMAGE" | ctr --address "$CTR_SOCK" --namespace k8s.io images import - >/dev/null
  log "imported $IMAGE into the cluster's containerd ($CTR_SOCK)"
else
  log "no local cluster running: $IMAGE built only (run this again after hack/local-cluster.sh up)"
fi
