"""The Dockerfile and .dockerignore read as an engine would: stages and targets, a non-root user,
the /readyz HEALTHCHECK, the serving install without torch, no secrets in the image or context."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field

import pytest

from model.bundle import GRAPH_FILE, METADATA_FILE, TOKENIZER_FILE
from tests.deploy.deploy_testing import DEPLOY, REPO, SCRIPTS, run, tool

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args_of(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (name -> default) and the stages in order; continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0]))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, found {line!r}"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, args.strip()))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage], list[str]]:
    global_args, stages = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    return global_args, {stage.name: stage for stage in stages}, [stage.name for stage in stages]


def test_targets_and_default(dockerfile: tuple[dict[str, str], dict[str, Stage], list[str]]):
    global_args, stages, order = dockerfile
    assert {"train", "serve"} <= set(stages)
    # `docker build .` builds the last stage: it must be the slim serving image.
    assert order[-1] == "serve"
    # The bundle is mounted or baked in, chosen by a build argument.
    assert global_args["BUNDLE_SOURCE"] == "mount"
    assert stages["serve"].base == "bundle-${BUNDLE_SOURCE}"
    assert {"bundle-mount", "bundle-baked"} <= set(stages)
    assert stages["bundle-baked"].args_of("COPY") == ["${BUNDLE_DIR}/ /srv/bundle/"]
    assert stages["bundle-mount"].args_of("COPY") == []
    # The training image's base is a build argument (a CUDA base), CPU torch by default.
    assert stages["train"].base == "${TRAIN_BASE}"
    train_args = dict(arg.partition("=")[::2] for arg in stages["train"].args_of("ARG"))
    assert train_args["TORCH_INDEX_URL"].endswith("/whl/cpu")


@pytest.mark.parametrize("target", ["serve", "train"])
def test_images_run_as_non_root(
    target: str, dockerfile: tuple[dict[str, str], dict[str, Stage], list[str]]
):
    _, stages, _ = dockerfile
    users = stages[target].args_of("USER")
    assert users, f"{target} sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000


def test_healthcheck_polls_readyz_with_python(
    dockerfile: tuple[dict[str, str], dict[str, Stage], list[str]],
):
    _, stages, _ = dockerfile
    serve = stages["serve"]
    (healthcheck,) = serve.args_of("HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command == ["python", "/usr/local/bin/plant-icd-healthcheck"]
    # The script copied there is deploy/docker/healthcheck.py, polling /readyz on the CMD's port.
    assert "deploy/docker/healthcheck.py /usr/local/bin/plant-icd-healthcheck" in (
        stages["serve-base"].args_of("COPY")
    )
    env = " ".join(stages["serve-base"].args_of("ENV"))
    assert "HEALTHCHECK_URL=http://127.0.0.1:8000/readyz" in env
    (cmd,) = serve.args_of("CMD")
    assert json.loads(cmd)[-2:] == ["--port", "8000"]
    assert serve.args_of("EXPOSE") == ["8000"]
    healthcheck_source = (DEPLOY / "docker" / "healthcheck.py").read_text(encoding="utf-8")
    assert 'DEFAULT_URL = "http://127.0.0.1:8000/readyz"' in healthcheck_source


def test_serving_environment_is_built_by_the_smoke_tested_script(
    dockerfile: tuple[dict[str, str], dict[str, Stage], list[str]],
):
    _, stages, _ = dockerfile
    assert stages["serve-build"].args_of("RUN") == [
        "sh /usr/local/bin/build-serve-env /opt/venv /tmp/src"
    ]
    install = (DEPLOY / "docker" / "build-serve-env.sh").read_text(encoding="utf-8")
    assert '"${source_dir}[serve]"' in install
    assert "[train" not in install and "torch==" not in install
    assert '"torch"' in install  # the install fails if torch is importable


def _copied(stage: Stage) -> set[str]:
    return {
        source.rstrip("/") for args in stage.args_of("COPY") for source in shlex.split(args)[:-1]
    }


def test_smoke_script_copies_what_the_serve_source_stage_copies(
    dockerfile: tuple[dict[str, str], dict[str, Stage], list[str]],
):
    _, stages, _ = dockerfile
    copied = _copied(stages["serve-source"])
    smoke = (SCRIPTS / "serving-image-smoke.sh").read_text(encoding="utf-8")
    smoke_copied = set(re.findall(r'"\$repo/([A-Za-z_.]+)"', smoke.split("find ")[0]))
    # The serving image ships no training code; the training image adds it.
    assert copied == {"pyproject.toml", "README.md", "plant_icd", "model", "service"}
    assert smoke_copied == copied
    assert stages["source"].base == "serve-source"
    assert _copied(stages["source"]) == {"training"}
    assert "COPY --from=serve-source /src /tmp/src" in "\n".join(
        f"COPY {args}" for args in stages["serve-build"].args_of("COPY")
    )


def test_no_secret_is_built_into_an_image():
    text = DOCKERFILE.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        assert not re.search(r"(PASSWORD|SECRET|TOKEN|API_KEYS?)\w*=", line, re.IGNORECASE), line
    # Nothing of deploy/compose/secrets/ (or a keys file, or a database) enters the context.
    assert not is_in_build_context("deploy/compose/secrets/db_password")
    assert not is_in_build_context("deploy/compose/secrets/api-keys.json")
    assert not is_in_build_context("keys.json")
    assert not is_in_build_context("plant_icd.db")
    assert not is_in_build_context(".git/config")


def is_in_build_context(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern that matches decides (`!` re-includes)."""
    included = True
    for raw in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            included = negate
    return included


def test_build_context_holds_the_sources_and_bundle_files():
    for path in ("pyproject.toml", "service/main.py", "deploy/docker/entrypoint.py"):
        assert is_in_build_context(path), path
    # A bundle to bake in (BUNDLE_SOURCE=baked) is exactly the files the bundle format names.
    for name in (GRAPH_FILE, TOKENIZER_FILE, METADATA_FILE):
        assert is_in_build_context(f"bundles/codiesp-d-en/{name}"), name
    assert not is_in_build_context("bundles/codiesp-d-en/work/cache.pt")
    assert not is_in_build_context("runs/plant-d-en.log")
    assert not is_in_build_context(".venv/bin/python")


def test_hadolint_passes():
    hadolint = tool("hadolint")
    result = run([hadolint, str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_parse_dockerfile_joins_continuations():
    global_args, stages = parse_dockerfile(
        "ARG A=1\nFROM x AS one\n# comment\nRUN a \\\n    && b\nFROM one\nUSER 1\n"
    )
    assert global_args == {"A": "1"}
    assert [(stage.name, stage.base) for stage in stages] == [("one", "x"), ("1", "one")]
    assert stages[0].instructions == [("RUN", "a && b")]


def test_dockerignore_rule_matches_docker_semantics():
    # Hand-checked against Docker's documented behaviour: last match wins.
    assert is_in_build_context("model/bundle.py")
    assert not is_in_build_context("tests/deploy/test_deploy_dockerfile.py")
    assert not is_in_build_context("service/__pycache__/main.cpython-311.pyc")
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # deny by default: a new file never slips into the context
