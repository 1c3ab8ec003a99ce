"""The neutral `plant-icd` root: it lists every command without importing training or the
service, loads a group only when it runs, and names the extra a group lacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from plant_icd.cli import MOUNTS, Mount, install_hint, missing_modules

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
sys.argv = ["plant-icd", *{args!r}]
from plant_icd import cli
try:
    cli.main()
except SystemExit:
    roots = {{name.split(".")[0] for name in sys.modules}}
    loaded = sorted(roots & {{"training", "service", "torch"}})
    print("LOADED", ",".join(loaded), file=sys.stderr)
    raise
"""


def run_root(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """`plant-icd ARGS` with no PLANT_ICD_* variables but `variables`."""
    environ = {name: value for name, value in os.environ.items() if "PLANT_ICD_" not in name}
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(args=list(args))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**environ, **variables, "PYTHONPATH": str(REPO)},
    )


def loaded(result: subprocess.CompletedProcess[str]) -> str:
    return next(line for line in result.stderr.splitlines() if line.startswith("LOADED")).strip()


def test_help_lists_every_group_and_imports_none() -> None:
    result = run_root("--help")
    assert result.returncode == 0, result.stderr
    for name in MOUNTS:
        assert f"  {name} " in result.stdout
    assert loaded(result) == "LOADED"


def test_a_service_command_loads_the_service_alone() -> None:
    result = run_root("keys", "--help")
    assert result.returncode == 0, result.stderr
    assert "create" in result.stdout
    assert loaded(result) == "LOADED service"


def test_a_training_command_loads_training_but_not_torch() -> None:
    result = run_root("evaluate", "--help")
    assert result.returncode == 0, result.stderr
    assert "--format" in result.stdout
    assert loaded(result) == "LOADED training"


def test_an_unknown_command_is_refused() -> None:
    result = run_root("fly")
    assert result.returncode == 2
    assert "No such command 'fly'" in result.stderr


def test_a_missing_dependency_names_the_extra() -> None:
    mount = Mount("service.cli", "app", "serve", "serve", ("fastapi", "no_such_module_xyz"), "h")
    assert missing_modules(mount) == ["no_such_module_xyz"]
    assert install_hint("serve", mount, ["no_such_module_xyz"]) == (
        "install plant-icd[serve] to use serve (this install lacks no_such_module_xyz)"
    )
    base = Mount("training.cli", "app", "evaluate", None, ("training",), "h")
    assert install_hint("evaluate", base, ["training"]).startswith("install plant-icd to use")


def test_a_misspelt_variable_is_named_with_the_closest_known_one() -> None:
    result = run_root("--help", PLANT_ICD_BUNDLE_DRI="bundles/demo")
    assert result.returncode == 0, result.stderr
    assert (
        "warning: PLANT_ICD_BUNDLE_DRI is set but plant-icd reads no such variable; did you mean "
        "PLANT_ICD_BUNDLE_DIR?"
    ) in result.stderr


def test_every_mounted_command_loads() -> None:
    """Each mount resolves to its command, whether its app is a group or a single command
    (`quantize` is one; it once failed to load from the root)."""
    from plant_icd.cli import load_command

    for name, mount in MOUNTS.items():
        if missing_modules(mount):
            continue
        command = load_command(mount)
        assert command.name == mount.command, name
