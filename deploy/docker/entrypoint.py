"""Container entrypoint: turns secret files into PLANT_ICD_* settings, then runs the command.

`PLANT_ICD_<SETTING>_FILE=/run/secrets/x` sets `PLANT_ICD_<SETTING>` to the file's contents (the
usual `_FILE` convention of container images), and `PLANT_ICD_DATABASE_PASSWORD_FILE` puts a
password into `PLANT_ICD_DATABASE_URL`, so secrets live in mounted files, never in the image.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path

PREFIX = "PLANT_ICD_"
SUFFIX = "_FILE"
# Not a setting: the database password alone, shared with the PostgreSQL container's own
# POSTGRES_PASSWORD_FILE, so one secret file serves both.
PASSWORD_VARIABLE = "PLANT_ICD_DATABASE_PASSWORD_FILE"
DEFAULT_COMMAND = ("plant-icd", "serve", "--host", "0.0.0.0", "--port", "8000")


class EntrypointError(Exception):
    """A misconfigured secret variable; the message says which and what to do."""


def setting_names() -> frozenset[str]:
    """The settings' field names (lower case), read from the one Settings class."""
    from service.core.config import Settings

    return frozenset(Settings.model_fields)


def _read_secret(variable: str, path: str) -> str:
    try:
        # A trailing newline is how editors and `echo` end files; it is never part of a secret.
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise EntrypointError(
            f"{variable}={path}: cannot read the secret file ({error.strerror}); mount it or "
            "unset the variable"
        ) from None


def _with_password(url: str, password: str) -> str:
    from sqlalchemy.engine import make_url

    from service.core.config import normalize_database_url

    parsed = make_url(normalize_database_url(url))
    if parsed.password:
        raise EntrypointError(
            f"{PASSWORD_VARIABLE} is set but PLANT_ICD_DATABASE_URL already holds a password: "
            "keep the password in one place"
        )
    return parsed.set(password=password).render_as_string(hide_password=False)


def resolve_secret_files(
    environ: Mapping[str, str], settings: frozenset[str] | None = None
) -> dict[str, str]:
    """The variables to add to `environ`: one per `PLANT_ICD_<SETTING>_FILE`, plus the URL."""
    names = setting_names() if settings is None else settings
    resolved: dict[str, str] = {}
    for variable in sorted(environ):
        if not (variable.startswith(PREFIX) and variable.endswith(SUFFIX)):
            continue
        if variable == PASSWORD_VARIABLE:
            continue
        field = variable[len(PREFIX) : -len(SUFFIX)].lower()
        if f"{field}_file" in names:
            continue  # e.g. PLANT_ICD_API_KEYS_FILE: a setting whose value is a path
        if field not in names:
            raise EntrypointError(
                f"{variable} names no setting: PLANT_ICD_{field.upper()} is not one "
                "(see the configuration reference in docs/OPERATIONS.md)"
            )
        target = PREFIX + field.upper()
        if target in environ:
            raise EntrypointError(f"both {target} and {variable} are set: keep one")
        resolved[target] = _read_secret(variable, environ[variable])
    if PASSWORD_VARIABLE in environ:
        url = resolved.get("PLANT_ICD_DATABASE_URL", environ.get("PLANT_ICD_DATABASE_URL"))
        if not url:
            raise EntrypointError(
                f"{PASSWORD_VARIABLE} is set without PLANT_ICD_DATABASE_URL: set the URL "
                "without its password, e.g. postgresql+psycopg://plant_icd@postgres:5432/plant_icd"
            )
        password = _read_secret(PASSWORD_VARIABLE, environ[PASSWORD_VARIABLE])
        resolved["PLANT_ICD_DATABASE_URL"] = _with_password(url, password)
    return resolved


def main(argv: Sequence[str], environ: MutableMapping[str, str]) -> int:
    command = list(argv) or list(DEFAULT_COMMAND)
    try:
        environ.update(resolve_secret_files(environ))
    except EntrypointError as error:
        print(f"plant-icd entrypoint: error: {error}", file=sys.stderr)
        return 2
    os.execvp(command[0], command)  # replaces this process: signals reach the server directly
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
