"""API keys: who may call the service, for which tenant, with which role.

A key is shown once, as ``ak_<id>_<secret>``; only a SHA-256 of the secret is
stored, so a stolen database does not yield usable keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["ApiKey", "Role", "hash_secret", "new_secret", "secret_matches", "split_secret"]


class Role(StrEnum):
    """What a key may do."""

    ADMIN = "admin"  # everything, every tenant
    TENANT_ADMIN = "tenant_admin"  # everything within its tenant
    SERVICE = "service"  # authorize, commit, release, events, status for its tenant
    VIEWER = "viewer"  # read-only within its tenant


@dataclass(slots=True)
class ApiKey:
    """A stored key (never its secret). ``tenant`` is None only for admin keys."""

    id: str
    role: Role
    tenant: str | None
    created_at: datetime
    name: str | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def to_dict(self) -> dict[str, str | None]:
        """JSON-safe form (no secret)."""
        return {
            "id": self.id,
            "role": self.role.value,
            "tenant": self.tenant,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
            "last_used_at": None if self.last_used_at is None else self.last_used_at.isoformat(),
        }


def new_secret() -> tuple[str, str, str]:
    """A fresh key: (id, full secret to show once, hash to store)."""
    key_id = secrets.token_hex(6)
    secret = f"ak_{key_id}_{secrets.token_urlsafe(24)}"
    return key_id, secret, hash_secret(secret)


def split_secret(secret: str) -> str | None:
    """The key id inside ``ak_<id>_<secret>``, or None if it is not shaped like one."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != "ak" or len(parts[1]) != 12:
        return None
    return parts[1]


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
