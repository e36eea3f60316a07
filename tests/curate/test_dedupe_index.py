"""Near-duplicate search against brute force: exact pairs and groups on random and planted data."""

from __future__ import annotations

import numpy as np
import pytest

from curate.dedupe import index as dedupe_index
from curate.dedupe.index import find_pairs, groups_from_pairs, near_duplicate_groups, pairs_within


def planted(rng: np.random.Generator, n: int, bases: int, max_flips: int = 8) -> np.ndarray:
    """n random hashes plus, for `bases` of them, copies with 1..max_flips random bit flips and exact repeats."""
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    chosen = hashes[rng.choice(n, bases, replace=False)]
    copies = [chosen[: bases // 4]]  # exact duplicates
    for flips in range(1, max_flips + 1):
        copy = chosen.copy()
        for _ in range(flips):
            copy ^= np.uint64(1) << rng.integers(0, 64, size=bases).astype(np.uint64)
        copies.append(copy)
    mixed = np.concatenate([hashes, *copies])
    return mixed[rng.permutation(mixed.size)]


def brute_cross(index: np.ndarray, queries: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    distances = np.bitwise_count(queries[:, None] ^ index[None, :])
    left, right = np.nonzero(distances <= d)
    return left.astype(np.int64), right.astype(np.int64)


def brute_within(hashes: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    left, right = brute_cross(hashes, hashes, d)
    later = right > left
    return left[later], right[later]


def brute_groups(hashes: np.ndarray, d: int) -> np.ndarray:
    """Label propagation to the minimum over the full distance matrix: slow, obviously right."""
    linked = np.bitwise_count(hashes[:, None] ^ hashes[None, :]) <= d
    labels = np.arange(hashes.size)
    while True:
        spread = np.where(linked, labels[None, :], hashes.size).min(axis=1)
        if np.array_equal(spread, labels):
            return labels
        labels = spread


@pytest.fixture(params=["planned", "brute"])
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each comparison through multi-index hashing and through the brute-force fallback."""
    if request.param == "planned":
        monkeypatch.setattr(dedupe_index, "_COST_BRUTE", 1e9)  # the cost model never prefers brute force
    else:
        monkeypatch.setattr(dedupe_index, "_COST_BRUTE", 0.0)  # always brute force
    return request.param


@pytest.mark.parametrize("d", [0, 1, 4, 8, 12])
@pytest.mark.parametrize("n", [50, 1500])
def test_pairs_within_matches_brute_force(strategy: str, d: int, n: int) -> None:
    rng = np.random.default_rng(1000 * d + n)
    hashes = planted(rng, n, max(4, n // 10))
    left, right = pairs_within(hashes, d)
    expected = brute_within(hashes, d)
    assert np.array_equal(left, expected[0])
    assert np.array_equal(right, expected[1])
    assert left.dtype == np.int64 and right.dtype == np.int64


@pytest.mark.parametrize("d", [0, 1, 4, 8, 12])
def test_groups_match_brute_force(strategy: str, d: int) -> None:
    rng = np.random.default_rng(d)
    hashes = planted(rng, 1200, 150)
    groups = near_duplicate_groups(hashes, d)
    assert groups.dtype == np.int64
    assert np.array_equal(groups, brute_groups(hashes, d))
    if d > 0:
        assert np.unique(groups).size < hashes.size  # the planted copies really group


def test_default_plan_matches_brute_force_on_a_larger_set() -> None:
    """The plan the cost model picks by itself, at a size where it uses several chunks and threads."""
    rng = np.random.default_rng(7)
    hashes = planted(rng, 60_000, 3_000)
    plan = dedupe_index._plan(hashes.size, hashes.size, 8, self_join=True)
    assert plan is not None and len(plan) > 1
    left, right = pairs_within(hashes, 8)
    sample = rng.choice(hashes.size, 1_000, replace=False)  # brute force on every pair touching a sample
    expected = set()
    for rows in np.array_split(sample, 10):
        near, cols = np.nonzero(np.bitwise_count(hashes[rows, None] ^ hashes[None, :]) <= 8)
        pairs = zip(rows[near].tolist(), cols.tolist(), strict=True)
        expected |= {(min(a, b), max(a, b)) for a, b in pairs if a != b}
    in_sample = np.isin(left, sample) | np.isin(right, sample)
    found = set(zip(left[in_sample].tolist(), right[in_sample].tolist(), strict=True))
    assert found == expected
    assert len(set(zip(left.tolist(), right.tolist(), strict=True))) == left.size  # no pair twice


def test_chain_groups_transitively() -> None:
    a = np.uint64(0)
    b = np.uint64(0b1111)  # 4 bits from a
    c = np.uint64(0b1111_1111)  # 4 bits from b, 8 from a
    far = np.uint64(2**64 - 1)
    hashes = np.array([far, c, a, b], dtype=np.uint64)
    assert near_duplicate_groups(hashes, 4).tolist() == [0, 1, 1, 1]
    assert near_duplicate_groups(hashes, 3).tolist() == [0, 1, 2, 3]
    left, right = pairs_within(hashes, 4)
    assert list(zip(left.tolist(), right.tolist(), strict=True)) == [(1, 3), (2, 3)]


def test_exact_duplicates_group_and_ids_are_smallest_member() -> None:
    hashes = np.array([5, 9, 5, 2**63, 9, 5], dtype=np.uint64)
    assert near_duplicate_groups(hashes, 0).tolist() == [0, 1, 0, 3, 1, 0]
    left, right = pairs_within(hashes, 0)
    assert list(zip(left.tolist(), right.tolist(), strict=True)) == [(0, 2), (0, 5), (1, 4), (2, 5)]


def test_empty_and_single() -> None:
    empty = np.zeros(0, dtype=np.uint64)
    one = np.array([123], dtype=np.uint64)
    assert near_duplicate_groups(empty, 8).tolist() == []
    assert near_duplicate_groups(one, 8).tolist() == [0]
    assert near_duplicate_groups([], 8).tolist() == []
    for left, right in (
        pairs_within(empty, 8),
        pairs_within(one, 8),
        find_pairs(empty, one, 8),
        find_pairs(one, empty, 8),
    ):
        assert left.size == 0 and right.size == 0
    assert groups_from_pairs(0, [], []).tolist() == []
    assert groups_from_pairs(3, [], []).tolist() == [0, 1, 2]


@pytest.mark.parametrize("d", [0, 2, 8, 12])
def test_find_pairs_with_separate_index_and_queries(strategy: str, d: int) -> None:
    rng = np.random.default_rng(50 + d)
    index = planted(rng, 1500, 100)
    mirrored = index[rng.choice(index.size, 300, replace=False)]  # variants of indexed hashes...
    for _ in range(3):
        mirrored ^= np.uint64(1) << rng.integers(0, 64, size=mirrored.size).astype(np.uint64)
    queries = np.concatenate([mirrored, rng.integers(0, 2**64, size=200, dtype=np.uint64)])  # ...and strangers
    left, right = find_pairs(index, queries, d)
    expected_left, expected_right = brute_cross(index, queries, d)
    assert np.array_equal(left, expected_left)
    assert np.array_equal(right, expected_right)
    if d >= 3:
        assert np.unique(left).size >= 300


def test_accepts_int64_views_and_other_integer_dtypes() -> None:
    rng = np.random.default_rng(3)
    hashes = planted(rng, 500, 60)
    hashes[0] = np.uint64(2**64 - 1)  # negative as int64
    hashes[1] = np.uint64(2**64 - 2)
    expected = near_duplicate_groups(hashes, 6)
    assert np.array_equal(near_duplicate_groups(hashes.view(np.int64), 6), expected)
    assert expected[1] == 0
    assert np.array_equal(pairs_within(hashes.view(np.int64), 6)[0], pairs_within(hashes, 6)[0])
    left, _ = find_pairs(hashes.view(np.int64), hashes[:50].view(np.int64), 6)
    assert np.array_equal(left, find_pairs(hashes, hashes[:50], 6)[0])
    small = np.array([1, 3, 200], dtype=np.uint8)
    assert near_duplicate_groups(small, 1).tolist() == [0, 0, 2]
    assert near_duplicate_groups([1, 3, 200], 1).tolist() == [0, 0, 2]
    with pytest.raises(TypeError):
        near_duplicate_groups(np.array([1.5, 2.0]), 1)
    with pytest.raises(ValueError):
        near_duplicate_groups(np.zeros((2, 2), dtype=np.uint64), 1)
    with pytest.raises(ValueError):
        near_duplicate_groups(hashes, -1)


def test_large_distance_groups_everything() -> None:
    rng = np.random.default_rng(4)
    hashes = rng.integers(0, 2**64, size=40, dtype=np.uint64)
    assert near_duplicate_groups(hashes, 64).tolist() == [0] * 40
    assert pairs_within(hashes, 100)[0].size == 40 * 39 // 2


def test_groups_from_pairs_numpy_path_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    left = rng.integers(0, n, size=2500)
    right = rng.integers(0, n, size=2500)
    path = np.arange(0, n, 7)  # a long path, so components need many hooks
    left = np.concatenate([left, path[:-1]])
    right = np.concatenate([right, path[1:]])
    expected = groups_from_pairs(n, left, right)
    assert np.array_equal(dedupe_index._components_numpy(n, left, right), expected)
    assert np.all(expected <= np.arange(n))
    assert np.all(expected[expected] == expected)  # ids are members, and the smallest one


def test_edge_folding_keeps_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """With tiny budgets the pair graph is folded into a forest many times, in tasks and overall; groups hold."""
    rng = np.random.default_rng(6)
    center = rng.integers(0, 2**64, dtype=np.uint64)
    dense = np.full(400, center, dtype=np.uint64)  # a dense cluster: most pairs within distance 8
    for _ in range(3):
        dense ^= np.uint64(1) << rng.integers(0, 64, size=dense.size).astype(np.uint64)
    hashes = np.concatenate([planted(rng, 2000, 300), dense])
    expected = brute_groups(hashes, 8)
    assert np.array_equal(near_duplicate_groups(hashes, 8), expected)
    monkeypatch.setattr(dedupe_index, "_COST_BRUTE", 1e9)
    for name, value in (("_EDGE_LIMIT", 10), ("_TASK_EDGE_LIMIT", 5), ("_CANDIDATE_BLOCK", 64), ("_PROBE_BLOCK", 256)):
        monkeypatch.setattr(dedupe_index, name, value)
    assert np.array_equal(near_duplicate_groups(hashes, 8), expected)
    left, right = pairs_within(hashes, 8)  # pairs are never folded
    assert np.array_equal(np.stack([left, right]), np.stack(brute_within(hashes, 8)))


def test_threads_give_the_same_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    hashes = planted(rng, 3000, 300)
    monkeypatch.setattr(dedupe_index, "_COST_BRUTE", 1e9)
    monkeypatch.setattr(dedupe_index, "_PROBE_BLOCK", 512)
    monkeypatch.setattr(dedupe_index, "_PARALLEL_MIN", 10**9)
    serial = pairs_within(hashes, 8)
    serial_cross = find_pairs(hashes, hashes[::3], 8)
    monkeypatch.setattr(dedupe_index, "_PARALLEL_MIN", 0)
    assert np.array_equal(np.stack(pairs_within(hashes, 8)), np.stack(serial))
    assert np.array_equal(np.stack(find_pairs(hashes, hashes[::3], 8)), np.stack(serial_cross))
