#!/usr/bin/env bash
# Creates the secret files docker-compose.yml mounts, each only if it is missing:
#   db_password, grafana_admin_password   random, 32 bytes of entropy
#   api-keys.json                         one `ehr` and one `admin` key via `plant-icd keys create`
#                                         (the keys are printed once; only their sha256 is stored)
# Usage: scripts/compose-secrets.sh [SECRETS_DIR]   (default $PLANT_ICD_SECRETS_DIR, else
# deploy/compose/secrets). PLANT_ICD_BIN names the plant-icd command (default: on PATH, else
# .venv/bin/plant-icd).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
secrets=${1:-${PLANT_ICD_SECRETS_DIR:-$repo/deploy/compose/secrets}}
mkdir -p "$secrets"
# Only the owner may list or enter the folder on the host; inside the containers each file is
# bind-mounted on its own, where the service's user (uid 10001) must be able to read it.
chmod 0700 "$secrets"

random_secret() {
    python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
}

for name in db_password grafana_admin_password; do
    if [ -s "$secrets/$name" ]; then
        echo "kept    $secrets/$name"
    else
        (umask 022 && random_secret > "$secrets/$name")
        echo "created $secrets/$name"
    fi
done

keys=$secrets/api-keys.json
if [ -s "$keys" ]; then
    echo "kept    $keys"
    exit 0
fi
plant_icd=${PLANT_ICD_BIN:-}
if [ -z "$plant_icd" ]; then
    if command -v plant-icd > /dev/null; then
        plant_icd=plant-icd
    elif [ -x "$repo/.venv/bin/plant-icd" ]; then
        plant_icd=$repo/.venv/bin/plant-icd
    else
        echo "compose-secrets: no plant-icd command to create $keys: install the project" \
            "(pip install '.[serve]') or set PLANT_ICD_BIN" >&2
        exit 1
    fi
fi
for client in ehr-gateway:ehr admin:admin; do
    "$plant_icd" keys create --name "${client%%:*}" --role "${client##*:}" --keys-file "$keys"
done
# `keys create` writes the file 0600; the container's user is not its owner.
chmod 0644 "$keys"
echo "created $keys: hand each key above to its client now; it is not stored"
