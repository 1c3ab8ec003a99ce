#!/usr/bin/env bash
# Installs the browser the review page's end-to-end tests drive: Debian's chromium package at
# /usr/bin/chromium. Idempotent: does nothing when it is already there. Playwright (a Python
# package in the dev extra) drives it by path; its own browser download is never used.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "install-browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-browser: $CHROMIUM is missing and this user cannot install it:" \
            "run as root, or install Debian's chromium package" >&2
        exit 1
    fi
    SUDO=sudo
fi

echo "install-browser: installing Debian's chromium package"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium

if [ ! -x "$CHROMIUM" ]; then
    echo "install-browser: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
echo "install-browser: $("$CHROMIUM" --version 2>/dev/null) installed"
