"""Payload fingerprints: stable, and tolerant of what JSON cannot hold."""

from __future__ import annotations

import hashlib

from allotment.core.ledger import payload_hash, same_payload


def test_fingerprint_is_stable_and_tells_payloads_apart() -> None:
    parts = ("authorize", ("acme", "u1", None, ()), "openai", "gpt-4o", (1, 2, None))
    assert payload_hash(*parts) == payload_hash(*parts)
    # pinned: fingerprints are kept in databases, so they may never drift
    assert payload_hash(*parts) == "0b9720f33d54077cf214a8480399db11"
    assert payload_hash(*parts) != payload_hash("authorize", ("acme", "u1", None, ()), "x")


def test_a_lone_surrogate_still_has_a_fingerprint() -> None:
    assert len(payload_hash("record", ("acme", "\ud800"))) == 32


def test_fingerprints_of_earlier_versions_still_match() -> None:
    parts = ("commit", (5, 0, None), "success", None, None)
    old = hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()
    assert same_payload(old, payload_hash(*parts), parts)
    assert not same_payload(old, payload_hash("commit", (6,)), ("commit", (6,)))
    assert not same_payload(None, payload_hash(*parts), parts)
