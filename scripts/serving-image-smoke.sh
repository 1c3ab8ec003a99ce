#!/usr/bin/env bash
# The serving image's steps without a Docker engine: copy the sources the Dockerfile copies, build
# the serving environment with the Dockerfile's own script (serve extra only, no torch), migrate a
# SQLite database and start the server through the image's entrypoint in production mode, poll
# /readyz with the image's HEALTHCHECK script, then code one note with an API key.
#
# Usage: scripts/serving-image-smoke.sh BUNDLE_DIR [WORK_DIR]
#   PYTHON         interpreter for the virtual environment (default python3)
#   READY_TIMEOUT  seconds to wait for /readyz (default 120)
# Exit status: 0 ready and coding; 3 the serving environment could not be installed (pip; the
# log says whether the package registry was unreachable); 1 any other failure.
set -euo pipefail

bundle=${1:?usage: serving-image-smoke.sh BUNDLE_DIR [WORK_DIR]}
bundle=$(cd "$bundle" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/plant-icd-smoke.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)
ready_timeout=${READY_TIMEOUT:-120}
# The environment under test must come from the virtual environment alone.
unset PYTHONPATH VIRTUAL_ENV

step() { printf '== %s\n' "$*"; }

server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

step "copy the sources the Dockerfile's serve-source stage copies (no training/)"
rm -rf "$work/src"
mkdir -p "$work/src"
cp -R "$repo/pyproject.toml" "$repo/README.md" "$repo/plant_icd" "$repo/model" "$repo/service" \
    "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +

step "build the serving environment (deploy/docker/build-serve-env.sh)"
rm -rf "$work/venv"
if ! sh "$repo/deploy/docker/build-serve-env.sh" "$work/venv" "$work/src"; then
    echo "serving-image-smoke: installing the serving environment failed" >&2
    exit 3
fi
venv_python=$work/venv/bin/python
export PATH="$work/venv/bin:$PATH"
entrypoint=("$venv_python" "$repo/deploy/docker/entrypoint.py")

# As in the image: a writable working directory, settings from variables, secrets from files.
mkdir -p "$work/data" "$work/secrets"
cd "$work/data"
rm -f audit.db
printf 'sqlite:///%s/audit.db\n' "$work/data" > "$work/secrets/database_url"
export PLANT_ICD_DATABASE_URL_FILE=$work/secrets/database_url
export PLANT_ICD_BUNDLE_DIR=$bundle
export PLANT_ICD_ENVIRONMENT=production
export PLANT_ICD_LOG_LEVEL=WARNING

step "the training commands are absent and say which extra they need (plant-icd train)"
if plant-icd train --out "$work/never" > "$work/train.log" 2>&1; then
    echo "serving-image-smoke: plant-icd train ran in the serving environment" >&2
    exit 1
fi
grep -q 'install plant-icd\[train\] to use train' "$work/train.log" || {
    echo "serving-image-smoke: plant-icd train did not name its extra: $(cat "$work/train.log")" >&2
    exit 1
}
echo "plant-icd train: $(cat "$work/train.log")"

step "create an API key (plant-icd keys create)"
rm -f "$work/secrets/api-keys.json"
key=$(plant-icd keys create --name smoke-ehr --role ehr \
    --keys-file "$work/secrets/api-keys.json" | sed -n 's/^key: //p')
export PLANT_ICD_API_KEYS_FILE=$work/secrets/api-keys.json

step "migrate the database through the entrypoint (plant-icd db upgrade)"
"${entrypoint[@]}" plant-icd db upgrade

port=$("$venv_python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "start the server on 127.0.0.1:$port through the entrypoint"
"${entrypoint[@]}" plant-icd serve --host 127.0.0.1 --port "$port" > "$work/server.log" 2>&1 &
server_pid=$!

step "poll /readyz with the image's HEALTHCHECK script (up to ${ready_timeout}s)"
export HEALTHCHECK_URL=http://127.0.0.1:$port/readyz
deadline=$((SECONDS + ready_timeout))
until "$venv_python" "$repo/deploy/docker/healthcheck.py" > "$work/health.log" 2>&1; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "serving-image-smoke: the server exited; its log:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "serving-image-smoke: not ready after ${ready_timeout}s: $(cat "$work/health.log")" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    sleep 0.5
done
echo "ready: $(cat "$work/health.log")"

step "code one note with the API key, and read /metrics"
BASE_URL=http://127.0.0.1:$port API_KEY=$key "$venv_python" -I - <<'EOF'
import json
import os
import urllib.error
import urllib.request

base, key = os.environ["BASE_URL"], os.environ["API_KEY"]
note = json.dumps({"text": "Patient with fever and cough."}).encode()
request = urllib.request.Request(
    f"{base}/v1/predictions",
    data=note,
    headers={"Content-Type": "application/json", "X-API-Key": key},
)
with urllib.request.urlopen(request, timeout=30) as response:
    assert response.status == 201, response.status
    prediction = json.load(response)
codes = [entry["code"] for entry in prediction["codes"]]
assert codes, prediction
try:
    urllib.request.urlopen(urllib.request.Request(f"{base}/v1/predictions", data=note,
                           headers={"Content-Type": "application/json"}), timeout=30)
    raise SystemExit("a prediction without a key was accepted in production mode")
except urllib.error.HTTPError as error:
    assert error.code == 401, error.code
with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
    exposition = response.read().decode()
assert "plant_icd_predictions_recorded_total 1.0" in exposition, exposition[:2000]
print(f"coded one note: {codes}; 401 without a key; metrics exported")
EOF

echo "serving-image-smoke: ok (work directory $work)"
