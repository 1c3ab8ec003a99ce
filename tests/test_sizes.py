"""Size limits that keep the code readable: every function in model/ and training/ is under 80
lines, and no source file of the packages is over 500 lines (split a module before it gets
there)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FUNCTION_PACKAGES = ("model", "training")
FILE_PACKAGES = ("plant_icd", "model", "training", "service")
MAX_FUNCTION_LINES = 79
MAX_FILE_LINES = 500


def sources(packages: tuple[str, ...]) -> list[Path]:
    return sorted(path for package in packages for path in (REPO / package).rglob("*.py"))


def long_functions(path: Path, limit: int, root: Path = REPO) -> list[str]:
    """'file:line name (N lines)' for each function or method longer than `limit` lines, its
    decorators not counted; the file named relative to `root`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_every_function_in_model_and_training_is_under_80_lines() -> None:
    too_long = [
        item
        for path in sources(FUNCTION_PACKAGES)
        for item in long_functions(path, MAX_FUNCTION_LINES)
    ]
    assert not too_long, "split these functions: " + "; ".join(too_long)


def test_no_source_file_is_over_500_lines() -> None:
    too_long = [
        f"{path.relative_to(REPO)} ({count} lines)"
        for path in sources(FILE_PACKAGES)
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    ]
    assert not too_long, "split these modules: " + "; ".join(too_long)


def test_the_limits_catch_a_long_function(tmp_path: Path) -> None:
    module = tmp_path / "long.py"
    body = "\n".join(f"    x{index} = {index}" for index in range(80))
    module.write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n", encoding="utf-8")
    assert long_functions(module, MAX_FUNCTION_LINES, tmp_path) == ["long.py:5 long (81 lines)"]
