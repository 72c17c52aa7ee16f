# The usual local loop on a kind cluster (needs docker, kind, helm and kubectl on a laptop; not on the CI
# machines, which have no Docker engine). skaffold.yaml does the same in one `skaffold dev`; docs/kind.md.
#   make kind-up            create the kind cluster
#   make kind-load          build the three images and `kind load` them
#   make kind-deploy        dev Redis + S3 (examples/kind/dev-services.yaml) and the chart
#   make kind-port-forward  the API on http://127.0.0.1:8000
#   make kind-down          delete the kind cluster

KIND_CLUSTER ?= zyra
KIND_TAG ?= dev
KIND_IMAGES := api operator runner

.PHONY: kind-up kind-load kind-deploy kind-port-forward kind-down

kind-up:
	kind create cluster --name $(KIND_CLUSTER)

kind-load:
	for c in $(KIND_IMAGES); do \
	  docker build -t zyra-k8s/$$c:$(KIND_TAG) -f images/$$c/Dockerfile . && \
	  kind load docker-image --name $(KIND_CLUSTER) zyra-k8s/$$c:$(KIND_TAG) || exit 1; \
	done

kind-deploy:
	kubectl apply -f examples/kind/dev-services.yaml
	helm upgrade --install zyra charts/zyra-k8s -f examples/kind/values-dev.yaml --set image.tag=$(KIND_TAG) --wait

kind-port-forward:
	kubectl port-forward svc/zyra-zyra-k8s-api 8000:80

kind-down:
	kind delete cluster --name $(KIND_CLUSTER)
