#!/usr/bin/env bash
# The private dockerd used for image builds (see hack/lib/docker.sh).
#   hack/docker.sh up      start it and leave it running (faster repeated builds)
#   hack/docker.sh down    stop it (its image store under $ZYRA_DOCKER_HOME/data stays)
#   hack/docker.sh env     print `export DOCKER_HOST=...` for using it by hand with /usr/bin/docker
#   hack/docker.sh purge   stop it and delete its whole state (images, build cache)
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HACK_DIR/lib/common.sh"
. "$HACK_DIR/lib/docker.sh"
case "${1:-}" in
  up) docker_lock; docker_up ;;
  down) docker_lock; docker_down ;;
  env) echo "export DOCKER_HOST=unix://$DOCKER_SOCK DOCKER_BUILDKIT=1" ;;
  purge) docker_lock; docker_down; rm -rf "$ZYRA_DOCKER_HOME" ;;
  *) echo "usage: $0 up|down|env|purge" >&2; exit 2 ;;
esac
