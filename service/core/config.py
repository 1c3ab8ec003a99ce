"""The service's one typed configuration: every setting, its `PLANT_ICD_` variable and its checks.

Nothing reads the environment anywhere else. `Settings()` reads it; tests pass values directly.
Outside development, insecure defaults (no API keys, a CORS wildcard) are refused at start-up.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

Role = Literal["ehr", "coder", "admin"]
ROLES: tuple[Role, ...] = ("ehr", "coder", "admin")
Environment = Literal["development", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ApiKey(BaseModel):
    """One client's key as configured: its name, its role and the sha256 of the secret."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex sha256 of the key")


def read_api_keys_file(path: Path) -> list[ApiKey]:
    """The keys in a JSON file holding a list of {name, role, sha256}; errors name the file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"API keys file {path} does not exist: create it with `plant-icd keys create "
            "--name NAME --role ROLE --keys-file PATH`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"API keys file {path} is not readable JSON: {error}") from None
    if not isinstance(raw, list):
        raise ValueError(f"API keys file {path} must hold a JSON list of {{name, role, sha256}}")
    keys = []
    for index, entry in enumerate(raw):
        try:
            keys.append(ApiKey.model_validate(entry))
        except ValidationError as error:
            raise ValueError(f"API keys file {path} entry {index} is invalid: {error}") from None
    return keys


# scheme://host[:port], nothing after: what a browser sends as Origin.
_ORIGIN = re.compile(r"^(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def origin_problem(origin: str, *, production: bool) -> str | None:
    """Why `origin` may not be an allowed CORS origin, or None when it may.

    Browsers send `Origin: null` from sandboxed frames and files, and a pattern such as
    `http://*` would admit every site: neither identifies a deployment, so both are refused.
    """
    if origin == "*":
        return None if not production else "contains '*', which admits every site: list the origins"
    match = _ORIGIN.match(origin)
    if match is None:
        return (
            f"{origin!r} is not an origin: write scheme://host[:port] (http or https, no path, "
            "no wildcard, not 'null'), e.g. https://coding.example.org"
        )
    scheme, host = match.group(1), match.group(2).lower()
    if production and scheme != "https" and host not in _LOOPBACK_HOSTS:
        return f"{origin!r} is plain http: production allows only https origins (or loopback)"
    return None


def normalize_database_url(url: str) -> str:
    """A SQLAlchemy URL, with bare PostgreSQL URLs pointed at psycopg 3."""
    # psycopg 3 is the driver the serve extra installs; a bare postgres URL would ask for
    # psycopg2, which is not there.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    try:
        make_url(url)
    except Exception as error:
        raise ValueError(f"database_url {url!r} is not a SQLAlchemy URL: {error}") from None
    return url


class Settings(BaseSettings):
    """Service settings; each field `x` is read from the variable `PLANT_ICD_X`."""

    model_config = SettingsConfigDict(env_prefix="PLANT_ICD_", extra="forbid")

    bundle_dir: Path = Field(
        default=Path("bundles/demo"),
        description="model bundle directory (model.onnx, bundle.json, ...)",
    )
    database_url: str = Field(
        default="sqlite:///./plant_icd.db",
        description="SQLAlchemy URL; PostgreSQL as postgresql+psycopg://user:pass@host/db",
    )
    store_note_text: bool = Field(
        default=True, description="store note text with each prediction; when false only its sha256"
    )
    max_note_chars: int = Field(
        default=100_000, ge=1, description="longest note accepted (413 above)"
    )
    max_batch_notes: int = Field(default=32, ge=1, description="most notes in one batch call")
    default_top_k: int = Field(
        default=10, ge=1, le=1000, description="codes returned when top_k unset"
    )
    inference_threads: int | None = Field(
        default=None,
        ge=1,
        description="cores one inference uses: ONNX Runtime intra-op threads, one fewer with a "
        "fused bundle, whose fusion's Python runs beside the graph (unset: every core)",
    )
    max_concurrent_inferences: int = Field(
        default=2, ge=1, description="inferences run at once; further requests wait"
    )
    inference_token_budget: int = Field(
        default=8192,
        ge=1,
        description="most note tokens (notes x padded length) in one inference call: bounds the "
        "model's working memory; larger batches run as several calls",
    )
    max_tokens_in_flight: int = Field(
        default=262_144,
        ge=1,
        description="most note tokens admitted for inference at once (running and waiting, "
        "estimated as min(characters, the bundle's max_tokens) per note); past it 503 with "
        "Retry-After",
    )
    api_keys: list[ApiKey] = Field(
        default_factory=list, description="JSON list of {name, role, sha256}"
    )
    api_keys_file: Path | None = Field(
        default=None, description="JSON file with a list of {name, role, sha256}, added to api_keys"
    )
    environment: Environment = "development"
    cors_origins: list[str] = Field(
        default_factory=list, description="JSON list of allowed origins; empty: CORS closed"
    )
    metrics_enabled: bool = Field(default=True, description="serve Prometheus metrics at /metrics")
    log_level: LogLevel = "INFO"
    db_connect_timeout_seconds: int = Field(
        default=5, ge=1, description="give up connecting to the database after this long"
    )
    db_statement_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=600,
        description="longest one database statement may run (PostgreSQL statement_timeout; "
        "SQLite: the wait for the write lock)",
    )
    db_pool_timeout_seconds: float = Field(
        default=5,
        gt=0,
        le=600,
        description="longest a request waits for a free database connection",
    )
    readiness_timeout_seconds: float = Field(
        default=1.5,
        gt=0,
        le=30,
        description="/readyz answers 503 when the database has not answered within this long",
    )
    min_note_tokens: int = Field(
        default=3,
        ge=0,
        description="fewest tokens with letters the model knows for a note to get codes above "
        "threshold; below it the response abstains and says why (0: never abstain)",
    )
    idempotency_window_hours: int = Field(
        default=24,
        ge=1,
        description="how long an Idempotency-Key is remembered: a retry within it returns the "
        "original predictions; after it the same key starts a new request",
    )
    auth_failures_per_minute: int = Field(
        default=20,
        ge=1,
        description="unknown API keys accepted per client address per minute; then 429 with "
        "Retry-After until the minute has passed",
    )
    retry_after_seconds: int = Field(
        default=5,
        ge=1,
        description="Retry-After sent with 503 while the database or model is not ready",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("cors_origins")
    @classmethod
    def _well_formed_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            problem = origin_problem(origin, production=False)
            if problem is not None:
                raise ValueError(problem)
        return origins

    @model_validator(mode="after")
    def _keys_and_environment(self) -> Settings:
        if self.api_keys_file is not None:
            self.api_keys = [*self.api_keys, *read_api_keys_file(self.api_keys_file)]
        names = [key.name for key in self.api_keys]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"API key names must be unique; repeated: {duplicates}")
        hashes = [key.sha256 for key in self.api_keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two API keys share one sha256: give each client its own key")
        if self.environment != "development":
            problems = []
            if not self.api_keys:
                problems.append(
                    "no API keys are configured (set PLANT_ICD_API_KEYS_FILE; create keys with "
                    "`plant-icd keys create`)"
                )
            for origin in self.cors_origins:
                problem = origin_problem(origin, production=True)
                if problem is not None:
                    problems.append(f"PLANT_ICD_CORS_ORIGINS: {problem}")
            if problems:
                raise ValueError(
                    f"refusing insecure settings for environment={self.environment!r}: "
                    + "; ".join(problems)
                )
        return self

    @property
    def auth_enabled(self) -> bool:
        """False only in development with no keys configured: every caller is then admin."""
        return bool(self.api_keys)

    @property
    def redacted_database_url(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)


PREFIX = "PLANT_ICD_"
# PLANT_ICD_* variables that are not settings: the corpus location the commands read, the
# entrypoint's database password file, the tests' PostgreSQL, and the compose file's own.
OTHER_VARIABLES = frozenset(
    {
        "PLANT_ICD_CODIESP",
        "PLANT_ICD_DATABASE_PASSWORD_FILE",
        "PLANT_ICD_TEST_POSTGRES_URL",
        "PLANT_ICD_IMAGE",
        "PLANT_ICD_BUNDLE_HOST_DIR",
        "PLANT_ICD_PORT",
        "PLANT_ICD_SECRETS_DIR",
        "PLANT_ICD_BIN",
    }
)


def known_variables() -> frozenset[str]:
    """Every PLANT_ICD_* name something reads: each setting, its `_FILE` form (the container
    entrypoint's secret files), and OTHER_VARIABLES."""
    settings = {f"{PREFIX}{name.upper()}" for name in Settings.model_fields}
    return frozenset(settings | {f"{name}_FILE" for name in settings} | OTHER_VARIABLES)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each PLANT_ICD_* variable that is set but read by nothing, naming the
    closest known one (a misspelt setting is otherwise silently ignored)."""
    known = known_variables()
    warnings = []
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in known:
            continue
        closest = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {closest[0]}?" if closest else ""
        warnings.append(f"{name} is set but plant-icd reads no such variable{hint}")
    return warnings
