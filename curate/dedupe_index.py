"""Exact near-duplicate search over 64-bit perceptual hashes, well below quadratic time.

Why: comparing every pair of a million hashes means 5·10^11 popcounts, hours in numpy. Multi-index hashing
(Norouzi et al., "Fast search in Hamming space with multi-index hashing") splits the 64 bits into chunks. If the
chunks partition the bits and the per-chunk radii satisfy sum(radius + 1) > max_distance, then by pigeonhole any
pair within max_distance differs in at most `radius` bits in at least one chunk. So each chunk gets a dense bucket
table (counting sort on the chunk key), every query looks up only the buckets whose key is within the chunk's
radius of its own, and each candidate is verified with a popcount of the full 64 bits. The answer is exact: no
false negatives (pigeonhole), no false positives (verification), and each pair is reported once (a pair belongs to
the first chunk that finds it, and within a chunk to the single mask equal to the pair's key difference).

A small cost model picks the number of chunks for the input size and distance, or falls back to blocked brute
force when that is cheaper (tiny inputs, large distances). Work proceeds in blocks so memory stays bounded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["find_pairs", "groups_from_pairs", "near_duplicate_groups", "pairs_within"]

_PROBE_BLOCK = 1 << 20  # (query, mask) lookups per step
_CANDIDATE_BLOCK = 1 << 21  # candidates verified per step
_BRUTE_BLOCK = 1 << 22  # pairs compared per brute-force step
_EDGE_LIMIT = 1 << 23  # edges held by near_duplicate_groups before it folds them into a spanning forest
_MAX_KEY_BITS = 24  # dense bucket table of at most 2^24 + 1 int64 offsets (128 MiB)

# Cost model, in nanoseconds per operation, measured with numpy on a 2-core x86 machine. Only the ratios matter.
_COST_PROBE = 6.0  # one bucket lookup
_COST_CANDIDATE = 12.0  # one candidate expanded and verified
_COST_SORT = 120.0  # one index item placed in one chunk's table
_COST_TABLE = 1.0  # one bucket of a dense table built
_COST_BRUTE = 2.5  # one pair compared by brute force

Pairs = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Chunk:
    """One chunk of the partition: the key is `bits` bits starting at bit `shift`; probe within `radius`."""

    shift: int
    bits: int
    radius: int
    masks_by_top_bit: dict[int, np.ndarray] = field(repr=False)  # non-zero masks grouped by their highest bit

    @property
    def key_mask(self) -> int:
        return (1 << self.bits) - 1

    def keys(self, hashes: np.ndarray) -> np.ndarray:
        return ((hashes >> np.uint64(self.shift)) & np.uint64(self.key_mask)).astype(np.intp)

    def all_masks(self) -> np.ndarray:
        return np.concatenate([np.zeros(1, dtype=np.intp), *self.masks_by_top_bit.values()])


def _masks(bits: int, radius: int) -> dict[int, np.ndarray]:
    grouped: dict[int, list[int]] = {}
    for weight in range(1, min(radius, bits) + 1):
        for positions in itertools.combinations(range(bits), weight):
            grouped.setdefault(max(positions), []).append(sum(1 << p for p in positions))
    return {top: np.array(values, dtype=np.intp) for top, values in sorted(grouped.items())}


def _ball(bits: int, radius: int) -> int:
    return sum(math.comb(bits, k) for k in range(min(radius, bits) + 1))


def _layouts(max_distance: int, key_cap: int) -> Iterator[list[tuple[int, int, int]]]:
    """Candidate partitions as (shift, key bits, radius) per chunk, for 1..max_distance+1 chunks."""
    for count in range(1, min(max_distance + 1, 64) + 1):
        widths = [64 // count + (1 if c < 64 % count else 0) for c in range(count)]
        base, extra = divmod(max_distance + 1, count)
        layout, shift = [], 0
        for c, width in enumerate(widths):
            layout.append((shift, min(width, key_cap), base - 1 + (1 if c < extra else 0)))
            shift += width
        yield layout


def _layout_cost(layout: list[tuple[int, int, int]], n_index: int, n_queries: int, self_join: bool) -> float:
    cost = 0.0
    for _, bits, radius in layout:
        ball = _ball(bits, radius)
        probes = n_queries * ((ball + 1) / 2 if self_join else ball)
        candidates = probes * n_index / 2.0**bits
        cost += probes * _COST_PROBE + candidates * _COST_CANDIDATE + n_index * _COST_SORT + 2.0**bits * _COST_TABLE
    return cost


def _plan(n_index: int, n_queries: int, max_distance: int, self_join: bool) -> list[_Chunk] | None:
    """The cheapest chunk layout, or None when blocked brute force is cheaper."""
    pairs = n_index * n_queries / (2 if self_join else 1)
    best, best_cost = None, pairs * _COST_BRUTE
    if max_distance >= 64:
        return None
    key_cap = min(_MAX_KEY_BITS, max(8, int(n_index).bit_length() + 1))
    for layout in _layouts(max_distance, key_cap):
        cost = _layout_cost(layout, n_index, n_queries, self_join)
        if cost < best_cost:
            best, best_cost = layout, cost
    if best is None:
        return None
    return [_Chunk(shift, bits, radius, _masks(bits, radius)) for shift, bits, radius in best]


@dataclass
class _Table:
    """One chunk's dense bucket table over the index: positions sorted by key, bucket offsets, sorted hashes."""

    order: np.ndarray
    keys: np.ndarray
    hashes: np.ndarray
    starts: np.ndarray
    occupied: np.ndarray

    @classmethod
    def build(cls, chunk: _Chunk, hashes: np.ndarray) -> _Table:
        keys = chunk.keys(hashes)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        counts = np.bincount(sorted_keys, minlength=1 << chunk.bits)
        starts = np.zeros(counts.size + 1, dtype=np.intp)
        np.cumsum(counts, out=starts[1:])
        return cls(order, sorted_keys, hashes[order], starts, counts > 0)


def _verify(
    query_hashes: np.ndarray,
    rows: np.ndarray,
    first: np.ndarray,
    counts: np.ndarray,
    table: _Table,
    max_distance: int,
    earlier: list[_Chunk],
) -> Iterator[Pairs]:
    """Check probe hits (a run of `counts` table positions from `first`) and keep the true pairs.

    Yields (row into query_hashes, sorted table position). Most buckets hold one entry, so the first entry of
    every run is checked directly and only the rest of longer runs is expanded.
    """
    if rows.size == 0:
        return
    yield from _check(query_hashes, rows, first, table, max_distance, earlier)
    longer = np.flatnonzero(counts > 1)
    if longer.size == 0:
        return
    rows, first, counts = rows[longer], first[longer] + 1, counts[longer] - 1
    totals = np.cumsum(counts)
    start = 0
    while start < rows.size:
        done = totals[start - 1] if start else 0
        stop = max(int(np.searchsorted(totals, done + _CANDIDATE_BLOCK, side="right")), start + 1)
        piece_counts = counts[start:stop]
        piece_ends = totals[start:stop] - done
        candidates = np.repeat(first[start:stop] - (piece_ends - piece_counts), piece_counts)
        candidates += np.arange(candidates.size, dtype=np.intp)
        sources = np.repeat(rows[start:stop], piece_counts)
        yield from _check(query_hashes, sources, candidates, table, max_distance, earlier)
        start = stop


def _check(
    query_hashes: np.ndarray,
    sources: np.ndarray,
    candidates: np.ndarray,
    table: _Table,
    max_distance: int,
    earlier: list[_Chunk],
) -> Iterator[Pairs]:
    """Keep candidate pairs within max_distance that no earlier chunk finds (so every pair is reported once)."""
    xor = query_hashes.take(sources) ^ table.hashes.take(candidates)
    hits = np.flatnonzero(np.bitwise_count(xor) <= max_distance)
    if hits.size == 0:
        return
    xor = xor[hits]
    keep = np.ones(hits.size, dtype=bool)
    for chunk in earlier:  # keys are non-negative, so bitwise_count counts their set bits
        keep &= np.bitwise_count(chunk.keys(xor)) > chunk.radius
    hits = hits[keep]
    yield sources[hits], candidates[hits]


def _probe(table: _Table, query_keys: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Look up every (mask, query) bucket; return (query row, first table position, count) of non-empty ones.

    A compact occupancy table (one byte per bucket) filters the misses before the wider offset table is read.
    """
    probe = (masks[:, None] ^ query_keys[None, :]).ravel()
    hit = np.flatnonzero(table.occupied.take(probe))
    probe = probe.take(hit)
    first = table.starts.take(probe)
    counts = table.starts.take(probe + 1) - first
    return hit % query_keys.size, first, counts


def _iter_self(hashes: np.ndarray, max_distance: int) -> Iterator[Pairs]:
    """Every i < j pair within max_distance, in batches."""
    n = hashes.size
    plan = _plan(n, n, max_distance, self_join=True)
    if plan is None:
        yield from _brute(hashes, hashes, max_distance, self_join=True)
        return
    for number, chunk in enumerate(plan):
        table = _Table.build(chunk, hashes)
        earlier = plan[:number]
        # Same bucket: pair each position with the later positions of its bucket.
        positions = np.arange(n, dtype=np.intp)
        for start in range(0, n, _PROBE_BLOCK):
            block = positions[start : start + _PROBE_BLOCK]
            counts = table.starts[table.keys[block] + 1] - block - 1
            hit = np.flatnonzero(counts)
            found = _verify(table.hashes, block[hit], block[hit] + 1, counts[hit], table, max_distance, earlier)
            for left, right in found:
                yield _ordered(table.order[left], table.order[right])
        # Other buckets: a pair whose keys differ by mask is probed only from the side whose key lacks the mask's
        # top bit, so it is seen once.
        for top, masks in chunk.masks_by_top_bit.items():
            side = np.flatnonzero(((table.keys >> top) & 1) == 0)
            step = max(1, _PROBE_BLOCK // masks.size)
            for start in range(0, side.size, step):
                block = side[start : start + step]
                rows, first, counts = _probe(table, table.keys[block], masks)
                found = _verify(table.hashes, block[rows], first, counts, table, max_distance, earlier)
                for left, right in found:
                    yield _ordered(table.order[left], table.order[right])


def _iter_cross(index: np.ndarray, queries: np.ndarray, max_distance: int) -> Iterator[Pairs]:
    """Every (query, index) pair within max_distance, in batches."""
    plan = _plan(index.size, queries.size, max_distance, self_join=False)
    if plan is None:
        yield from _brute(queries, index, max_distance, self_join=False)
        return
    for number, chunk in enumerate(plan):
        table = _Table.build(chunk, index)
        earlier = plan[:number]
        masks = chunk.all_masks()
        # Queries in key order make the bucket lookups of one mask touch nearby memory.
        query_order = np.argsort(chunk.keys(queries), kind="stable")
        step = max(1, _PROBE_BLOCK // masks.size)
        for start in range(0, queries.size, step):
            block = query_order[start : start + step]
            rows, first, counts = _probe(table, chunk.keys(queries[block]), masks)
            found = _verify(queries, block[rows], first, counts, table, max_distance, earlier)
            for left, right in found:
                yield left, table.order[right]


def _brute(queries: np.ndarray, index: np.ndarray, max_distance: int, self_join: bool) -> Iterator[Pairs]:
    """Blocked all-pairs comparison; the fallback for tiny inputs and large distances."""
    rows = max(1, _BRUTE_BLOCK // max(index.size, 1))
    for start in range(0, queries.size, rows):
        block = queries[start : start + rows]
        offset = start if self_join else 0  # self join: compare only with later positions
        distances = np.bitwise_count(block[:, None] ^ index[None, offset:])
        left, right = np.nonzero(distances <= max_distance)
        left += start
        right += offset
        if self_join:
            later = right > left
            left, right = left[later], right[later]
        yield left.astype(np.intp), right.astype(np.intp)


def _ordered(left: np.ndarray, right: np.ndarray) -> Pairs:
    return np.minimum(left, right), np.maximum(left, right)


def _collect(batches: Iterator[Pairs]) -> Pairs:
    """Concatenate pair batches, sorted by (left, right) so results are deterministic."""
    lefts, rights = [], []
    for left, right in batches:
        lefts.append(left)
        rights.append(right)
    if not lefts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    left = np.concatenate(lefts).astype(np.int64)
    right = np.concatenate(rights).astype(np.int64)
    order = np.lexsort((right, left))
    return left[order], right[order]


def _as_hashes(values: np.ndarray, name: str) -> np.ndarray:
    """A 1-D uint64 view; int64 input (how databases and pandas store hashes) is reinterpreted bit for bit."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers (uint64 hashes), got dtype {array.dtype}")
    if array.dtype.itemsize == 8:
        return array.view(np.uint64)
    if array.dtype.kind == "i" and bool((array < 0).any()):
        raise ValueError(f"{name} holds negative values narrower than 64 bits; pass uint64 or int64 hashes")
    return array.astype(np.uint64)


def _check_distance(max_distance: int) -> int:
    distance = int(max_distance)
    if distance != max_distance or distance < 0:
        raise ValueError(f"max_distance must be a non-negative integer, got {max_distance!r}")
    return distance


def find_pairs(index: np.ndarray, queries: np.ndarray, max_distance: int) -> Pairs:
    """All (query position, index position) pairs with Hamming distance <= max_distance, sorted.

    Separate index and queries let callers look up transformed variants (mirrored, rotated hashes) against an
    index of the original hashes without mixing the two sets.
    """
    index = _as_hashes(index, "index")
    queries = _as_hashes(queries, "queries")
    distance = _check_distance(max_distance)
    if index.size == 0 or queries.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return _collect(_iter_cross(index, queries, distance))


def pairs_within(hashes: np.ndarray, max_distance: int) -> Pairs:
    """All i < j pairs of one array with Hamming distance <= max_distance, sorted.

    Equal hashes pair up too, so a hash repeated k times yields k·(k-1)/2 pairs; use near_duplicate_groups when
    only the groups matter.
    """
    hashes = _as_hashes(hashes, "hashes")
    distance = _check_distance(max_distance)
    if hashes.size < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return _collect(_iter_self(hashes, distance))


def groups_from_pairs(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of the pair graph: one id per item, the smallest index of its component.

    Canonical ids (the smallest member) make results comparable across algorithms and stable for storage.
    """
    left = np.asarray(left, dtype=np.int64).ravel()
    right = np.asarray(right, dtype=np.int64).ravel()
    if left.shape != right.shape:
        raise ValueError("left and right must have the same length")
    if left.size and (min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= n):
        raise ValueError(f"pair indices must lie in [0, {n})")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        from scipy.sparse import coo_array
        from scipy.sparse.csgraph import connected_components
    except ImportError:  # scipy is optional; the numpy path gives the same answer
        return _components_numpy(n, left, right)
    graph = coo_array((np.ones(left.size, dtype=np.int8), (left, right)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n, dtype=np.int64))
    return smallest[labels]


def _components_numpy(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Hook-and-shortcut union-find: roots hook onto the smaller root, then every node jumps to its root."""
    parent = np.arange(n, dtype=np.int64)
    while True:
        a, b = parent[left], parent[right]
        low, high = np.minimum(a, b), np.maximum(a, b)
        differ = low != high
        if not differ.any():
            return parent
        left, right = left[differ], right[differ]  # edges already inside one tree stay there
        np.minimum.at(parent, high[differ], low[differ])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def near_duplicate_groups(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """One group id per hash (the smallest index in its group); hashes within max_distance share a group, transitively.

    Equal hashes are folded together first, so heavily repeated hashes cost nothing extra, and the pair graph is
    reduced to a spanning forest whenever it grows large, so memory stays bounded however dense the groups are.
    """
    hashes = _as_hashes(hashes, "hashes")
    distance = _check_distance(max_distance)
    if hashes.size == 0:
        return np.zeros(0, dtype=np.int64)
    unique, first_index, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    m = unique.size
    lefts: list[np.ndarray] = []
    rights: list[np.ndarray] = []
    held = 0
    for left, right in _iter_self(unique, distance) if m > 1 else ():
        lefts.append(left)
        rights.append(right)
        held += left.size
        if held > _EDGE_LIMIT:
            labels = groups_from_pairs(m, np.concatenate(lefts), np.concatenate(rights))
            linked = np.flatnonzero(labels != np.arange(m))
            lefts, rights, held = [linked], [labels[linked]], linked.size
    if lefts:
        labels = groups_from_pairs(m, np.concatenate(lefts), np.concatenate(rights))
    else:
        labels = np.arange(m, dtype=np.int64)
    # Unique positions follow hash order; map each group to the smallest original index among its members.
    smallest = np.full(m, hashes.size, dtype=np.int64)
    np.minimum.at(smallest, labels, first_index.astype(np.int64))
    return smallest[labels][inverse.ravel()]
