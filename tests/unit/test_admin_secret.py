"""Secrets adopted from outside (``ALLOTMENT_ADMIN_KEY``): long and plain enough, any shape."""

from __future__ import annotations

import pytest

from allotment import Governor, ValidationError


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("changeme", "16 to 256 characters (got 8)"),
        ("x" * 257, "16 to 256 characters"),
        ("correct horse battery staple", "without spaces"),
        ("tab\tinside-the-secret", "without spaces"),
        ("ak_0123456789ab_short", "at least 16 characters after ak_<id>_"),
    ],
)
def test_weak_secrets_are_refused_naming_secret(secret: str, why: str) -> None:
    with Governor("memory://") as gov, pytest.raises(ValidationError) as info:
        gov.create_first_key(secret)
    assert info.value.field == "secret" and why in info.value.message


@pytest.mark.parametrize(
    ("secret", "key_id"),
    [
        ("ak_0123456789ab_sixteen-chars-ok", "0123456789ab"),  # the ak_ form keeps its id
        ("0123456789abcdef", None),  # `openssl rand -hex 8`
        ("ak_not-key-shaped-but-long", None),
    ],
)
def test_long_plain_secrets_are_adopted(secret: str, key_id: str | None) -> None:
    with Governor("memory://") as gov:
        assert gov.create_first_key(secret) == secret
        key = gov.authenticate(secret)
        assert key is not None and key.role.value == "admin"
        assert key.id == key_id if key_id else len(key.id) == 12
        assert gov.authenticate(secret[:-1]) is None
