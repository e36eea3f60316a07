"""Ingest: validation, facts and hashes of real images, hostile input, storage and catalog consistency."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import shutil
import signal
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagehash
import pytest
from PIL import Image
from sqlalchemy import select

from curate.fsck import fsck
from storage.catalog import SourceInfo, count_images, get_image, image_sources, iter_images
from storage.catalog.schema import sources
from storage.hashes.perceptual import hamming
from storage.imaging import Rejected, analyze
from storage.ingest import IngestItem, Ingestor, Outcome, prepare, read_file, source_for_path
from storage.settings import IngestSettings
from storage.workspace import Workspace, init_workspace
from tests.hostile import bomb_png, make_hostile_corpus, png_bytes, valid_png

# Non-JPEG files of imagededup's test set (decoded at full size, so the pHash must match imagehash exactly).
NON_JPEG = [
    "alpha_channel_image.png",
    "formats_images/copyleft.tiff",
    "formats_images/giphy.gif",
    "formats_images/ukbench09380.webp",
    "formats_images/Iggy.1024.ppm",
    "formats_images/baboon.pgm",
    "formats_images/marbles.pbm",
]


def imagehash_phash(data: bytes) -> int:
    return int(str(imagehash.phash(Image.open(io.BytesIO(data)))), 16)


def file_item(path: Path, label: str | None = None) -> IngestItem:
    return IngestItem(source=source_for_path(path), label=label, path=str(path))


def ingestor(workspace: Workspace, **limits: Any) -> Ingestor:
    settings = IngestSettings(**limits) if limits else workspace.settings.ingest
    return Ingestor(
        workspace.store, workspace.catalog, settings, store_options=workspace.settings.store.backend_options()
    )


def expected_key(data: bytes, ext: str) -> str:
    sha = hashlib.sha256(data).hexdigest()
    return f"images/{sha[:2]}/{sha}.{ext}"


# --- facts and hashes -------------------------------------------------------------------------------------


def test_analyze_facts_match_pillow_and_hashlib(photo_files: list[Path]) -> None:
    for path in photo_files[:24]:
        data = path.read_bytes()
        facts = analyze(data)
        with Image.open(path) as image:
            assert (facts.width, facts.height) == image.size
            assert facts.format == image.format == "JPEG"
            assert facts.mode == image.mode
        assert facts.ext == "jpg"
        assert facts.sha256 == hashlib.sha256(data).hexdigest()
        assert facts.size_bytes == len(data)
        assert facts.content_type == "image/jpeg"
        assert 0 <= facts.phash < 1 << 64


@pytest.mark.parametrize(
    ("name", "fmt", "ext"),
    [
        ("alpha_channel_image.png", "PNG", "png"),
        ("formats_images/copyleft.tiff", "TIFF", "tiff"),
        ("formats_images/giphy.gif", "GIF", "gif"),
        ("formats_images/ukbench09380.webp", "WEBP", "webp"),
        ("formats_images/Iggy.1024.ppm", "PPM", "ppm"),
        ("formats_images/baboon.pgm", "PPM", "pgm"),
        ("formats_images/marbles.pbm", "PPM", "pbm"),
        # Named .bmp/.png/.svg but JPEG inside: the content decides, and the key gets the true extension.
        ("formats_images/ukbench09380.bmp", "JPEG", "jpg"),
        ("formats_images/ukbench09380.png", "JPEG", "jpg"),
        ("formats_images/ukbench09380.svg", "JPEG", "jpg"),
    ],
)
def test_analyze_formats_by_content(near_duplicates_dir: Path, name: str, fmt: str, ext: str) -> None:
    path = near_duplicates_dir / name
    facts = analyze(path.read_bytes())
    with Image.open(path) as image:
        assert (facts.width, facts.height) == image.size
    assert (facts.format, facts.ext) == (fmt, ext)


@pytest.mark.parametrize("name", NON_JPEG)
def test_phash_matches_imagehash_bit_for_bit_on_non_jpeg(near_duplicates_dir: Path, name: str) -> None:
    data = (near_duplicates_dir / name).read_bytes()
    assert analyze(data).phash == imagehash_phash(data)


def test_phash_matches_imagehash_on_photos_saved_as_png(photo_files: list[Path]) -> None:
    for path in photo_files[:12]:
        buffer = io.BytesIO()
        with Image.open(path) as image:
            image.save(buffer, "PNG")
        data = buffer.getvalue()
        assert analyze(data).phash == imagehash_phash(data), path.name


def test_phash_of_jpeg_is_within_a_few_bits_of_imagehash(photo_files: list[Path]) -> None:
    """JPEGs are decoded in draft mode (DCT scaling): nearly always the same hash, never far from it."""
    distances = [hamming(analyze(p.read_bytes()).phash, imagehash_phash(p.read_bytes())) for p in photo_files[:40]]
    assert max(distances) <= 4, distances
    assert sum(d == 0 for d in distances) >= len(distances) // 2, distances


# --- hostile input -------------------------------------------------------------------------------------------


def test_bomb_stays_small_on_disk() -> None:
    assert len(bomb_png()) < 600_000


def test_every_hostile_file_is_rejected_with_its_reason(tmp_path: Path) -> None:
    expected = make_hostile_corpus(tmp_path / "hostile")
    assert len(expected) >= 10
    for name, reason in expected.items():
        path = tmp_path / "hostile" / name
        with pytest.raises(Rejected) as caught:
            analyze(read_file(str(path), max_bytes=256 * 1024 * 1024))
        assert reason.lower() in str(caught.value).lower(), (name, str(caught.value))


def test_hostile_files_never_reach_the_store_or_catalog(workspace: Workspace, tmp_path: Path) -> None:
    expected = make_hostile_corpus(tmp_path / "hostile")
    ingest = ingestor(workspace)
    for name, reason in expected.items():
        outcome = ingest.ingest(file_item(tmp_path / "hostile" / name))
        assert outcome.status == "rejected", (name, outcome)
        assert outcome.sha256 is None
        assert outcome.reason and reason.lower() in outcome.reason.lower(), (name, outcome.reason)
    assert list(workspace.store.iter("images/")) == []
    with workspace.catalog.read() as conn:
        assert count_images(conn) == 0


def test_corrupt_file_of_imagededup_is_rejected(near_duplicates_dir: Path) -> None:
    with pytest.raises(Rejected, match="not a recognised"):
        analyze((near_duplicates_dir / "mixed_images" / "ukbench09268_corrupt.jpg").read_bytes())


def test_missing_path_and_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(Rejected, match="unreadable"):
        read_file(str(tmp_path / "nope.jpg"), 1000)
    with pytest.raises(Rejected, match="not a regular file"):
        read_file(str(tmp_path), 1000)


# --- limits ---------------------------------------------------------------------------------------------------


def test_min_side_is_configurable(workspace: Workspace) -> None:
    data = valid_png(64, 40)
    assert analyze(data).width == 64
    assert analyze(data, min_side=40).height == 40
    with pytest.raises(Rejected, match="too small: 64x40, minimum side is 41 px"):
        analyze(data, min_side=41)
    source = SourceInfo(kind="url", uri="http://example.invalid/a.png")
    outcome = ingestor(workspace, min_side=100).ingest(IngestItem(source=source, data=data))
    assert (outcome.status, outcome.reason) == ("rejected", "too small: 64x40, minimum side is 100 px")
    assert ingestor(workspace, min_side=8).ingest(IngestItem(source=source, data=data)).status == "added"


def test_max_pixels_guards_against_bombs(photo_files: list[Path]) -> None:
    with pytest.raises(Rejected, match="decompression bomb"):
        analyze(photo_files[0].read_bytes(), max_pixels=10_000)


def test_max_bytes_limit_for_paths_and_bytes(workspace: Workspace, photo_files: list[Path]) -> None:
    path = photo_files[0]
    size = path.stat().st_size
    tight = ingestor(workspace, max_bytes=size - 1)
    from_path = tight.ingest(file_item(path))
    assert from_path.status == "rejected"
    assert from_path.reason and f"over the {size - 1:,}-byte limit" in from_path.reason
    from_bytes = tight.ingest(
        IngestItem(source=SourceInfo(kind="url", uri="http://x.invalid/a.jpg"), data=path.read_bytes())
    )
    assert from_bytes.status == "rejected"
    assert from_bytes.reason and "limit" in from_bytes.reason
    assert list(workspace.store.iter("images/")) == []
    assert ingestor(workspace, max_bytes=size).ingest(file_item(path)).status == "added"


# --- storage and catalog --------------------------------------------------------------------------------------


def test_original_bytes_are_stored_unchanged(
    any_workspace: Workspace, photo_files: list[Path], near_duplicates_dir: Path
) -> None:
    paths = [
        *photo_files[:4],
        near_duplicates_dir / "alpha_channel_image.png",
        near_duplicates_dir / "formats_images" / "giphy.gif",
        near_duplicates_dir / "formats_images" / "ukbench09380.svg",
    ]  # JPEG bytes behind an .svg name
    ingest = ingestor(any_workspace)
    for path in paths:
        data = path.read_bytes()
        outcome = ingest.ingest(file_item(path))
        assert outcome.status == "added", outcome
        sha = hashlib.sha256(data).hexdigest()
        assert outcome.sha256 == sha
        with any_workspace.catalog.read() as conn:
            row = get_image(conn, sha)
        assert row is not None
        assert row["object_key"] == expected_key(data, row["ext"])
        assert row["object_key"].startswith(f"images/{sha[:2]}/{sha}.")
        assert any_workspace.store.get(row["object_key"]) == data
    keys = sorted(any_workspace.store.iter("images/"))
    assert keys == sorted(
        expected_key(p.read_bytes(), e) for p, e in zip(paths, ["jpg"] * 4 + ["png", "gif", "jpg"], strict=True)
    )


def _catalog_dump(workspace: Workspace) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with workspace.catalog.read() as conn:
        rows = [
            (r["sha256"], r["object_key"], r["format"], r["width"], r["height"], r["phash"], r["label"], r["status"])
            for r in iter_images(conn)
        ]
        srcs = sorted(conn.execute(select(sources.c.sha256, sources.c.kind, sources.c.uri, sources.c.label)).all())
    return rows, [tuple(s) for s in srcs]


def test_ingest_many_with_two_workers_matches_one_worker(tmp_path: Path, photo_files: list[Path]) -> None:
    hostile = make_hostile_corpus(tmp_path / "hostile")
    copy = tmp_path / "copy-of-first.jpg"
    shutil.copyfile(photo_files[0], copy)
    paths = [*photo_files[:16], copy, *(tmp_path / "hostile" / name for name in sorted(hostile))]
    items = [file_item(p, label="cats" if i % 2 else None) for i, p in enumerate(paths)]

    results: list[tuple[list[Outcome], Any]] = []
    for workers in (1, 2):
        ws, _ = init_workspace(tmp_path / f"ws{workers}")
        outcomes = list(ingestor(ws).ingest_many(items, workers=workers))
        results.append((outcomes, _catalog_dump(ws)))
        ws.close()
    (one, dump_one), (two, dump_two) = results

    assert len(one) == len(two) == len(items)
    by_item_one = {o.item: (o.sha256, o.reason) for o in one}
    by_item_two = {o.item: (o.sha256, o.reason) for o in two}
    assert by_item_one == by_item_two
    assert sorted(o.status for o in one) == sorted(o.status for o in two)
    statuses = [o.status for o in one]
    assert statuses.count("added") == 16
    assert statuses.count("duplicate") == 1
    assert statuses.count("rejected") == len(hostile)
    assert dump_one == dump_two


def test_same_bytes_from_another_path_add_a_source_not_an_image(
    workspace: Workspace, tmp_path: Path, photo_files: list[Path]
) -> None:
    first, second = tmp_path / "a" / "one.jpg", tmp_path / "b" / "two.jpg"
    for path in (first, second):
        path.parent.mkdir()
        shutil.copyfile(photo_files[3], path)
    ingest = ingestor(workspace)
    added = ingest.ingest(file_item(first, label="dog"))
    again = ingest.ingest(file_item(second, label="wolf"))
    repeat = ingest.ingest(file_item(first))
    assert (added.status, again.status, repeat.status) == ("added", "duplicate", "duplicate")
    assert added.sha256 == again.sha256 == repeat.sha256
    sha = added.sha256
    assert sha is not None
    with workspace.catalog.read() as conn:
        assert count_images(conn) == 1
        uris = [s["uri"] for s in image_sources(conn, sha)]
        row = get_image(conn, sha)
    assert uris == [str(first.absolute()), str(second.absolute())]
    assert row is not None and row["label"] == "dog"  # a collector never overwrites an existing label
    assert len(list(workspace.store.iter("images/"))) == 1


def test_crash_between_store_and_catalog_leaves_only_an_orphan(
    any_workspace: Workspace, photo_files: list[Path]
) -> None:
    path = photo_files[5]
    ingest = ingestor(any_workspace)
    kept = ingest.ingest(file_item(photo_files[6]))
    assert kept.status == "added"

    prepared = prepare(file_item(path), any_workspace.store, any_workspace.settings.ingest)  # ... then a crash
    key = expected_key(path.read_bytes(), "jpg")
    assert prepared.object_key == key
    assert any_workspace.store.exists(key)
    with any_workspace.catalog.read() as conn:
        assert count_images(conn) == 1

    report = fsck(any_workspace)
    assert not report.ok
    assert (report.orphans, report.missing, report.corrupt) == ([key], [], [])

    fixed = fsck(any_workspace, fix=True)
    assert fixed.fixed["orphans_removed"] == 1
    assert not any_workspace.store.exists(key)
    assert fsck(any_workspace).ok

    # A rerun records the image properly.
    assert ingest.ingest(file_item(path)).status == "added"
    assert fsck(any_workspace).ok
    assert any_workspace.store.get(key) == path.read_bytes()


# --- regressions of bugs found earlier -------------------------------------------


def test_ingest_many_survives_a_dead_worker(workspace: Workspace, photo_files: list[Path]) -> None:
    paths = photo_files[:40]

    def items() -> Iterator[IngestItem]:
        for index, path in enumerate(paths):
            if index == 20:  # a worker is killed (as by the out-of-memory killer) in the middle of the run
                workers = [child.pid for child in multiprocessing.active_children() if child.pid]
                assert workers, "the pool has started its workers by now"
                os.kill(workers[0], signal.SIGKILL)
            yield file_item(path)

    outcomes = list(ingestor(workspace).ingest_many(items(), workers=2))
    assert len(outcomes) == len(paths)
    assert {o.status for o in outcomes} <= {"added", "failed"}


def test_png_with_fewer_rows_than_its_header_is_rejected() -> None:
    two_rows = zlib.compress((b"\x00" + b"\x80" * 64) * 2)
    with pytest.raises(Rejected):
        analyze(png_bytes(64, 64, two_rows))
