"""Keyed names for addresses: nothing in ids, masks or records leads back to a number without the key."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.domain.pseudonyms import Pseudonyms

KEY = "a-deployment-key-of-32-bytes-...."
ADDRESS = "whatsapp:+34600123456"
PREFIX = "whatsapp:+34600"  # a realistic block: one operator prefix, every 6-digit subscriber


def enumerate_block() -> list[str]:
    return [f"{PREFIX}{n:06d}" for n in range(1_000_000)]


def test_a_million_numbers_do_not_reverse_an_id_or_a_mask_without_the_key() -> None:
    names = Pseudonyms(KEY)
    target_id = names.conversation_id(ADDRESS)
    target_tag = names.mask(ADDRESS).partition("#")[2]
    block = enumerate_block()
    # What an attacker without the key can compute: unkeyed hashes (what ids used to be).
    assert not any(hashlib.sha256(a.encode()).hexdigest() == target_id for a in block)
    assert not any(hashlib.sha256(a.encode()).hexdigest()[:10] == target_tag for a in block)
    # A guessed key does not help either.
    guess = Pseudonyms("a-guessed-key-that-is-not-ours!!")
    assert not any(guess.conversation_id(a) == target_id for a in block[:200_000])


def test_with_the_key_the_same_enumeration_finds_it() -> None:
    """The enumeration above is a real attack: with the key it succeeds, so its failure means something."""
    names = Pseudonyms(KEY)
    target_id = names.conversation_id(ADDRESS)
    key = KEY.encode()
    found = [a for a in enumerate_block() if hmac.new(key, b"conversation\x00" + a.encode(), hashlib.sha256).hexdigest() == target_id]
    assert found == [ADDRESS]


def test_ids_and_masks_are_stable_distinct_and_unlinkable() -> None:
    names = Pseudonyms(KEY)
    assert names.conversation_id(ADDRESS) == Pseudonyms(KEY).conversation_id(ADDRESS)
    assert names.conversation_id(ADDRESS) != names.conversation_id("whatsapp:+34600123457")
    assert names.conversation_id(ADDRESS) != Pseudonyms(KEY + "x").conversation_id(ADDRESS)
    tag = names.mask(ADDRESS).partition("#")[2]
    assert tag not in names.conversation_id(ADDRESS), "a mask must not be a prefix of the document id"
    assert names.mask(ADDRESS).startswith("whatsapp:#") and not any(c.isdigit() for c in names.mask(ADDRESS)[:10])


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        Pseudonyms("short")
