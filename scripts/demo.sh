#!/usr/bin/env bash
# The embedded platform end to end, on a fresh machine:
#   python environment -> control plane (built once) -> operator -> the example applied
#   -> every object Ready -> a prediction from the live endpoint. Leaves the platform running; `lykectl down` stops it.
# State goes to $LYKEION_HOME (default ~/.lykeion). Running it again is fine: every step
# finds what the last run made (`families create` of the same spec says "unchanged",
# applies are idempotent, a running platform is reused) and ends with a prediction.
set -euo pipefail
cd "$(dirname "$0")/.."
export LYKEION_HOME="${LYKEION_HOME:-$HOME/.lykeion}"

stage() { printf '\n== %s\n' "$*"; stage_start=$(date +%s); }
done_stage() { echo "   ($(( $(date +%s) - stage_start ))s)"; }

stage "python environment"
if ! command -v lykectl >/dev/null; then
  [[ -x .venv/bin/lykectl ]] || bash scripts/setup-dev.sh
  PATH="$PWD/.venv/bin:$PATH"
fi
echo "   using $(command -v lykectl)"
done_stage

stage "control plane binaries (first build ~6 min, then cached)"
bash scripts/build-control-plane.sh >/dev/null
done_stage

stage "lykectl up: etcd, kube-apiserver, CRDs, operator"
eval "$(lykectl up)"
done_stage

stage "the forward example: family, features (Beam pipeline -> offline + online stores)"
lykectl families create --alias forward --name Forward \
  --description "Will this rider order again within 30 days?" --authors ds@example.com --wait
lykectl features apply -f examples/forward/features.yaml --wait
kubectl="$(bash scripts/build-control-plane.sh)/kubectl"
done_stage

stage "the model: point-in-time training set -> MLflow project -> evaluation gate -> registry"
"$kubectl" apply --server-side -f examples/forward/model.yaml
lykectl models get forward --segment default --version 1.0 --wait --timeout 300
"$kubectl" get model forward-default-1.0 \
  -o jsonpath='{.status.modelUri}  training set {.status.trainingSet.hash} ({.status.trainingSet.rows} rows)  roc_auc={.status.metrics.eval_roc_auc}{"\n"}'
done_stage

stage "the deployment: readiness gate (model evaluated, features fresh) -> model server -> router"
lykectl models deploy forward --segment default --version 1.0 --wait
done_stage

stage "a prediction: only the key goes in; the endpoint reads the features from the online store"
lykectl predict forward --segment default --key rider_id=r42 --explain
done_stage

stage "what the cluster now holds"
"$kubectl" get lykeion
echo
echo "KUBECONFIG=$KUBECONFIG   (stop with: $(command -v lykectl) down)"
