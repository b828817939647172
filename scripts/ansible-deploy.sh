#!/usr/bin/env bash
# `make deploy`: plan from the inventory, then run ansible/site.yml against it.
#   INVENTORY   the site inventory (default ansible/inventory/hosts.yml)
#   CHECK=1     check mode with a diff: shows what would change, changes nothing
#   ALLOW_EXAMPLE_INVENTORY=1   let the example inventory through (it names example hosts)
#   ANSIBLE_ARGS  more ansible-playbook arguments, e.g. "--limit gpu-0 --ask-vault-pass"
# --check-inventory: only the inventory checks (make runs them before installing anything).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
INVENTORY="${INVENTORY:-ansible/inventory/hosts.yml}"
EXAMPLE="ansible/inventory/example.yml"
PLAN_VARS="ansible/.plan/$(basename "${INVENTORY%.*}")-plan.yml"

if [ ! -e "$INVENTORY" ]; then
    cat >&2 <<EOF
make deploy: no inventory at $INVENTORY.
  Describe your hosts first:
    cp $EXAMPLE ansible/inventory/hosts.yml   # then edit hosts, GPU type and count, networks
    make deploy CHECK=1                       # dry run with a diff
    make deploy
  Or point at another inventory: make deploy INVENTORY=path/to/inventory.yml
  (docs/ansible.md walks through it; \`make help\` lists the other targets.)
EOF
    exit 2
fi

if [ "$(realpath "$INVENTORY")" = "$(realpath "$EXAMPLE")" ] && [ "${ALLOW_EXAMPLE_INVENTORY:-0}" != "1" ]; then
    cat >&2 <<EOF
make deploy: refusing to deploy to the example inventory ($EXAMPLE): its hosts are
placeholders. Copy it to ansible/inventory/hosts.yml and edit it, or pass
ALLOW_EXAMPLE_INVENTORY=1 if you really mean it.
EOF
    exit 2
fi

if [ "${1:-}" = "--check-inventory" ]; then
    exit 0
fi

for tool in ansible-playbook ansible-inventory appliance; do
    if [ ! -x "$VENV/bin/$tool" ]; then
        echo "make deploy: $VENV/bin/$tool is missing; run \`make install\` (ansible-core is in the dev extra)" >&2
        exit 2
    fi
done

"$VENV/bin/python" scripts/ansible_plan_vars.py --inventory "$INVENTORY" --output "$PLAN_VARS"

args=(-i "$INVENTORY" ansible/site.yml -e "@$PLAN_VARS")
if [ -n "${CHECK:-}" ] && [ "${CHECK}" != "0" ]; then
    args+=(--check --diff)
fi
# shellcheck disable=SC2206  # ANSIBLE_ARGS is meant to be split
args+=(${ANSIBLE_ARGS:-})
export ANSIBLE_CONFIG="ansible/ansible.cfg"
echo "+ ansible-playbook ${args[*]}" >&2
exec "$VENV/bin/ansible-playbook" "${args[@]}"
