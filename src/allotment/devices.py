"""Device ids are stored hashed (user system 3: a desktop app's machine ids).

A subject's ``device`` is replaced, before anything is stored or compared,
by ``d_`` and 32 hex digits of an HMAC-SHA256 under a secret kept in the
store's ``meta`` table. Every process and instance on the same store shares
that secret, so the same device always hashes alike: per-device budgets,
``match: {device: ...}`` selectors and status queries keep working on the
hashed value, while the ledger, reservations and counters never hold the
raw id (and without the secret a hash cannot be matched against guesses).

A value that already has the hashed form is taken as it is, so an operator
can copy a device id from the ledger into a status query or a budget.
Device selectors must name exact ids: a glob cannot match a hash.
Device ids in events written before hashing existed stay as they were.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable
from dataclasses import replace

from allotment.core.budgets import Budget, Selector
from allotment.core.subjects import Subject
from allotment.errors import ValidationError

__all__ = ["SECRET_NAME", "DeviceIds"]

#: the ``meta`` key of the shared secret
SECRET_NAME = "device_id_key"
_HASHED = re.compile(r"d_[0-9a-f]{32}")
_CACHE_SIZE = 4096


class DeviceIds:
    """Hashes device ids with a secret fetched from the store on first use."""

    def __init__(self, secret: Callable[[], str]) -> None:
        self._secret = secret
        self._key: bytes | None = None
        self._lock = threading.Lock()
        self._known: dict[str, str] = {}

    def hide(self, device: str) -> str:
        """The stored form of ``device``."""
        hidden = self._known.get(device)
        if hidden is not None:
            return hidden
        if _HASHED.fullmatch(device):
            return device
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._secret().encode()
        digest = hmac.new(self._key, device.encode(), hashlib.sha256).hexdigest()
        hidden = f"d_{digest[:32]}"
        if len(self._known) >= _CACHE_SIZE:
            self._known.clear()
        self._known[device] = hidden
        return hidden

    def subject(self, subject: Subject) -> Subject:
        """``subject`` with its device id hidden (the same object when it has none)."""
        if subject.device is None:
            return subject
        return replace(subject, device=self.hide(subject.device))

    def budget(self, budget: Budget) -> Budget:
        """``budget`` with the device ids of its selectors hidden."""
        match = self._selector(budget.match, "match")
        exclude = self._selector(budget.exclude, "exclude")
        if match == budget.match and exclude == budget.exclude:
            return budget
        return replace(budget, match=match, exclude=exclude)

    def _selector(self, selector: Selector, field: str) -> Selector:
        out = []
        for dimension, values in selector:
            if dimension == "device":
                for value in values:
                    if "*" in value or "?" in value:
                        raise ValidationError(
                            f"{field}.device",
                            "device ids are stored hashed: name exact ids, not patterns",
                        )
                values = tuple(self.hide(value) for value in values)
            out.append((dimension, values))
        return tuple(out)
