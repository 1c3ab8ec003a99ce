#!/bin/sh
# Builds the serving environment: a virtual environment holding the project with its `serve`
# extra only, from sources without training/, and checks that the training stack (torch and
# friends, and the training package itself) is absent.
# The Dockerfile's serve stage and scripts/serving-image-smoke.sh both run this one script, so
# the smoke test exercises the image's real install steps.
# Usage: build-serve-env.sh VENV_DIR [SOURCE_DIR]   (PYTHON picks the interpreter; default python3)
set -eu

venv=${1:?usage: build-serve-env.sh VENV_DIR [SOURCE_DIR]}
source_dir=${2:-.}
python=${PYTHON:-python3}

"$python" -m venv "$venv"
# Non-editable: the environment must work after the source folder is gone (the image drops it).
"$venv/bin/python" -m pip install --disable-pip-version-check "${source_dir}[serve]"

# -I: isolated, so the check imports the installed packages, never the source folder it runs in.
SOURCE_DIR=$source_dir "$venv/bin/python" -I - <<'EOF'
import importlib.util
import os
import sys
from pathlib import Path

training_stack = ("training", "torch", "onnx", "transformers", "sklearn")
present = [name for name in training_stack if importlib.util.find_spec(name) is not None]
if present:
    sys.exit(f"the serving environment must not contain the training stack, found: {present}")

# Every file of the sources must be in the install: a file that is not Python (a template, a
# static page) reaches it only when pyproject.toml lists it as package data.
source = Path(os.environ["SOURCE_DIR"])
missing = []
for package in ("plant_icd", "model", "service"):
    spec = importlib.util.find_spec(package)
    installed = Path(next(iter(spec.submodule_search_locations)))
    for path in sorted((source / package).rglob("*")):
        relative = path.relative_to(source / package)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
            if not (installed / relative).is_file():
                missing.append(f"{package}/{relative}")
if missing:
    sys.exit(
        "the install lacks files of the sources (list them under "
        f"[tool.setuptools.package-data] in pyproject.toml): {', '.join(missing)}"
    )
import onnxruntime  # noqa: F401
import psycopg  # noqa: F401
import uvicorn  # noqa: F401

import service.main  # noqa: F401

print(f"serving environment ok: onnxruntime {onnxruntime.__version__}, no torch")
EOF
