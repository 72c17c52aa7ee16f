# Local Kubernetes for tests (included from the top-level Makefile). All need root.
#   make cluster-build                 build Kubernetes 1.20.2 from Debian's source once (cached)
#   make cluster-up / cluster-down     start (or reuse) / stop and clean the local cluster
#   make cluster-status                what runs; exit 0 when healthy
#   make base-image                    the local Debian/Python base (zyra-k8s/base-python:bookworm)
#   make image IMAGE=name:tag DOCKERFILE=images/x/Dockerfile [CONTEXT=.]
#                                      build with the local base, load into the cluster if up
#   make cluster-test                  the cluster smoke tests (brings the cluster up if needed)
# Use the cluster: export KUBECONFIG=$$(hack/local-cluster.sh kubeconfig)

CLUSTER_HACK := $(dir $(lastword $(MAKEFILE_LIST)))
CONTEXT ?= .

.PHONY: cluster-build cluster-up cluster-down cluster-status base-image image cluster-test docker-down

cluster-build:
	$(CLUSTER_HACK)local-cluster.sh build

cluster-up:
	$(CLUSTER_HACK)local-cluster.sh up

cluster-down:
	$(CLUSTER_HACK)local-cluster.sh down

cluster-status:
	$(CLUSTER_HACK)local-cluster.sh status

base-image:
	$(CLUSTER_HACK)base-image.sh

image:
	@test -n "$(IMAGE)" -a -n "$(DOCKERFILE)" || { echo "usage: make image IMAGE=name:tag DOCKERFILE=path [CONTEXT=dir]" >&2; exit 2; }
	$(CLUSTER_HACK)build-image.sh "$(IMAGE)" "$(DOCKERFILE)" "$(CONTEXT)"

docker-down:
	$(CLUSTER_HACK)docker.sh down

cluster-test:
	.venv/bin/pytest -m cluster tests/cluster -q
