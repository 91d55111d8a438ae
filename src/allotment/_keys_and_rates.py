"""The Governor's API keys and exchange rates, kept apart from the call lifecycle.

``Governor`` inherits these; they need only its store, clock and key cache.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal

from allotment.core.fx import FxRate
from allotment.core.keys import ApiKey, Role, hash_secret, new_secret, secret_matches, split_secret
from allotment.core.subjects import check_text, parse_subject
from allotment.errors import NotFoundError, ValidationError
from allotment.store import Store

__all__ = ["KeysAndRates"]

_KEY_CACHE = timedelta(seconds=30)
#: the shortest secret adopted from outside (``ALLOTMENT_ADMIN_KEY``): 16 characters
#: of printable text, at least 16 x 6 bits from a password generator
_MIN_SECRET = 16
_MAX_SECRET = 256


class KeysAndRates:
    """API keys (for the HTTP service) and exchange rates (for cost budgets)."""

    store: Store
    _keys: dict[str, tuple[ApiKey, datetime]]

    def now(self) -> datetime:
        """The current time (the Governor's clock)."""
        raise NotImplementedError

    # API keys
    def create_key(
        self,
        role: str,
        tenant: str | None = None,
        name: str | None = None,
        secret: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its secret, which is shown only this once.

        Every role but ``admin`` belongs to one tenant. ``secret`` adopts a
        given secret (``ALLOTMENT_ADMIN_KEY``) instead of a new one: an
        ``ak_<12 hex>_<16+ characters>`` key, or any 16 to 256 printable
        characters without spaces (its key id is then derived from a hash).
        """
        key, secret, digest = self._new_key(role, tenant, name, secret)
        self.store.create_key(key, digest)
        return key, secret

    def create_first_key(self, secret: str | None = None) -> str | None:
        """An admin key if the store has no keys at all (its secret), else None.

        One check-and-insert transaction: of several processes starting at
        once on an empty database, exactly one creates it.
        """
        key, secret, digest = self._new_key("admin", None, "bootstrap", secret)
        return secret if self.store.create_first_key(key, digest) else None

    def _new_key(
        self, role: str, tenant: str | None, name: str | None, secret: str | None
    ) -> tuple[ApiKey, str, str]:
        parsed = _role(role)
        check_text(name, "name", limit=256)
        if parsed is Role.ADMIN and tenant is not None:
            raise ValidationError("tenant", "an admin key belongs to no tenant")
        if parsed is not Role.ADMIN:
            parse_subject({"tenant": tenant})
        if secret is None:
            key_id, secret, digest = new_secret()
        else:
            key_id, digest = _adopted_id(secret), hash_secret(secret)
        return ApiKey(key_id, parsed, tenant, self.now(), name), secret, digest

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Keys of ``tenant`` (None: all)."""
        return self.store.list_keys(tenant)

    def revoke_key(self, key_id: str, *, tenant: str | None = None) -> ApiKey:
        """Revoke a key; with ``tenant``, only one of that tenant's."""
        found = self.store.find_key(key_id)
        if found is None or (tenant is not None and found[0].tenant != tenant):
            raise NotFoundError(f"no key with id {key_id!r}")
        key = found[0]
        key.revoked_at = key.revoked_at or self.now()
        self.store.update_key(key)
        self._keys = {d: c for d, c in self._keys.items() if c[0].id != key_id}
        return key

    def authenticate(self, secret: str) -> ApiKey | None:
        """The live key ``secret`` belongs to, or None; notes its use once a minute.

        A key that authenticated is remembered for 30 seconds, so the service
        keeps answering (fail-open budgets) while the store is unreachable. A
        revocation takes effect at once in the revoking process, within 30
        seconds in the others.
        """
        now = self.now()
        digest = hash_secret(secret)
        cached = self._keys.get(digest)
        if cached is not None and now - cached[1] < _KEY_CACHE:
            return cached[0]
        found = self.store.find_key(key_id_of(secret))
        if found is None or not secret_matches(secret, found[1]) or found[0].revoked_at:
            self._keys.pop(digest, None)
            return None
        key = found[0]
        if key.last_used_at is None or now - key.last_used_at >= timedelta(minutes=1):
            key.last_used_at = now
            self.store.update_key(key)
        self._keys[digest] = (key, now)
        return key

    # exchange rates
    def set_rate(
        self,
        source: str,
        target: str,
        rate: Decimal | str,
        effective_from: datetime | None = None,
    ) -> FxRate:
        """Set ``1 source = rate target`` from ``effective_from`` (default: now).

        Rates live in the store, so every process and every rebuild converts
        alike; cost budgets in either currency are recounted.
        """
        spec = {"source": source, "target": target, "rate": rate,
                "effective_from": effective_from or self.now()}  # fmt: skip
        parsed = FxRate.from_spec(spec)
        self.store.put_rate(parsed)
        return parsed

    def rates(self) -> list[FxRate]:
        """Every exchange rate, by pair and effective time."""
        return self.store.rates()


def key_id_of(secret: str) -> str:
    """The id of the key ``secret`` would be: the one inside ``ak_<id>_…``, else derived.

    Keys are stored hashed, so a secret chosen outside (``ALLOTMENT_ADMIN_KEY=…``
    without the ``ak_`` form) needs an id that can be found again from the
    secret alone: 12 hex digits of a SHA-256 of it, which say no more about the
    secret than the stored hash does.
    """
    return split_secret(secret) or hashlib.sha256(b"key-id:" + secret.encode()).hexdigest()[:12]


def _adopted_id(secret: object) -> str:
    """The key id of a secret adopted from outside, once it is long and plain enough."""
    if not isinstance(secret, str):
        raise ValidationError("secret", "must be a string")
    if not _MIN_SECRET <= len(secret) <= _MAX_SECRET:
        raise ValidationError(
            "secret",
            f"must be {_MIN_SECRET} to {_MAX_SECRET} characters (got {len(secret)}); "
            "use a generated one, e.g. `openssl rand -hex 16`",
        )
    if not secret.isprintable() or any(c.isspace() for c in secret):
        raise ValidationError("secret", "must be printable characters without spaces")
    key_id = split_secret(secret)
    if key_id is not None and len(secret) - len(f"ak_{key_id}_") < _MIN_SECRET:
        raise ValidationError("secret", f"needs at least {_MIN_SECRET} characters after ak_<id>_")
    return key_id or key_id_of(secret)


def _role(role: object) -> Role:
    try:
        return Role(str(role))
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise ValidationError("role", f"unknown role {role!r} (one of {choices})") from None
