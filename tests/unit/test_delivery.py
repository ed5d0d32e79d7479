"""The lost / duplicated / reordered count the fault suite and the benchmark both rely on."""

from devstack.delivery import Damage, count_damage


def test_a_perfect_delivery_has_no_damage() -> None:
    assert count_damage(["a", "b", "c"], ["a", "b", "c"]) == Damage(0, 0, 0)


def test_each_kind_of_damage_is_counted() -> None:
    assert count_damage(["a", "b", "c"], ["a", "c"]) == Damage(lost=1, duplicated=0, reordered=0)
    assert count_damage(["a", "b"], ["a", "a", "b", "b", "b"]) == Damage(lost=0, duplicated=3, reordered=0)
    assert count_damage(["a", "b", "c"], ["b", "a", "c"]) == Damage(lost=0, duplicated=0, reordered=1)


def test_a_late_duplicate_is_a_duplicate_not_a_reordering() -> None:
    assert count_damage(["a", "b"], ["a", "b", "a"]) == Damage(lost=0, duplicated=1, reordered=0)


def test_unexpected_markers_are_ignored() -> None:
    assert count_damage(["a"], ["x", "a", "x"]) == Damage(0, 0, 0)
