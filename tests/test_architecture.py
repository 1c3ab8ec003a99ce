"""The layer contracts in pyproject.toml ([tool.importlinter]) hold for this tree, and they break
when a module crosses a layer: each deliberate bad import below, written into a copy of the
sources, must make `lint-imports` fail and name the contract and the import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("plant_icd", "model", "training", "service")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the tree at `root` (its pyproject.toml, its packages first on the path)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layer_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " kept, 0 broken." in result.stdout, result.stdout


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and pyproject.toml, copied: the bad imports go into the copy."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


BAD_IMPORTS = [
    # (module written into the copy, its import, the contract it must break)
    ("service/leak.py", "import torch", "the service never imports training"),
    ("service/api/leak.py", "from training import plant", "the service never imports training"),
    ("model/leak.py", "from service import main", "the model layer never imports training"),
    ("model/leak.py", "import torch", "the model runtime (model outside model.nn)"),
    # Indirectly: the runtime reaching the torch subpackage is torch by another name.
    ("model/leak.py", "from model.nn import network", "the model runtime (model outside model.nn)"),
    ("training/leak.py", "from service import cli", "training never imports the service"),
]


@pytest.mark.parametrize(("module", "statement", "contract"), BAD_IMPORTS)
def test_a_bad_import_breaks_its_contract(
    source_copy: Path, module: str, statement: str, contract: str
) -> None:
    leak = source_copy / module
    leak.write_text(f'"""A deliberate layer violation."""\n\n{statement}\n', encoding="utf-8")
    try:
        result = lint_imports(source_copy)
    finally:
        leak.unlink()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    dotted = module.removesuffix(".py").replace("/", ".")
    broken = output.split("Broken contracts", 1)[-1]
    assert contract in broken, output
    assert dotted in broken, output
