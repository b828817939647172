#!/usr/bin/env bash
# `make deploy TARGET=k8s`: plan the engine, then `helm upgrade --install` the chart with
# the planner's values and the admin's own values file. Needs the helm CLI (v3.8+ or v4)
# and kubectl access on the admin host; the cluster itself needs no internet.
#
#   PLAN_ARGS   appliance plan arguments (default: the dev model on CPU)
#   VALUES      the admin's values file (Secret name, weights PVC, database host ...)
#   RELEASE     release name (default: appliance)
#   NAMESPACE   namespace (default: appliance)
#   HELM_ARGS   extra helm arguments (e.g. --dry-run=client, --wait --timeout 60m)
set -euo pipefail

VENV="${VENV:-.venv}"
RELEASE="${RELEASE:-appliance}"
NAMESPACE="${NAMESPACE:-appliance}"
PLAN_ARGS="${PLAN_ARGS:---model smollm2-135m-instruct --gpu cpu --gpus-per-node 1}"
VALUES="${VALUES:-}"
PLAN_VALUES="${PLAN_VALUES:-.data/helm/plan-values.yaml}"

if ! command -v helm >/dev/null 2>&1; then
    echo "error: the helm CLI is not on PATH; install it on the admin host (docs/helm.md)" >&2
    exit 2
fi
mkdir -p "$(dirname "$PLAN_VALUES")"
# shellcheck disable=SC2086 # PLAN_ARGS is a list of arguments
"$VENV/bin/appliance" plan $PLAN_ARGS --format helm-values -o "$PLAN_VALUES"
args=(upgrade --install "$RELEASE" helm/appliance --namespace "$NAMESPACE" --create-namespace
      -f "$PLAN_VALUES")
if [ -n "$VALUES" ]; then
    args+=(-f "$VALUES")
fi
# shellcheck disable=SC2086 # HELM_ARGS is a list of arguments
exec helm "${args[@]}" ${HELM_ARGS:-}
