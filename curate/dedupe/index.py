"""Exact near-duplicate search over 64-bit perceptual hashes, well below quadratic time.

Why: comparing every pair of a million hashes means 5·10^11 popcounts, about half an hour in numpy. Multi-index
hashing (Norouzi, Punjani and Fleet, "Fast search in Hamming space with multi-index hashing") splits the 64 bits
into chunks. If the chunks partition the bits and the per-chunk radii satisfy sum(radius + 1) > max_distance, then
by pigeonhole a pair within max_distance differs in at most `radius` bits in at least one chunk (and so in at most
`radius` bits of any subset of that chunk's bits: the key). Each chunk gets a dense bucket table over its key
(a counting sort), each query looks up only the buckets whose key lies within the radius of its own, and every
candidate is verified with a popcount of all 64 bits. The answer is exact: no false negatives (pigeonhole), no
false positives (verification), and every pair is reported once (it belongs to the first chunk that finds it, and
within a chunk to the one mask equal to the pair's key difference).

A small cost model picks the number of chunks and key widths for the input size and distance, or blocked brute
force when that is cheaper (tiny inputs, large distances). Work runs in blocks, so memory stays bounded, spread
over a few threads (numpy releases the GIL inside its loops).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = ["find_pairs", "groups_from_pairs", "near_duplicate_groups", "pairs_within"]

Pairs = tuple[np.ndarray, np.ndarray]
_Task = Callable[[], list[Pairs]]

_PROBE_BLOCK = 1 << 20  # (query, mask) lookups per task
_CANDIDATE_BLOCK = 1 << 20  # candidates expanded at once
_BRUTE_BLOCK = 1 << 18  # pairs compared per brute-force step (a few MiB: stays in cache)
_EDGE_LIMIT = 1 << 21  # edges near_duplicate_groups holds before folding them into a spanning forest
_TASK_EDGE_LIMIT = 1 << 19  # the same, inside one task, when only the groups are wanted
_MAX_KEY_BITS = 24  # dense bucket table of at most 2^24 + 1 offsets
_MAX_WORKERS = 8
_PARALLEL_MIN = 50_000  # fewer queries than this: threads cost more than they save

# Cost model in nanoseconds per operation, measured with numpy 2 on a 2-core x86 machine; only ratios matter.
_COST_PROBE = 6.0  # one bucket lookup
_COST_CANDIDATE = 12.0  # one candidate expanded and verified
_COST_SORT = 120.0  # one index item placed in one chunk's table
_COST_TABLE = 1.0  # one bucket of a dense table built
_COST_BRUTE = 2.5  # one pair compared by brute force


@dataclass(frozen=True)
class _Chunk:
    """The key of one chunk: `bits` bits from bit `shift`, probed within `radius` flipped bits."""

    shift: int
    bits: int
    radius: int
    masks_by_top_bit: dict[int, np.ndarray] = field(repr=False, compare=False)  # non-zero masks, by highest bit

    @classmethod
    def make(cls, shift: int, bits: int, radius: int) -> _Chunk:
        grouped: dict[int, list[int]] = {}
        for weight in range(1, min(radius, bits) + 1):
            for positions in itertools.combinations(range(bits), weight):
                grouped.setdefault(max(positions), []).append(sum(1 << p for p in positions))
        masks = {top: np.array(values, dtype=np.intp) for top, values in sorted(grouped.items())}
        return cls(shift, bits, radius, masks)

    def keys(self, hashes: np.ndarray) -> np.ndarray:
        return ((hashes >> np.uint64(self.shift)) & np.uint64((1 << self.bits) - 1)).astype(np.intp)

    def all_masks(self) -> np.ndarray:
        return np.concatenate([np.zeros(1, dtype=np.intp), *self.masks_by_top_bit.values()])


@functools.lru_cache(maxsize=4096)
def _ball(bits: int, radius: int) -> int:
    """How many keys of `bits` bits lie within `radius` of a given one."""
    return sum(math.comb(bits, k) for k in range(min(radius, bits) + 1))


@functools.lru_cache(maxsize=4096)
def _best_key(width: int, radius: int, n_index: int, n_queries: int, self_join: bool) -> tuple[float, int]:
    """(cost, key bits) of the cheapest key for one chunk: wider keys mean fewer candidates but more lookups."""
    best = (math.inf, 1)
    for bits in range(1, min(width, _MAX_KEY_BITS) + 1):
        ball = _ball(bits, radius)
        probes = n_queries * ((ball + 1) / 2 if self_join else ball)
        candidates = probes * n_index / 2.0**bits
        cost = probes * _COST_PROBE + candidates * _COST_CANDIDATE + n_index * _COST_SORT + 2.0**bits * _COST_TABLE
        best = min(best, (cost, bits))
    return best


def _plan(n_index: int, n_queries: int, max_distance: int, self_join: bool) -> list[_Chunk] | None:
    """The cheapest partition into chunks, or None when blocked brute force is cheaper."""
    best_cost = n_index * n_queries / (2 if self_join else 1) * _COST_BRUTE
    best: list[tuple[int, int, int]] | None = None
    for count in range(1, min(max_distance + 1, 64) + 1):
        base, extra = divmod(max_distance + 1, count)  # radii with sum(radius + 1) == max_distance + 1
        layout, cost, shift = [], 0.0, 0
        for c in range(count):
            width = 64 // count + (1 if c < 64 % count else 0)
            radius = base - 1 + (1 if c < extra else 0)
            chunk_cost, bits = _best_key(width, radius, n_index, n_queries, self_join)
            layout.append((shift, bits, radius))
            cost += chunk_cost
            shift += width
        if cost < best_cost:
            best, best_cost = layout, cost
    return None if best is None else [_Chunk.make(*spec) for spec in best]


@dataclass(frozen=True)
class _Table:
    """One chunk's bucket table over the index: positions in key order, their keys and hashes, bucket offsets."""

    order: np.ndarray
    keys: np.ndarray
    hashes: np.ndarray
    starts: np.ndarray
    occupied: np.ndarray  # one byte per bucket: filters misses before the wider offsets are read

    @classmethod
    def build(cls, chunk: _Chunk, hashes: np.ndarray) -> _Table:
        keys = chunk.keys(hashes)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        counts = np.bincount(sorted_keys, minlength=1 << chunk.bits)
        starts = np.zeros(counts.size + 1, dtype=np.intp)
        np.cumsum(counts, out=starts[1:])
        return cls(order, sorted_keys, hashes[order], starts, counts > 0)

    def probe(self, query_keys: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Look up every (mask, query) bucket; (query row, first position, count) of the non-empty ones."""
        probe = (masks[:, None] ^ query_keys[None, :]).ravel()  # mask-major: one mask's lookups stay close
        hit = np.flatnonzero(self.occupied.take(probe))
        probe = probe.take(hit)
        first = self.starts.take(probe)
        return hit % query_keys.size, first, self.starts.take(probe + 1) - first


@dataclass(frozen=True)
class _Verifier:
    """Checks candidate pairs between query hashes and one table, dropping pairs an earlier chunk finds."""

    queries: np.ndarray
    table: _Table
    max_distance: int
    earlier: tuple[_Chunk, ...]
    forest: bool = False  # only groups matter: fold the pairs into a spanning forest when they pile up

    def runs(self, rows: np.ndarray, first: np.ndarray, counts: np.ndarray) -> list[Pairs]:
        """Pairs from runs of `counts` table positions starting at `first`, as (query row, table position).

        Most buckets hold one entry, so the first entry of every run is checked directly and only the rest of
        the longer runs is expanded, in pieces of bounded size. Dense clusters can make a run's pairs outgrow
        memory; with `forest` they are folded as they come.
        """
        found = [self.check(rows, first)]
        held = found[0][0].size
        longer = np.flatnonzero(counts > 1)
        rows, first, counts = rows[longer], first[longer] + 1, counts[longer] - 1
        totals = np.cumsum(counts)
        start = 0
        while start < rows.size:
            done = int(totals[start - 1]) if start else 0
            stop = max(int(np.searchsorted(totals, done + _CANDIDATE_BLOCK, side="right")), start + 1)
            piece = counts[start:stop]
            ends = totals[start:stop] - done
            candidates = np.repeat(first[start:stop] - (ends - piece), piece)
            candidates += np.arange(candidates.size, dtype=np.intp)
            found.append(self.check(np.repeat(rows[start:stop], piece), candidates))
            held += found[-1][0].size
            if self.forest and held > _TASK_EDGE_LIMIT:
                found = [_spanning_forest(np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found]))]
                held = found[0][0].size
            start = stop
        return found

    def check(self, rows: np.ndarray, positions: np.ndarray) -> Pairs:
        xor = self.queries.take(rows) ^ self.table.hashes.take(positions)
        hits = np.flatnonzero(np.bitwise_count(xor) <= self.max_distance)
        if hits.size and self.earlier:
            xor = xor[hits]
            keep = np.ones(hits.size, dtype=bool)
            for chunk in self.earlier:  # keys are non-negative, so bitwise_count counts their set bits
                keep &= np.bitwise_count(chunk.keys(xor)) > chunk.radius
            hits = hits[keep]
        return rows[hits], positions[hits]


def _self_tasks(hashes: np.ndarray, plan: list[_Chunk], max_distance: int, forest: bool) -> Iterator[_Task]:
    """Tasks that together find every i < j pair of one array, each pair once (or, with `forest`, edges with the
    same connected components)."""
    n = hashes.size
    for number, chunk in enumerate(plan):
        table = _Table.build(chunk, hashes)
        verifier = _Verifier(table.hashes, table, max_distance, tuple(plan[:number]), forest)
        for start in range(0, n, _PROBE_BLOCK):
            yield functools.partial(_same_bucket, verifier, np.arange(start, min(n, start + _PROBE_BLOCK)))
        # A pair whose keys differ by a mask is probed only from the side whose key lacks the mask's top bit.
        for top, masks in chunk.masks_by_top_bit.items():
            side = np.flatnonzero(((table.keys >> top) & 1) == 0)
            step = max(1, _PROBE_BLOCK // masks.size)
            for start in range(0, side.size, step):
                yield functools.partial(_other_buckets, verifier, side[start : start + step], masks)


def _same_bucket(verifier: _Verifier, positions: np.ndarray) -> list[Pairs]:
    """Pairs of each table position with the later positions of its own bucket."""
    table = verifier.table
    counts = table.starts.take(table.keys.take(positions) + 1) - positions - 1
    hit = np.flatnonzero(counts)
    found = verifier.runs(positions[hit], positions[hit] + 1, counts[hit])
    return [_ordered(table.order.take(left), table.order.take(right)) for left, right in found]


def _other_buckets(verifier: _Verifier, positions: np.ndarray, masks: np.ndarray) -> list[Pairs]:
    table = verifier.table
    rows, first, counts = table.probe(table.keys.take(positions), masks)
    found = verifier.runs(positions.take(rows), first, counts)
    return [_ordered(table.order.take(left), table.order.take(right)) for left, right in found]


def _cross_tasks(index: np.ndarray, queries: np.ndarray, plan: list[_Chunk], max_distance: int) -> Iterator[_Task]:
    """Tasks that together find every (query, index) pair, each pair once."""
    for number, chunk in enumerate(plan):
        table = _Table.build(chunk, index)
        verifier = _Verifier(queries, table, max_distance, tuple(plan[:number]))
        masks = chunk.all_masks()
        query_keys = chunk.keys(queries)
        query_order = np.argsort(query_keys, kind="stable")  # nearby keys make nearby lookups
        step = max(1, _PROBE_BLOCK // masks.size)
        for start in range(0, queries.size, step):
            block = query_order[start : start + step]
            yield functools.partial(_cross_block, verifier, block, query_keys.take(block), masks)


def _cross_block(verifier: _Verifier, block: np.ndarray, keys: np.ndarray, masks: np.ndarray) -> list[Pairs]:
    rows, first, counts = verifier.table.probe(keys, masks)
    found = verifier.runs(block.take(rows), first, counts)
    return [(left, verifier.table.order.take(right)) for left, right in found]


def _brute_tasks(queries: np.ndarray, index: np.ndarray, max_distance: int, self_join: bool) -> Iterator[_Task]:
    """All-pairs comparison in cache-sized blocks: the fallback for tiny inputs and large distances."""
    rows = max(1, _BRUTE_BLOCK // max(index.size, 1))
    for start in range(0, queries.size, rows):
        yield functools.partial(_brute_block, queries, index, start, rows, max_distance, self_join)


def _brute_block(
    queries: np.ndarray, index: np.ndarray, start: int, rows: int, max_distance: int, self_join: bool
) -> list[Pairs]:
    offset = start + 1 if self_join else 0  # a self join compares each position with later ones only
    distances = np.bitwise_count(queries[start : start + rows, None] ^ index[None, offset:])
    left, right = np.nonzero(distances <= max_distance)
    left += start
    right += offset
    if self_join:
        later = right > left
        left, right = left[later], right[later]
    return [(left.astype(np.intp), right.astype(np.intp))]


def _run(tasks: Iterator[_Task], parallel: bool) -> Iterator[Pairs]:
    """Results of the tasks in order, computed by a few threads with a bounded number in flight."""
    workers = min(_MAX_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if not parallel or workers < 2:
        for task in tasks:
            yield from task()
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="dedupe") as pool:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.submit(task))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def _iter_self(hashes: np.ndarray, max_distance: int, forest: bool = False) -> Iterator[Pairs]:
    plan = _plan(hashes.size, hashes.size, max_distance, self_join=True)
    if plan is None:
        tasks = _brute_tasks(hashes, hashes, max_distance, self_join=True)
    else:
        tasks = _self_tasks(hashes, plan, max_distance, forest)
    return _run(tasks, parallel=hashes.size >= _PARALLEL_MIN)


def _iter_cross(index: np.ndarray, queries: np.ndarray, max_distance: int) -> Iterator[Pairs]:
    plan = _plan(index.size, queries.size, max_distance, self_join=False)
    if plan is None:
        tasks = _brute_tasks(queries, index, max_distance, self_join=False)
    else:
        tasks = _cross_tasks(index, queries, plan, max_distance)
    return _run(tasks, parallel=queries.size >= _PARALLEL_MIN)


def _spanning_forest(left: np.ndarray, right: np.ndarray) -> Pairs:
    """Edges from each linked node to its component's smallest node: same components, at most one edge a node."""
    nodes, inverse = np.unique(np.concatenate([left, right]), return_inverse=True)
    labels = groups_from_pairs(nodes.size, inverse[: left.size], inverse[left.size :])
    linked = np.flatnonzero(labels != np.arange(nodes.size))
    return nodes[linked], nodes[labels[linked]]


def _ordered(left: np.ndarray, right: np.ndarray) -> Pairs:
    return np.minimum(left, right), np.maximum(left, right)


def _empty_pairs() -> Pairs:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)


def _collect(batches: Iterator[Pairs]) -> Pairs:
    """Concatenate pair batches, sorted by (left, right) so results do not depend on plan or thread timing."""
    lefts, rights = [], []
    for left, right in batches:
        lefts.append(left)
        rights.append(right)
    if not lefts:
        return _empty_pairs()
    left = np.concatenate(lefts).astype(np.int64)
    right = np.concatenate(rights).astype(np.int64)
    order = np.lexsort((right, left))
    return left[order], right[order]


def _as_hashes(values: np.ndarray, name: str) -> np.ndarray:
    """A 1-D uint64 array; int64 input (how SQL databases and pandas store hashes) is reinterpreted bit for bit."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer hashes (uint64 or int64), got dtype {array.dtype}")
    if array.dtype.itemsize == 8:
        return array.view(np.uint64)
    if array.dtype.kind == "i" and bool((array < 0).any()):
        raise ValueError(f"{name} holds negative values narrower than 64 bits; pass uint64 or int64 hashes")
    return array.astype(np.uint64)


def _as_distance(max_distance: int) -> int:
    distance = int(max_distance)
    if distance != max_distance or distance < 0:
        raise ValueError(f"max_distance must be a non-negative integer, got {max_distance!r}")
    return distance


def find_pairs(index: np.ndarray, queries: np.ndarray, max_distance: int) -> Pairs:
    """All (query position, index position) pairs with Hamming distance <= max_distance, sorted.

    Separate index and queries let callers look up transformed variants of hashes (mirrored, rotated) against an
    index of the original hashes without mixing the two sets.
    """
    index = _as_hashes(index, "index")
    queries = _as_hashes(queries, "queries")
    distance = _as_distance(max_distance)
    if index.size == 0 or queries.size == 0:
        return _empty_pairs()
    return _collect(_iter_cross(index, queries, distance))


def pairs_within(hashes: np.ndarray, max_distance: int) -> Pairs:
    """All i < j pairs of one array with Hamming distance <= max_distance, sorted.

    Equal hashes pair up too, so a hash repeated k times gives k·(k-1)/2 pairs; near_duplicate_groups folds
    repeats first and is the better call when only the groups matter.
    """
    hashes = _as_hashes(hashes, "hashes")
    distance = _as_distance(max_distance)
    if hashes.size < 2:
        return _empty_pairs()
    return _collect(_iter_self(hashes, distance))


def groups_from_pairs(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of the pair graph: one id per item, the smallest index in its component.

    Canonical ids (the smallest member) make results comparable across algorithms and stable when stored.
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
    smallest = np.full(int(labels.max()) + 1, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n, dtype=np.int64))
    return smallest[labels]


def _components_numpy(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Hook-and-shortcut union-find: each root hooks onto the smallest root it touches, then paths are halved
    until every node points at its root. Parents only ever decrease, so the roots end as each group's minimum."""
    parent = np.arange(n, dtype=np.int64)
    while True:
        a, b = parent[left], parent[right]
        differ = a != b
        if not differ.any():
            return parent
        left, right, a, b = left[differ], right[differ], a[differ], b[differ]  # settled edges stay settled
        np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def near_duplicate_groups(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """One group id per hash (the smallest index in its group); hashes within max_distance share a group,
    transitively.

    Equal hashes are folded first, so heavily repeated hashes cost nothing extra, and the pair graph is reduced
    to a spanning forest whenever it grows large, so memory stays bounded however dense the groups are.
    """
    hashes = _as_hashes(hashes, "hashes")
    distance = _as_distance(max_distance)
    if hashes.size == 0:
        return np.zeros(0, dtype=np.int64)
    unique, first_index, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    m = unique.size
    lefts: list[np.ndarray] = []
    rights: list[np.ndarray] = []
    held = 0
    for left, right in _iter_self(unique, distance, forest=True) if m > 1 else ():
        lefts.append(left)
        rights.append(right)
        held += left.size
        if held > _EDGE_LIMIT:
            left, right = _spanning_forest(np.concatenate(lefts), np.concatenate(rights))
            lefts, rights, held = [left], [right], left.size
    if lefts:
        labels = groups_from_pairs(m, np.concatenate(lefts), np.concatenate(rights))
    else:
        labels = np.arange(m, dtype=np.int64)
    # Unique positions follow hash order: map each group to the smallest original index among its members.
    smallest = np.full(m, hashes.size, dtype=np.int64)
    np.minimum.at(smallest, labels, first_index.astype(np.int64))
    return smallest[labels][inverse.ravel()]
