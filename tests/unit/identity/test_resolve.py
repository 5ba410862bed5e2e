"""Canonical ids over alias mappings: chains, compression, cycles."""

from __future__ import annotations

import pytest

from processors.identity import MergeCycleError, add_alias, compress, resolve


def test_an_unknown_id_is_its_own_canonical_id() -> None:
    assert resolve("a", {}) == "a"


def test_a_chain_resolves_in_one_call() -> None:
    aliases = {"a": "b", "b": "c"}
    assert [resolve(x, aliases) for x in "abc"] == ["c", "c", "c"]


def test_compress_points_every_alias_at_its_root() -> None:
    assert compress({"a": "b", "b": "c", "d": "c", "e": "a"}) == {
        "a": "c",
        "b": "c",
        "d": "c",
        "e": "c",
    }


def test_a_cyclic_mapping_is_refused_naming_the_loop() -> None:
    with pytest.raises(MergeCycleError) as caught:
        resolve("a", {"a": "b", "b": "c", "c": "a"})
    assert caught.value.path == ("a", "b", "c", "a")
    assert "a -> b -> c -> a" in str(caught.value)


def test_a_self_alias_is_a_cycle() -> None:
    with pytest.raises(MergeCycleError):
        resolve("a", {"a": "a"})


def test_add_alias_keeps_the_mapping_compressed() -> None:
    aliases = add_alias({"a": "b"}, "b", "c")
    assert aliases == {"a": "c", "b": "c"}
    assert add_alias(aliases, "c", "d") == {"a": "d", "b": "d", "c": "d"}


def test_add_alias_targets_the_root_of_the_canonical_id() -> None:
    assert add_alias({"b": "c"}, "a", "b") == {"a": "c", "b": "c"}


def test_an_alias_that_would_close_a_loop_is_refused() -> None:
    aliases = {"a": "b", "b": "c"}
    with pytest.raises(MergeCycleError) as caught:
        add_alias(aliases, "c", "a")
    assert caught.value.path == ("c", "a", "c")
    assert aliases == {"a": "b", "b": "c"}  # never changed in place
    with pytest.raises(MergeCycleError):
        add_alias({}, "a", "a")


def test_adding_an_existing_alias_again_changes_nothing() -> None:
    assert add_alias({"a": "c", "b": "c"}, "a", "b") == {"a": "c", "b": "c"}
