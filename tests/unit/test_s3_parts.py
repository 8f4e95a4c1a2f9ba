"""The part arithmetic of the S3 store: 5 MiB minimum, 5 GiB maximum, 10,000 parts."""

from __future__ import annotations

import itertools

import pytest

from pytusd.stores.s3.parts import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    GiB,
    MiB,
    PartLimitError,
    Piece,
    TiB,
    part_size,
    plan_concatenation,
    tail_becomes_part,
)

PREFERRED = 50 * MiB


def parts_needed(size: int, preferred: int) -> int:
    """Split ``size`` bytes the way the store does (one full part after the other)."""
    stored = count = 0
    while stored < size:
        stored += min(part_size(size, stored, count, preferred), size - stored)
        count += 1
    return count


# -- part_size --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, PREFERRED - 1, PREFERRED, 100 * GiB, PREFERRED * MAX_PARTS])
def test_preferred_size_while_it_fits(size: int) -> None:
    assert part_size(size, 0, 0, PREFERRED) == PREFERRED


def test_part_size_grows_beyond_preferred_to_fit_10000_parts() -> None:
    size = PREFERRED * MAX_PARTS + 1
    chosen = part_size(size, 0, 0, PREFERRED)
    assert chosen == PREFERRED + 1  # ceil(size / 10,000)
    assert chosen * MAX_PARTS >= size
    assert (chosen - 1) * MAX_PARTS < size


@pytest.mark.parametrize(
    "size",
    [PREFERRED * MAX_PARTS + 1, 1 * TiB, 3 * TiB + 12345, MAX_OBJECT_SIZE - 1, MAX_OBJECT_SIZE],
)
def test_largest_uploads_fit_in_10000_parts(size: int) -> None:
    first = part_size(size, 0, 0, 5 * MiB)
    assert MIN_PART_SIZE <= first <= MAX_PART_SIZE
    assert -(-size // first) <= MAX_PARTS


def test_a_5_tib_upload_with_the_minimum_preferred_size() -> None:
    assert part_size(MAX_OBJECT_SIZE, 0, 0, MIN_PART_SIZE) == -(-MAX_OBJECT_SIZE // MAX_PARTS)


def test_the_rest_is_spread_over_the_parts_that_remain() -> None:
    # 9,990 parts of 5 MiB are stored; 1 GiB remains for 10 parts.
    stored = 9_990 * 5 * MiB
    chosen = part_size(stored + GiB, stored, 9_990, 5 * MiB)
    assert chosen == -(-GiB // 10)


def test_too_large_for_the_parts_left() -> None:
    with pytest.raises(PartLimitError):
        part_size(10 * GiB + 1, 0, MAX_PARTS - 2, 5 * MiB)  # 2 parts of at most 5 GiB
    with pytest.raises(PartLimitError):
        part_size(None, 0, MAX_PARTS, 5 * MiB)


def test_deferred_length_parts_double_every_1000() -> None:
    assert part_size(None, 0, 0, 5 * MiB) == 5 * MiB
    assert part_size(None, 0, 999, 5 * MiB) == 5 * MiB
    assert part_size(None, 0, 1000, 5 * MiB) == 10 * MiB
    assert part_size(None, 0, 9_999, 5 * MiB) == min(5 * MiB << 9, MAX_PART_SIZE)
    assert part_size(None, 0, 9_999, 50 * MiB) == MAX_PART_SIZE  # capped


def test_deferred_length_schedule_reaches_about_5_tib() -> None:
    capacity = sum(part_size(None, 0, n, MIN_PART_SIZE) for n in range(MAX_PARTS))
    assert capacity > 4.85 * TiB  # 1023 x 1000 x 5 MiB
    assert sum(part_size(None, 0, n, 50 * MiB) for n in range(MAX_PARTS)) > MAX_OBJECT_SIZE


@pytest.mark.parametrize("size", [1, 5 * MiB, 5 * MiB + 1, 123 * MiB + 7, 600 * GiB, 5 * TiB])
def test_every_non_last_part_is_at_least_5_mib(size: int) -> None:
    count = parts_needed(size, 5 * MiB) if size <= 123 * MiB + 7 else -(-size // part_size(size, 0, 0, 5 * MiB))
    assert count <= MAX_PARTS
    assert part_size(size, 0, 0, 5 * MiB) >= MIN_PART_SIZE


# -- tail_becomes_part --------------------------------------------------------------------------


def test_small_tail_stays_in_the_incomplete_part() -> None:
    assert not tail_becomes_part(MIN_PART_SIZE - 1, 100 * MiB, 0, 0, PREFERRED)
    assert not tail_becomes_part(1, None, 0, 0, PREFERRED)


def test_tail_of_the_minimum_size_becomes_a_part_when_there_is_room() -> None:
    assert tail_becomes_part(MIN_PART_SIZE, 100 * MiB, 0, 0, PREFERRED)
    assert tail_becomes_part(MIN_PART_SIZE, None, 0, 0, PREFERRED)


def test_tail_waits_when_parts_run_short() -> None:
    # 1,000 GB left for 9,000 parts needs ~111 MB per part: a 6 MiB part would crowd the rest.
    size = 1000 * GiB
    assert not tail_becomes_part(6 * MiB, size, 0, 1_000, PREFERRED)
    # ...but with plenty of parts left it may go up.
    assert tail_becomes_part(6 * MiB, 10 * GiB, 0, 1_000, PREFERRED)


def test_deferred_tail_becomes_part_only_in_the_first_1000() -> None:
    assert tail_becomes_part(6 * MiB, None, 0, 999, PREFERRED)
    assert not tail_becomes_part(6 * MiB, None, 0, 1000, PREFERRED)


def test_last_part_number_is_never_spent_on_a_tail() -> None:
    assert not tail_becomes_part(6 * MiB, 10 * 6 * MiB, 0, MAX_PARTS - 1, 5 * MiB)


# -- plan_concatenation ---------------------------------------------------------------------------


def assert_valid_plan(sizes: list[int], plan: list[list[Piece]], min_part: int = MIN_PART_SIZE) -> None:
    """The plan covers every byte once, in order, and obeys S3's part rules."""
    covered = [(p.source, p.start, p.end) for part in plan for p in part]
    expected_pos = {i: 0 for i in range(len(sizes))}
    order = []
    for source, start, end in covered:
        assert start == expected_pos[source], "pieces must be contiguous"
        assert end > start
        expected_pos[source] = end
        order.append(source)
    assert order == sorted(order), "sources must appear in order"
    assert all(expected_pos[i] == size for i, size in enumerate(sizes))
    for index, part in enumerate(plan):
        length = sum(p.length for p in part)
        assert length <= MAX_PART_SIZE
        if index < len(plan) - 1:
            assert length >= min_part, f"part {index + 1} of {length} bytes is too small"
        if len(part) > 1:
            assert length <= min_part, "assembled parts are at most the minimum size"


def test_large_partials_are_copied_whole() -> None:
    sizes = [6 * MiB, 5 * MiB, 100]
    plan = plan_concatenation(sizes)
    assert plan == [[Piece(0, 0, 6 * MiB)], [Piece(1, 0, 5 * MiB)], [Piece(2, 0, 100)]]


def test_small_last_partial_is_copied() -> None:
    assert plan_concatenation([7 * MiB, 3]) == [[Piece(0, 0, 7 * MiB)], [Piece(1, 0, 3)]]


def test_small_partials_are_topped_up_from_the_next() -> None:
    sizes = [1000, 8 * MiB]
    plan = plan_concatenation(sizes)
    assert plan == [
        [Piece(0, 0, 1000), Piece(1, 0, 5 * MiB - 1000)],
        [Piece(1, 5 * MiB - 1000, 8 * MiB)],
    ]
    assert_valid_plan(sizes, plan)


def test_only_small_partials_and_top_ups_are_assembled() -> None:
    sizes = [1 * MiB, 6 * MiB, 2 * MiB, 3 * MiB, 20 * MiB, 10]
    plan = plan_concatenation(sizes)
    assert_valid_plan(sizes, plan)
    assembled = [part for part in plan if len(part) > 1]
    # Each assembled part is at most 5 MiB (checked above); the big partial is mostly copied.
    assert len(assembled) == 3
    copied = [part[0] for part in plan if len(part) == 1]
    assert Piece(4, 3 * MiB, 20 * MiB) in copied and Piece(5, 0, 10) in copied


def test_empty_partials_are_skipped() -> None:
    assert plan_concatenation([0, 0]) == []
    assert plan_concatenation([0, 10, 0]) == [[Piece(1, 0, 10)]]


def test_huge_partial_is_split_at_5_gib() -> None:
    plan = plan_concatenation([12 * GiB])
    assert [len(part) for part in plan] == [1, 1, 1]
    assert all(part[0].length <= MAX_PART_SIZE for part in plan)
    assert_valid_plan([12 * GiB], plan)


def test_too_many_parts() -> None:
    with pytest.raises(PartLimitError):
        plan_concatenation([MIN_PART_SIZE] * (MAX_PARTS + 1))


@pytest.mark.parametrize(
    "sizes",
    [list(p) for p in itertools.product([0, 1, 4 * MiB, 5 * MiB, 9 * MiB + 1], repeat=3)]
    + [[1] * 50, [3 * MiB] * 7, [1, 11 * GiB, 1, 1]],
)
def test_every_plan_obeys_the_rules(sizes: list[int]) -> None:
    assert_valid_plan(sizes, plan_concatenation(sizes))
