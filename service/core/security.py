"""API keys: generating them, hashing them and finding the caller a presented key belongs to.

Only sha256 hashes are configured; a presented key is hashed and compared with every configured
hash in constant time, so neither the key nor which entry matched leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from service.core.config import ApiKey, Role

KEY_PREFIX = "picd_"
MISSING_KEY_MESSAGE = "no API key: send it as `X-API-Key: <key>` or `Authorization: Bearer <key>`"
UNKNOWN_KEY_MESSAGE = "unknown API key: check the key, or ask an administrator for one"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the configured key's name (recorded as `client`) and its role."""

    name: str
    role: Role

    def may(self, roles: tuple[Role, ...]) -> bool:
        # admin may do everything.
        return self.role == "admin" or self.role in roles


# The caller in development when no keys are configured (see Settings.auth_enabled).
DEVELOPMENT_PRINCIPAL = Principal(name="development", role="admin")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    """A new random key: 256 bits from the OS generator, URL-safe, with a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyRing:
    """The configured keys, looked up by presented secret."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = [(bytes.fromhex(key.sha256), key) for key in keys]

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: ApiKey | None = None
        # No early exit: every entry is compared, whichever matches.
        for stored, key in self._keys:
            if hmac.compare_digest(stored, digest):
                found = key
        return None if found is None else Principal(name=found.name, role=found.role)
