"""Near-duplicate detection as a user gets it: the real CLI, end to end, on labelled sets nobody tuned on.

For every evaluation set of tests/support/dedupe_sets.py (real images and copies of them, written as files,
with the ground truth of which files are one image) this script:

1. creates a fresh workspace (`harvest init`) in a temporary folder;
2. imports the set's folder (`harvest import FOLDER --json`): the ingest-time near-duplicate check runs here,
   and what it set aside is read back from the catalog (images.duplicate_of, sources.uri);
3. runs `curate dedupe --json` (a dry run) and scores the returned clusters;
4. runs imagededup's plain PHash (`max_distance_threshold=10`, its default) on the same files.

Reported per set: group-level pair precision (every pair of members inside a returned cluster: what a user
looking at a group gets), direct-pair precision (each member against its cluster's keeper), pair recall, recall
per transform (is the copy in the same returned cluster as its original), the largest cluster and how many true
images it mixes, the largest member distance against the threshold, and the precision of what ingest set aside
automatically. When `curate dedupe --json` members carry `"verified"`, the verified-only view (what --apply and
ingest set aside) is scored too; without the key every member counts as verified. The same group-level and
direct-pair precision and recall are reported for imagededup's PHash (its duplicate map gives the direct pairs,
connected components the groups a user would get). Pairs and groups are counted over distinct images (files
with identical bytes are one image in the catalog, and one key for PHash).

Only `photos-tune` may be used for tuning; it is marked "(tuning)" and its figures never decide the exit
status. On the held-out sets the issue's goals are checked (exit status 1 when one is missed): group-level pair
precision ≥ 0.99 (all returned members, and verified-only), ingest set-aside precision ≥ 0.999, no member
farther from its keeper than the threshold, recall ≥ 0.98 for resize, JPEG, brightness, noise, greyscale,
mirror and 90° turns, ≥ 0.8 for 5% crops and screenshots (recall counts every returned member: a review
candidate shown in a group is found).

Run: `.venv/bin/python bench/dedupe_eval.py [--sets photos-held,figures] [--json FILE] [--code DIR]`
(`--code` measures another checkout's CLI with this script's sets, e.g. `git archive HEAD` unpacked in /tmp;
`--keep DIR` keeps the sets and workspaces for inspection; about 4 minutes for all sets on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.dedupe_sets import SETS, TUNING_SETS, EvalSet, build_set, missing_sources  # noqa: E402

PRECISION_GOAL = 0.99  # group-level pair precision, held-out sets
INGEST_GOAL = 0.999  # precision of what ingest sets aside automatically
RECALL_GOALS = {
    "resize 50%": 0.98,
    "JPEG q30": 0.98,
    "brightness +20%": 0.98,
    "noise": 0.98,
    "greyscale": 0.98,
    "mirror": 0.98,
    "turn 90°": 0.98,
    "crop 5%": 0.8,
    "screenshot": 0.8,
}
PHASH_THRESHOLD = 10  # imagededup's default max_distance_threshold
WORST = 8  # closest wrong pairs listed per set


# --- running the CLI ----------------------------------------------------------------------------------------------


def cli(code: Path, tool: str, *args: str) -> tuple[dict[str, Any], float]:
    """Run `tool` (harvest or curate, from this interpreter's venv) on the checkout `code`; its JSON and seconds.

    PYTHONPATH puts `code` ahead of the editable install, so another checkout's CLI can be measured."""
    exe = Path(sys.executable).parent / tool
    env = {**os.environ, "PYTHONPATH": str(code), "NO_COLOR": "1"}
    env.pop("GLEANER_WORKSPACE", None)
    started = time.perf_counter()
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), elapsed


def catalog_url(workspace: Path) -> str:
    """The workspace's catalog URL from gleaner.toml, a relative SQLite path made absolute."""
    settings = tomllib.loads((workspace / "gleaner.toml").read_text())
    url = settings["catalog"]["url"]
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix) :].startswith("/"):
        url = prefix + str(workspace / url[len(prefix) :])
    return url


def read_catalog(workspace: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(file name → image sha256 from sources.uri, [(image, duplicate_of)] as ingest left them)."""
    engine = create_engine(catalog_url(workspace))
    try:
        with engine.connect() as conn:
            uris = conn.execute(text("SELECT sha256, uri FROM sources")).all()
            marks = conn.execute(text("SELECT sha256, duplicate_of FROM images WHERE duplicate_of IS NOT NULL")).all()
    finally:
        engine.dispose()
    file_key = {_file_name(uri): sha for sha, uri in uris}
    return file_key, [(sha, keeper) for sha, keeper in marks]


def _file_name(uri: str) -> str:
    """Set file names are unique, so the name identifies the file whatever form the URI takes."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Returned:
    """What a grouping returned: clusters of image keys (keeper first) and the direct pairs it asserted."""

    clusters: list[list[str]]
    direct: list[tuple[str, str]]
    distances: list[int] = field(default_factory=list)  # member → keeper, every non-keeper member
    threshold: int | None = None


def dedupe_clusters(report: dict[str, Any], verified_only: bool) -> Returned:
    """`curate dedupe --json` clusters; with `verified_only`, members whose "verified" is false are dropped
    (the keeper always stays; members without the key count as verified)."""
    clusters, direct, distances = [], [], []
    for cluster in report["clusters"]:
        keeper = cluster["keeper"]
        members = [
            m
            for m in cluster["members"]
            if m["sha256"] == keeper or not verified_only or m.get("verified", True) is not False
        ]
        if len(members) < 2:
            continue
        others = [m for m in members if m["sha256"] != keeper]
        clusters.append([keeper, *(m["sha256"] for m in others)])
        direct += [(m["sha256"], keeper) for m in others]
        distances += [int(m["distance"]) for m in others if m.get("distance") is not None]
    return Returned(clusters, direct, distances, report.get("threshold"))


def source_mismatches(report: dict[str, Any], truth: Truth, group_of_file: dict[str, str]) -> int:
    """Members whose own `sources` (file paths, or objects with a "uri") name a file of another true group than
    the catalog's sources table says: 0 unless the report and the catalog disagree."""
    wrong = 0
    for cluster in report["clusters"]:
        for member in cluster["members"]:
            for source in member.get("sources", []):
                uri = source.get("uri", "") if isinstance(source, dict) else str(source)
                expected = truth.group.get(member["sha256"])
                wrong += group_of_file.get(_file_name(uri), expected) != expected
    return wrong


def has_verified(report: dict[str, Any]) -> bool:
    return any("verified" in m for c in report["clusters"] for m in c["members"])


# --- imagededup's PHash ------------------------------------------------------------------------------------------


def run_phash(folder: Path, file_key: dict[str, str]) -> tuple[Returned | None, float, str]:
    """imagededup PHash at its default threshold on the set's files: its duplicate map (direct pairs) and the
    connected components of it (the groups a user would build from it); None and a reason when not installed."""
    warnings.filterwarnings("ignore", module="imagededup")
    try:
        from imagededup.methods import PHash
    except ImportError as exc:
        return None, 0.0, f"imagededup not installed ({exc}); .venv/bin/pip install imagededup"
    for name in list(logging.root.manager.loggerDict):  # its module loggers are set to INFO one by one
        if name.startswith("imagededup"):
            logging.getLogger(name).setLevel(logging.WARNING)
    started = time.perf_counter()
    hasher = PHash(verbose=False)
    encodings = hasher.encode_images(image_dir=str(folder), num_enc_workers=os.cpu_count() or 1)
    found = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=PHASH_THRESHOLD)
    elapsed = time.perf_counter() - started
    pairs = {
        tuple(sorted((file_key[a], file_key[b])))
        for a, others in found.items()
        for b in others
        if a in file_key and b in file_key and file_key[a] != file_key[b]
    }
    direct = sorted(pairs)  # type: ignore[arg-type]
    return Returned(components(direct), direct), elapsed, ""


def components(pairs: list[tuple[str, str]]) -> list[list[str]]:
    """Connected components (size ≥ 2) of the pair graph: union-find."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    groups: dict[str, list[str]] = defaultdict(list)
    for x in list(parent):
        groups[find(x)].append(x)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def file_digests(evalset: EvalSet) -> dict[str, str]:
    """File name → sha256 of its bytes (the catalog's image key)."""
    return {item.name: hashlib.sha256(evalset.path(item).read_bytes()).hexdigest() for item in evalset.items}


# --- scoring -----------------------------------------------------------------------------------------------------


@dataclass
class Truth:
    """Ground truth keyed by image (sha256): its true group and a readable name and transform."""

    group: dict[str, str]
    name: dict[str, str]
    transform: dict[str, str]
    copies: list[tuple[str, str, str]]  # (transform, copy key, original key), for per-transform recall
    missing: dict[str, int]  # transform → copies that never reached the catalog (rejected at import)
    true_pairs: int  # pairs of distinct images that are one true group

    @classmethod
    def build(cls, evalset: EvalSet, file_key: dict[str, str]) -> Truth:
        group, name, transform = {}, {}, {}
        for item in evalset.items:
            key = file_key.get(item.name)
            if key is None:
                continue
            if key in group and group[key] != item.group:
                raise ValueError(f"{item.name}: identical bytes in two true groups ({group[key]}, {item.group})")
            group.setdefault(key, item.group)
            name.setdefault(key, item.name)
            transform.setdefault(key, item.transform)
        originals = evalset.originals()
        copies, missing = [], Counter()
        for item in evalset.items:
            if item.transform == "original" or item.group not in originals:
                continue
            copy_key, original_key = file_key.get(item.name), file_key.get(originals[item.group])
            if copy_key is None or original_key is None:
                missing[item.transform] += 1
            else:
                copies.append((item.transform, copy_key, original_key))
        sizes = Counter(group.values())
        true_pairs = sum(n * (n - 1) // 2 for n in sizes.values())
        return cls(group, name, transform, copies, dict(missing), true_pairs)

    def kind(self, a: str, b: str) -> str:
        """A wrong pair described by the transforms of its two sides, e.g. "screenshot × screenshot"."""
        return " × ".join(sorted((self.transform.get(a, "?"), self.transform.get(b, "?"))))


@dataclass
class Score:
    """The figures of one grouping on one set."""

    clusters: int = 0
    clustered_images: int = 0
    largest: int = 0
    largest_true_groups: int = 0  # distinct true images inside the largest cluster
    group_pairs: int = 0
    group_correct: int = 0
    direct_pairs: int = 0
    direct_correct: int = 0
    pair_recall: float = 0.0
    pure_recall: float = 0.0  # true pairs found inside clusters that hold one true image only
    pure_clusters: int = 0
    recall: dict[str, tuple[int, int]] = field(default_factory=dict)  # transform → (found, copies)
    max_distance: int | None = None
    threshold: int | None = None
    over_threshold: int = 0  # members farther from their keeper than the threshold
    wrong_kinds: dict[str, int] = field(default_factory=dict)  # direct wrong pairs by transforms
    worst: list[dict[str, Any]] = field(default_factory=list)  # closest wrong direct pairs

    @property
    def group_precision(self) -> float:
        return self.group_correct / self.group_pairs if self.group_pairs else 1.0

    @property
    def direct_precision(self) -> float:
        return self.direct_correct / self.direct_pairs if self.direct_pairs else 1.0

    def recall_of(self, transform: str) -> float | None:
        found, total = self.recall.get(transform, (0, 0))
        return found / total if total else None


def score(returned: Returned, truth: Truth, distance_of: dict[tuple[str, str], int] | None = None) -> Score:
    """Precision of the pairs inside the clusters and of the direct pairs, recall per transform."""
    result = Score(clusters=len(returned.clusters), threshold=returned.threshold)
    cluster_of: dict[str, int] = {}
    true_found = pure_found = 0
    for index, members in enumerate(returned.clusters):
        result.clustered_images += len(members)
        groups = Counter(truth.group.get(m) for m in members)
        if len(members) > result.largest:
            result.largest, result.largest_true_groups = len(members), len(groups)
        for m in members:
            cluster_of[m] = index
        pairs = len(members) * (len(members) - 1) // 2
        correct = sum(n * (n - 1) // 2 for g, n in groups.items() if g is not None)
        result.group_pairs += pairs
        result.group_correct += correct
        true_found += correct
        if len(groups) == 1 and None not in groups:
            result.pure_clusters += 1
            pure_found += correct
    result.pair_recall = true_found / truth.true_pairs if truth.true_pairs else 1.0
    result.pure_recall = pure_found / truth.true_pairs if truth.true_pairs else 1.0
    wrong = Counter()
    worst = []
    for a, b in returned.direct:
        result.direct_pairs += 1
        if truth.group.get(a) is not None and truth.group.get(a) == truth.group.get(b):
            result.direct_correct += 1
            continue
        wrong[truth.kind(a, b)] += 1
        distance = (distance_of or {}).get((a, b))
        worst.append({"a": truth.name.get(a, a), "b": truth.name.get(b, b), "distance": distance})
    result.wrong_kinds = dict(wrong.most_common())
    result.worst = sorted(worst, key=lambda w: (w["distance"] is None, w["distance"] or 0, w["a"]))[:WORST]
    recall: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for transform, copy_key, original_key in truth.copies:
        recall[transform][1] += 1
        same = copy_key == original_key or cluster_of.get(copy_key, -1) == cluster_of.get(original_key, -2)
        recall[transform][0] += int(same)
    for transform, count in truth.missing.items():
        recall[transform][1] += count
    result.recall = {t: (f, n) for t, (f, n) in recall.items()}
    if returned.distances:
        result.max_distance = max(returned.distances)
        if returned.threshold is not None:
            result.over_threshold = sum(d > returned.threshold for d in returned.distances)
    return result


@dataclass
class IngestScore:
    """What `harvest import` set aside automatically (images.duplicate_of after the import)."""

    imported: dict[str, Any]
    seconds: float
    set_aside: int = 0
    correct: int = 0
    wrong_kinds: dict[str, int] = field(default_factory=dict)
    worst: list[dict[str, str]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.correct / self.set_aside if self.set_aside else 1.0


def score_ingest(marks: list[tuple[str, str]], truth: Truth, imported: dict[str, Any], seconds: float) -> IngestScore:
    result = IngestScore(imported, seconds, set_aside=len(marks))
    wrong = Counter()
    for image, keeper in marks:
        if truth.group.get(image) is not None and truth.group.get(image) == truth.group.get(keeper):
            result.correct += 1
        else:
            wrong[truth.kind(image, keeper)] += 1
            if len(result.worst) < WORST:
                result.worst.append({"a": truth.name.get(image, image), "b": truth.name.get(keeper, keeper)})
    result.wrong_kinds = dict(wrong.most_common())
    return result


# --- one set, end to end -----------------------------------------------------------------------------------------


@dataclass
class SetResult:
    name: str
    tuning: bool
    description: str
    truth_note: str
    files: int
    true_groups: int
    build_seconds: float
    ingest: IngestScore
    dedupe_seconds: float
    catalog_images: int
    verified_key: bool
    gleaner: Score
    verified: Score
    phash: Score | None
    phash_seconds: float
    phash_note: str = ""


def evaluate(name: str, root: Path, code: Path, use_phash: bool) -> SetResult:
    shutil.rmtree(root / name, ignore_errors=True)  # --keep: a rerun starts from scratch
    started = time.perf_counter()
    evalset = build_set(name, root / name / "images")
    build_seconds = time.perf_counter() - started
    workspace = root / name / "workspace"
    cli(code, "harvest", "init", str(workspace), "--json")
    imported, import_seconds = cli(code, "harvest", "import", str(evalset.folder), "--json", "-w", str(workspace))
    file_key, marks = read_catalog(workspace)
    truth = Truth.build(evalset, file_key)
    ingest = score_ingest(marks, truth, imported, import_seconds)
    report, dedupe_seconds = cli(code, "curate", "dedupe", "--json", "-w", str(workspace))
    distance_of = {(m["sha256"], c["keeper"]): m.get("distance") for c in report["clusters"] for m in c["members"]}
    mismatches = source_mismatches(report, truth, evalset.group_of())
    if mismatches:
        print(f"warning: {name}: {mismatches} member source(s) disagree with the catalog", file=sys.stderr)
    gleaner = score(dedupe_clusters(report, verified_only=False), truth, distance_of)
    verified = score(dedupe_clusters(report, verified_only=True), truth, distance_of)
    phash, phash_seconds, phash_note = None, 0.0, "skipped (--no-imagededup)"
    if use_phash:
        digests = file_digests(evalset)
        phash_truth = Truth.build(evalset, digests)
        returned, phash_seconds, phash_note = run_phash(evalset.folder, digests)
        phash = score(returned, phash_truth) if returned else None
    return SetResult(
        name=name,
        tuning=evalset.tuning or name in TUNING_SETS,
        description=evalset.description,
        truth_note=evalset.truth,
        files=len(evalset.items),
        true_groups=len(evalset.true_groups()),
        build_seconds=build_seconds,
        ingest=ingest,
        dedupe_seconds=dedupe_seconds,
        catalog_images=int(report.get("images", len(truth.group))),
        verified_key=has_verified(report),
        gleaner=gleaner,
        verified=verified,
        phash=phash,
        phash_seconds=phash_seconds,
        phash_note=phash_note,
    )


# --- goals -------------------------------------------------------------------------------------------------------


def misses(result: SetResult) -> list[str]:
    """The issue's goals this held-out set misses (none are checked on tuning sets)."""
    if result.tuning:
        return []
    found = []
    for view, s in (("all members", result.gleaner), ("verified", result.verified)):
        if s.group_precision < PRECISION_GOAL:
            found.append(f"group-level pair precision ({view}) {s.group_precision:.3f} < {PRECISION_GOAL}")
    if result.ingest.precision < INGEST_GOAL:
        found.append(f"ingest set-aside precision {result.ingest.precision:.4f} < {INGEST_GOAL}")
    if result.gleaner.over_threshold:
        found.append(
            f"{result.gleaner.over_threshold} member(s) beyond the threshold (max {result.gleaner.max_distance})"
        )
    for transform, goal in RECALL_GOALS.items():
        value = result.gleaner.recall_of(transform)
        if value is not None and value < goal:
            found.append(f"recall {transform} {value:.3f} < {goal}")
    return found


# --- tables ------------------------------------------------------------------------------------------------------


def _colour(value: float, goal: float | None, tuning: bool, digits: int = 3) -> str:
    text = f"{value:.{digits}f}"
    if goal is None:
        return text
    if tuning:
        return f"[dim]{text}[/]"
    return f"[green]{text}[/]" if value >= goal else f"[red]{text}[/]"


def _table(title: str, results: list[SetResult], first: str = "") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(first, justify="left", no_wrap=True)
    for r in results:
        table.add_column(f"{r.name}{' (tuning)' if r.tuning else ''}", justify="right")
    return table


def _ratio(part: int, whole: int) -> str:
    return f"{part:,}/{whole:,}"


def sets_table(console: Console, results: list[SetResult]) -> None:
    table = _table("Evaluation sets (ground truth per set in the notes below)", results)
    table.add_row("files", *[f"{r.files:,}" for r in results])
    table.add_row("true groups", *[f"{r.true_groups:,}" for r in results])
    table.add_row("images in the catalog", *[f"{r.catalog_images:,}" for r in results])
    table.add_row("build s", *[f"{r.build_seconds:.1f}" for r in results])
    console.print(table)
    for r in results:
        console.print(f"  [bold]{r.name}[/]: {r.description}. Truth: {r.truth_note}.", highlight=False)


def grouping_rows(table: Table, results: list[SetResult], pick: str) -> None:
    """The rows of one grouping (gleaner all, gleaner verified, phash) for every set."""
    scores = [getattr(r, pick) for r in results]

    def cells(render: Any) -> list[str]:
        return [render(s, r) if s is not None else "-" for s, r in zip(scores, results, strict=True)]

    goal = PRECISION_GOAL if pick != "phash" else None
    table.add_row(
        "group-level pair precision",
        *cells(lambda s, r: _colour(s.group_precision, goal, r.tuning) + f" ({s.group_pairs:,})"),
    )
    table.add_row("direct-pair precision", *cells(lambda s, r: f"{s.direct_precision:.3f} ({s.direct_pairs:,})"))
    table.add_row("pair recall (true pairs grouped)", *cells(lambda s, r: f"{s.pair_recall:.3f}"))
    table.add_row("pair recall in pure clusters", *cells(lambda s, r: f"{s.pure_recall:.3f}"))
    table.add_row("clusters (pure: one true image)", *cells(lambda s, r: f"{s.clusters:,} ({s.pure_clusters:,})"))
    table.add_row("images in clusters", *cells(lambda s, r: f"{s.clustered_images:,}"))
    table.add_row("largest cluster: size / true images", *cells(lambda s, r: f"{s.largest} / {s.largest_true_groups}"))
    if pick != "phash":
        table.add_row(
            "max distance to keeper (threshold)",
            *cells(lambda s, r: f"{s.max_distance if s.max_distance is not None else '-'} ({s.threshold})"),
        )
        table.add_row(
            "members beyond the threshold",
            *cells(
                lambda s, r: (
                    f"[red]{s.over_threshold}[/]" if s.over_threshold and not r.tuning else str(s.over_threshold)
                )
            ),
        )


def recall_table(console: Console, results: list[SetResult], pick: str, title: str) -> None:
    table = _table(title, results, "transform (goal)")
    transforms: list[str] = []
    for r in results:
        s = getattr(r, pick)
        for t in s.recall if s else []:
            if t not in transforms:
                transforms.append(t)
    ordered = [t for t in RECALL_GOALS if t in transforms] + [t for t in transforms if t not in RECALL_GOALS]
    for transform in ordered:
        goal = RECALL_GOALS.get(transform) if pick != "phash" else None
        row = []
        for r in results:
            s = getattr(r, pick)
            value = s.recall_of(transform) if s else None
            row.append("" if value is None else _colour(value, goal, r.tuning) + f" ({s.recall[transform][1]})")
        label = f"{transform} (≥ {RECALL_GOALS[transform]})" if transform in RECALL_GOALS else f"{transform} (no goal)"
        table.add_row(label, *row)
    console.print(table)


def ingest_table(console: Console, results: list[SetResult]) -> None:
    table = _table("harvest import: what the ingest-time check set aside automatically (images.duplicate_of)", results)
    table.add_row(
        "set-aside precision",
        *[_colour(r.ingest.precision, INGEST_GOAL, r.tuning, 4) for r in results],
    )
    table.add_row("set aside", *[f"{r.ingest.set_aside:,}" for r in results])
    table.add_row("distinct images hidden (wrong)", *[f"{r.ingest.set_aside - r.ingest.correct:,}" for r in results])
    for key in ("added", "duplicates", "near_duplicates", "rejected", "failed"):
        table.add_row(f"import JSON: {key}", *[str(r.ingest.imported.get(key, "-")) for r in results])
    table.add_row(
        "import s (images/s)", *[f"{r.ingest.seconds:.1f} ({r.files / r.ingest.seconds:,.0f})" for r in results]
    )
    table.add_row("curate dedupe s", *[f"{r.dedupe_seconds:.1f}" for r in results])
    console.print(table)


def diagnosis(console: Console, results: list[SetResult]) -> None:
    """Which transforms the wrong pairs join, and the closest wrong pairs: where to look first."""
    table = Table(title="Wrong pairs by the transforms of their two sides (top 5 per set)", title_justify="left")
    for column in ("set", "curate dedupe: member × keeper", "ingest: image × duplicate_of", "PHash: a × b"):
        table.add_column(column, justify="left")
    for r in results:
        top = lambda kinds: "\n".join(f"{n:>5} {k}" for k, n in list(kinds.items())[:5]) or "-"  # noqa: E731
        table.add_row(
            r.name, top(r.gleaner.wrong_kinds), top(r.ingest.wrong_kinds), top(r.phash.wrong_kinds) if r.phash else "-"
        )
    console.print(table)
    table = Table(title=f"Closest wrong direct pairs of curate dedupe (up to {WORST} per set)", title_justify="left")
    for column in ("set", "member", "keeper", "distance"):
        table.add_column(column, justify="left" if column != "distance" else "right")
    for r in results:
        for w in r.gleaner.worst:
            table.add_row(r.name, w["a"], w["b"], str(w["distance"]))
    console.print(table)


_TIMING = r"""
import io, json, sys, time
from pathlib import Path
from PIL import Image
try:
    from storage.hashes.compute import image_hashes
except ImportError:
    from storage.hashing import image_hashes
try:
    from storage.hashes.perceptual import HASH_INPUT_SIZE, phash
except ImportError:
    from storage.perceptual import HASH_INPUT_SIZE, phash

def decode(data):
    image = Image.open(io.BytesIO(data))
    if image.format in ("JPEG", "MPO"):
        image.draft("L" if image.mode == "L" else "RGB", (2 * HASH_INPUT_SIZE, 2 * HASH_INPUT_SIZE))
    image.load()
    return image

def best(call, repeats=3):
    times = []
    for _ in range(repeats):
        started = time.perf_counter(); call(); times.append(time.perf_counter() - started)
    return min(times)

out = {}
for kind, pattern in (("JPEG, draft-decoded", "*.jpg"), ("PNG screenshot, full decode", "*screenshot*.png")):
    files = sorted(Path(sys.argv[1]).glob(pattern))[:64]
    totals = [0.0, 0.0, 0.0]
    for path in files:
        data = path.read_bytes()
        image = decode(data)
        totals[0] += best(lambda: decode(data))
        totals[1] += best(lambda: phash(image))
        totals[2] += best(lambda: image_hashes(image))
    if files:
        out[kind] = {"images": len(files), "decode": totals[0] / len(files), "phash": totals[1] / len(files),
                     "hashes": totals[2] / len(files)}
print(json.dumps(out))
"""


def hashing_cost(code: Path, folder: Path) -> dict[str, Any] | str:
    """Per-image cost of decoding and hashing as ingest does, measured in a subprocess on `code` (the module
    layout may differ between checkouts); a reason string when that checkout's hash functions are not found."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run([sys.executable, "-c", _TIMING, str(folder)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return f"hash functions not found in {code}: {proc.stderr.strip().splitlines()[-1:]}"
    return json.loads(proc.stdout)


def timing_table(console: Console, timings: dict[str, Any] | str) -> None:
    if isinstance(timings, str):
        console.print(f"hashing cost: {timings}")
        return
    table = Table(title="Hashing cost per image (one core, the ingest path, best of 3 runs)", title_justify="left")
    for column in ("input", "images", "decode ms", "pHash ms", "image_hashes ms", "extra over pHash ms"):
        table.add_column(column, justify="left" if column == "input" else "right")
    for kind, t in timings.items():
        table.add_row(
            kind,
            str(t["images"]),
            f"{t['decode'] * 1e3:.2f}",
            f"{t['phash'] * 1e3:.2f}",
            f"{t['hashes'] * 1e3:.2f}",
            f"{(t['hashes'] - t['phash']) * 1e3:.2f}",
        )
    console.print(table)


def report(console: Console, results: list[SetResult]) -> None:
    sets_table(console, results)
    table = _table("curate dedupe --json: what the user gets (every returned member)", results)
    grouping_rows(table, results, "gleaner")
    console.print(table)
    if any(r.verified_key for r in results):
        table = _table("curate dedupe --json: verified members only (what --apply and ingest set aside)", results)
        grouping_rows(table, results, "verified")
        console.print(table)
    else:
        console.print('no "verified" key in curate dedupe --json: every member counts as verified')
    recall_table(console, results, "gleaner", "Recall per transform: copy in the same returned cluster as its original")
    if any(r.verified_key for r in results):
        recall_table(console, results, "verified", "Recall per transform, verified members only")
    ingest_table(console, results)
    table = _table(f"imagededup PHash (max_distance_threshold={PHASH_THRESHOLD}), same files", results)
    grouping_rows(table, results, "phash")
    table.add_row("PHash s", *[f"{r.phash_seconds:.1f}" for r in results])
    console.print(table)
    for r in results:
        if r.phash is None:
            console.print(f"PHash {r.name}: {r.phash_note}")
    recall_table(console, results, "phash", "imagededup PHash recall per transform (connected components)")
    diagnosis(console, results)


def markdown(results: list[SetResult]) -> str:
    """The README tables: one row per set, then recall per transform ("Gleaner / PHash" in each cell)."""
    head = (
        "| set | files | group-level pair precision | direct-pair precision | largest group (true images) "
        "| max distance (threshold) | ingest set aside (wrong) | ingest precision | PHash group-level | PHash direct |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results:
        g, p = r.gleaner, r.phash
        lines.append(
            f"| {r.name}{' (tuning)' if r.tuning else ''} | {r.files:,} | {g.group_precision:.3f} ({g.group_pairs:,}) "
            f"| {g.direct_precision:.3f} ({g.direct_pairs:,}) | {g.largest} ({g.largest_true_groups}) "
            f"| {g.max_distance if g.max_distance is not None else '-'} ({g.threshold}) "
            f"| {r.ingest.set_aside:,} ({r.ingest.set_aside - r.ingest.correct:,}) | {r.ingest.precision:.4f} "
            f"| {f'{p.group_precision:.3f}' if p else '-'} | {f'{p.direct_precision:.3f}' if p else '-'} |"
        )
    transforms: list[str] = []
    for r in results:
        transforms += [t for t in r.gleaner.recall if t not in transforms]
    ordered = [t for t in RECALL_GOALS if t in transforms] + [t for t in transforms if t not in RECALL_GOALS]
    names = [f"{r.name}{' (tuning)' if r.tuning else ''}" for r in results]
    lines += ["", "| recall, Gleaner / PHash | " + " | ".join(names) + " |", "|---|" + "---|" * len(results)]
    for t in ordered:
        cells = []
        for r in results:
            mine = r.gleaner.recall_of(t)
            theirs = r.phash.recall_of(t) if r.phash else None
            cells.append("" if mine is None else f"{mine:.2f} / {'-' if theirs is None else f'{theirs:.2f}'}")
        goal = f" (≥ {RECALL_GOALS[t]})" if t in RECALL_GOALS else ""
        lines.append(f"| {t}{goal} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_json(results: list[SetResult], timings: dict[str, Any] | str, seconds: float) -> dict[str, Any]:
    def score_json(s: Score | None) -> dict[str, Any] | None:
        if s is None:
            return None
        out = asdict(s)
        out["group_precision"], out["direct_precision"] = s.group_precision, s.direct_precision
        out["recall"] = {t: {"found": f, "copies": n, "recall": f / n if n else None} for t, (f, n) in s.recall.items()}
        return out

    sets = {}
    for r in results:
        entry = {k: v for k, v in asdict(r).items() if k not in ("gleaner", "verified", "phash", "ingest")}
        entry["ingest"] = {**asdict(r.ingest), "precision": r.ingest.precision}
        entry["gleaner"], entry["verified"], entry["phash"] = (
            score_json(r.gleaner),
            score_json(r.verified),
            score_json(r.phash),
        )
        entry["goals_missed"] = misses(r)
        sets[r.name] = entry
    return {"sets": sets, "hashing_cost": timings, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--markdown", type=Path, help="write the README tables (Markdown) to this file")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose CLI is measured (default: this one)")
    parser.add_argument("--keep", type=Path, help="build the sets and workspaces here and keep them")
    parser.add_argument("--no-imagededup", action="store_true", help="skip imagededup's PHash")
    parser.add_argument("--no-timing", action="store_true", help="skip the hashing-cost table")
    args = parser.parse_args()
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise SystemExit(f"unknown set(s) {', '.join(unknown)}; known: {', '.join(SETS)}")
    console = Console() if Console().is_terminal else Console(width=200)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dedupe-eval-") as scratch:
        root = args.keep.resolve() if args.keep else Path(scratch)
        results = []
        for name in names:
            reason = missing_sources(name)
            if reason:
                console.print(f"[yellow]skipping {name}[/]: {reason}")
                continue
            console.print(f"evaluating {name} ...", highlight=False)
            results.append(evaluate(name, root, args.code.resolve(), use_phash=not args.no_imagededup))
        photo_folder = next((root / r.name / "images" for r in results if r.name.startswith("photos")), None)
        timings: dict[str, Any] | str = "skipped"
        if not args.no_timing and photo_folder is not None:
            timings = hashing_cost(args.code.resolve(), photo_folder)
    report(console, results)
    timing_table(console, timings)
    seconds = time.perf_counter() - started
    console.print(f"whole bench: {seconds:.0f} s")
    if args.markdown:
        args.markdown.write_text(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(to_json(results, timings, seconds), indent=2, default=str))
    missed = {r.name: misses(r) for r in results}
    for name, found in missed.items():
        for miss in found:
            console.print(f"[red]goal missed[/] {name}: {miss}", highlight=False)
    held_out = [r for r in results if not r.tuning]
    if not held_out:
        console.print("no held-out set evaluated: no goal checked")
    ok = not any(missed.values())
    console.print(
        "all goals met on the held-out sets" if ok and held_out else "[red]some goals missed[/]" if not ok else ""
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
