"""The operators' scripts: splitting a real feedback export for retraining, creating the compose
secrets, and shellcheck over every shell script."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
from pathlib import Path
from types import ModuleType

import pytest

from service.core.config import Settings, read_api_keys_file
from service.core.security import hash_key
from service.db import admin
from tests.deploy.deploy_testing import DEPLOY, SCRIPTS, VENV_BIN, run, tool
from tests.service.service_testing import API_KEYS, headers, running_service
from training.corpora import load_corpus


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


split_export = load(SCRIPTS / "split_feedback_export.py")


def export_line(note_id: str | int, codes: list[str]) -> str:
    return json.dumps({"id": note_id, "text": f"note {note_id}", "codes": codes})


def test_split_is_a_partition_in_export_order(tmp_path: Path):
    lines = [export_line(f"note-{index}", ["R05"]) for index in range(400)]
    by_split = split_export.split_lines(lines, dev_fraction=0.15)
    assert sorted(by_split["train"] + by_split["dev"]) == sorted(lines)
    for split_lines in by_split.values():
        assert split_lines == [line for line in lines if line in split_lines]  # order kept
    # 400 notes at 15 %: 60 expected, binomial sd about 7; far outside 3 sd is a broken hash.
    assert 39 <= len(by_split["dev"]) <= 81


def test_a_later_export_keeps_every_note_in_its_split():
    first = [export_line(f"note-{index}", ["I10"]) for index in range(100)]
    later = [*first[::-1], *(export_line(f"new-{index}", ["I10"]) for index in range(100))]
    before = split_export.split_lines(first, dev_fraction=0.2)
    after = split_export.split_lines(later, dev_fraction=0.2)
    for split in ("train", "dev"):
        assert set(before[split]) <= set(after[split])
    # The salt moves notes between splits (a new draw), still a partition.
    salted = split_export.split_lines(first, dev_fraction=0.2, salt="2025")
    assert salted["dev"] != before["dev"]
    assert len(salted["dev"]) + len(salted["train"]) == 100


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "is not JSON"),
        ('{"text": "x", "codes": []}', 'has no string "id"'),
        ('{"id": true, "text": "x", "codes": []}', 'has no string "id"'),
        ('{"id": "a", "codes": []}', 'needs "text"'),
    ],
)
def test_a_malformed_export_line_is_named(line: str, message: str):
    with pytest.raises(split_export.ExportError, match=f"^export line 2 {re.escape(message)}"):
        split_export.split_lines([export_line("ok", []), line], dev_fraction=0.5)


def test_repeated_ids_are_refused():
    with pytest.raises(split_export.ExportError, match=r"^export line 2 repeats id '7'$"):
        split_export.split_lines([export_line(7, []), export_line("7", [])], dev_fraction=0.5)


def test_the_service_export_becomes_a_training_corpus(tiny_bundle: Path, tmp_path: Path):
    """Predict and review notes in the real service, export them, split, read as training does."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    admin.upgrade(url)
    settings = Settings(
        bundle_dir=tiny_bundle, database_url=url, api_keys=API_KEYS, log_level="WARNING"
    )
    with running_service(settings) as service:
        for index in range(30):
            prediction = service.predict(f"Fever and cough, note {index}.")
            reviewed = service.feedback(
                prediction["prediction_id"],
                ("R50.9", "accepted"),
                ("I10", "added"),
                undecided="reject",
            )
            assert reviewed.status_code == 201, reviewed.text
        exported = service.http.get("/v1/feedback/export", headers=headers("admin"))
    assert exported.status_code == 200
    export = tmp_path / "feedback.jsonl"
    export.write_text(exported.text, encoding="utf-8")

    out = tmp_path / "corpus"
    assert split_export.main([str(export), str(out), "--dev-fraction", "0.5"]) == 0
    train = load_corpus("jsonl", out, "train")
    dev = load_corpus("jsonl", out, "dev")
    assert len(train) + len(dev) == 30 and train and dev
    assert {document.id for document in train}.isdisjoint(document.id for document in dev)
    for document in [*train, *dev]:
        assert set(document.codes) == {"R50.9", "I10"}
        assert document.text.startswith("Fever and cough, note ")


def test_compose_secrets_are_created_once_and_readable_by_the_service(tmp_path: Path):
    plant_icd = VENV_BIN / "plant-icd"
    if not plant_icd.exists():
        pytest.skip("plant-icd is not installed in this environment")
    secrets = tmp_path / "secrets"
    env = {**os.environ, "PLANT_ICD_BIN": str(plant_icd)}
    command = ["bash", str(SCRIPTS / "compose-secrets.sh"), str(secrets)]
    first = run(command, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for name in ("db_password", "grafana_admin_password", "api-keys.json"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o644, name
    password = (secrets / "db_password").read_text(encoding="utf-8").strip()
    assert len(password) >= 40  # 32 random bytes, URL-safe base64
    keys = read_api_keys_file(secrets / "api-keys.json")
    assert [(key.name, key.role) for key in keys] == [("ehr-gateway", "ehr"), ("admin", "admin")]
    printed = [
        line[len("key: ") :] for line in first.stdout.splitlines() if line.startswith("key: ")
    ]
    assert [hash_key(key) for key in printed] == [key.sha256 for key in keys]
    # Production settings accept the file (the service would start with it).
    assert Settings(environment="production", api_keys_file=secrets / "api-keys.json").auth_enabled

    before = {path.name: path.read_bytes() for path in secrets.iterdir()}
    second = run(command, timeout=120, env=env)
    assert second.returncode == 0, second.stderr
    assert {path.name: path.read_bytes() for path in secrets.iterdir()} == before
    assert second.stdout.count("kept") == 3


def test_shell_scripts_pass_shellcheck():
    shellcheck = tool("shellcheck")
    scripts = sorted([*SCRIPTS.glob("*.sh"), *(DEPLOY / "docker").glob("*.sh")])
    assert len(scripts) >= 4
    result = run([shellcheck, *map(str, scripts)])
    assert result.returncode == 0, result.stdout + result.stderr
    for script in scripts:
        assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
