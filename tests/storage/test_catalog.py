"""The catalog on SQLite and on a real PostgreSQL server: schema versions, images, labels, concurrency."""

from __future__ import annotations

import hashlib
import multiprocessing
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.catalog import (
    SCHEMA_VERSION,
    Catalog,
    ImageFacts,
    SourceInfo,
    add_label,
    count_images,
    ensure_label,
    finish_run,
    get_image,
    image_sources,
    iter_images,
    label_counts,
    label_history,
    mark_status,
    merge_labels,
    record_image,
    rename_label,
    resolve_sha,
    set_label,
    start_run,
)
from storage.catalog.migrations import current_version, upgrade
from storage.catalog.schema import images, label_events, labels, meta, runs, sources
from storage.catalog.sql import signed64, unsigned64
from storage.errors import GleanerError
from storage.keys import image_key

ACTOR = "tester"
TOP_BIT_PHASH = 0xF0E1_D2C3_B4A5_9687  # >= 2**63: stored as a negative BIGINT


def sha_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def facts(sha: str, *, phash: int = 0x1234_5678_9ABC_DEF0) -> ImageFacts:
    return ImageFacts(
        sha256=sha, format="JPEG", ext="jpg", size_bytes=1234, width=64, height=48, mode="RGB", phash=phash
    )


def record(
    catalog: Catalog,
    sha: str,
    uri: str,
    *,
    label: str | None = None,
    kind: str = "file",
    phash: int = 0x1234_5678_9ABC_DEF0,
    actor: str = ACTOR,
) -> bool:
    with catalog.write() as conn:
        return record_image(
            conn,
            facts(sha, phash=phash),
            image_key(sha, "jpg"),
            SourceInfo(kind=kind, uri=uri),
            label=label,
            origin="folder",
            actor=actor,
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'c.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with Catalog(catalog_url) as cat:
        yield cat


# --- schema versions ---------------------------------------------------------------------------------------


def test_fresh_catalog_is_stamped(catalog: Catalog) -> None:
    with catalog.read() as conn:
        assert current_version(conn) == SCHEMA_VERSION
        rows = conn.execute(select(meta.c.key, meta.c.value)).all()
    assert [tuple(r) for r in rows] == [("schema_version", str(SCHEMA_VERSION))]
    assert catalog.dialect in ("sqlite", "postgresql")


def test_reopening_is_a_no_op(catalog_url: str) -> None:
    with Catalog(catalog_url) as first:
        record(first, sha_of("a"), "/a.jpg", label="cat")
    with Catalog(catalog_url) as second:
        with second.read() as conn:
            assert current_version(conn) == SCHEMA_VERSION
            assert count_images(conn) == 1
            assert conn.execute(select(func.count()).select_from(meta)).scalar_one() == 1
            assert label_counts(conn) == {"cat": 1}
        with second.write() as conn:
            assert upgrade(conn) == SCHEMA_VERSION  # already current: nothing to do


def test_newer_schema_version_is_refused(catalog_url: str) -> None:
    with Catalog(catalog_url) as cat, cat.write() as conn:
        conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(GleanerError, match="newer than this Gleaner"):
        Catalog(catalog_url)
    Catalog(catalog_url, migrate=False).close()  # opening without migrating does not check


def test_invalid_catalog_url_is_a_gleaner_error() -> None:
    with pytest.raises(GleanerError):
        Catalog("not a url at all")


# --- images and sources ----------------------------------------------------------------------------------


def test_record_image_adds_once_and_collects_sources(catalog: Catalog) -> None:
    sha = sha_of("one")
    assert record(catalog, sha, "/photos/one.jpg") is True
    assert record(catalog, sha, "/photos/one.jpg") is False  # same uri: no new source row
    assert record(catalog, sha, "/elsewhere/copy.jpg") is False  # new uri: a second source row
    assert record(catalog, sha, "/photos/one.jpg", kind="watch") is False  # same uri, other kind
    with catalog.read() as conn:
        assert count_images(conn) == 1
        found = image_sources(conn, sha)
        image = get_image(conn, sha)
    assert [(s["kind"], s["uri"]) for s in found] == [
        ("file", "/photos/one.jpg"),
        ("file", "/elsewhere/copy.jpg"),
        ("watch", "/photos/one.jpg"),
    ]
    assert image is not None
    assert image["object_key"] == image_key(sha, "jpg")
    assert (image["width"], image["height"], image["format"], image["size_bytes"]) == (64, 48, "JPEG", 1234)
    assert image["status"] == "ok" and image["review"] == "unreviewed" and image["label"] is None


def test_record_image_restores_a_missing_image(catalog: Catalog) -> None:
    sha = sha_of("lost")
    record(catalog, sha, "/a.jpg")
    with catalog.write() as conn:
        mark_status(conn, sha, "missing")
    assert record(catalog, sha, "/a.jpg") is True  # stored again: whole again
    with catalog.read() as conn:
        image = get_image(conn, sha)
    assert image is not None and image["status"] == "ok"


def test_restoring_a_missing_image_keeps_label_and_history_true(catalog: Catalog) -> None:
    labelled, plain = sha_of("labelled"), sha_of("plain")
    record(catalog, labelled, "/cats/x.jpg", label="cat")
    record(catalog, plain, "/y.jpg")
    with catalog.write() as conn:
        mark_status(conn, labelled, "missing")
        mark_status(conn, plain, "missing")
    record(catalog, labelled, "/dogs/x.jpg", label="dog")
    record(catalog, plain, "/dogs/y.jpg", label="dog")
    with catalog.read() as conn:
        first, second = get_image(conn, labelled), get_image(conn, plain)
        history_labelled = [(e["action"], e["before"], e["after"]) for e in label_history(conn, labelled)]
        history_plain = [(e["action"], e["before"], e["after"]) for e in label_history(conn, plain)]
    assert first is not None and second is not None
    # Every history row must describe a real change of the image's current label.
    assert (first["label"], history_labelled) == ("cat", [("set", None, "cat")])
    assert (second["label"], history_plain) == ("dog", [("set", None, "dog")])


def test_failed_transaction_leaves_nothing(catalog: Catalog) -> None:
    with pytest.raises(RuntimeError), catalog.write() as conn:
        record_image(
            conn,
            facts(sha_of("x")),
            image_key(sha_of("x"), "jpg"),
            SourceInfo(kind="file", uri="/x"),
            label="ghost",
            origin="folder",
            actor=ACTOR,
        )
        raise RuntimeError("crash before commit")
    with catalog.read() as conn:
        assert count_images(conn) == 0
        assert conn.execute(select(func.count()).select_from(sources)).scalar_one() == 0
        assert label_counts(conn) == {}


def test_label_is_set_only_when_unlabelled(catalog: Catalog) -> None:
    sha = sha_of("pet")
    record(catalog, sha, "/cats/pet.jpg", label="cat")
    record(catalog, sha, "/dogs/pet.jpg", label="dog")  # a collector never overwrites a label
    with catalog.read() as conn:
        image = get_image(conn, sha)
        found = image_sources(conn, sha)
        history = label_history(conn, sha)
    assert image is not None and image["label"] == "cat"
    assert [s["label"] for s in found] == ["cat", "dog"]  # each source keeps what it suggested
    assert [(e["action"], e["before"], e["after"], e["origin"], e["actor"]) for e in history] == [
        ("set", None, "cat", "folder", ACTOR)
    ]

    unlabelled = sha_of("plain")
    record(catalog, unlabelled, "/plain.jpg")
    record(catalog, unlabelled, "/birds/plain.jpg", label="bird")  # now it gets one
    with catalog.read() as conn:
        image = get_image(conn, unlabelled)
    assert image is not None and image["label"] == "bird"


def test_iter_images_and_status_filter(catalog: Catalog) -> None:
    shas = sorted(sha_of(f"i{n}") for n in range(5))
    for n, sha in enumerate(shas):
        record(catalog, sha, f"/{n}.jpg")
    with catalog.write() as conn:
        mark_status(conn, shas[1], "corrupt")
    with catalog.read() as conn:
        assert [row["sha256"] for row in iter_images(conn)] == shas
        assert [row["sha256"] for row in iter_images(conn, status="corrupt")] == [shas[1]]
        assert len(list(iter_images(conn, status="ok"))) == 4


@pytest.mark.parametrize("phash", [TOP_BIT_PHASH, 1 << 63, (1 << 64) - 1, 0, (1 << 63) - 1])
def test_phash_round_trip(catalog: Catalog, phash: int) -> None:
    sha = sha_of(f"phash-{phash}")
    record(catalog, sha, "/p.jpg", phash=phash)
    with catalog.read() as conn:
        image = get_image(conn, sha)
        raw = conn.execute(select(images.c.phash).where(images.c.sha256 == sha)).scalar_one()
        listed = [row["phash"] for row in iter_images(conn)]
    assert image is not None and image["phash"] == phash
    assert listed == [phash]
    assert raw == signed64(phash)
    assert -(1 << 63) <= raw < (1 << 63)


def test_signed_unsigned_conversion() -> None:
    assert signed64(TOP_BIT_PHASH) < 0
    assert unsigned64(signed64(TOP_BIT_PHASH)) == TOP_BIT_PHASH
    for value in (0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1):
        assert unsigned64(signed64(value)) == value
    assert signed64((1 << 64) - 1) == -1
    assert signed64(5) == 5


# --- labels and their history ----------------------------------------------------------------------------


def _events(conn: Any) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        select(
            label_events.c.sha256,
            label_events.c.action,
            label_events.c.before,
            label_events.c.after,
            label_events.c.origin,
            label_events.c.actor,
        ).order_by(label_events.c.id)
    )
    return [tuple(row) for row in rows]


def test_add_label(catalog: Catalog) -> None:
    with catalog.write() as conn:
        assert add_label(conn, "cat", actor="ann") is True
        assert add_label(conn, "cat", actor="bob") is False
        assert add_label(conn, "  dog  ", actor="ann", origin="human") is True
    with catalog.read() as conn:
        assert label_counts(conn) == {"cat": 0, "dog": 0}
        assert label_counts(conn, include_empty=False) == {}
        assert _events(conn) == [(None, "add", None, "cat", "cli", "ann"), (None, "add", None, "dog", "human", "ann")]


@pytest.mark.parametrize("name", ["", "   ", "a/b", "a\\b", "two\nlines", "tab\there", "x" * 201])
def test_invalid_label_names(catalog: Catalog, name: str) -> None:
    with pytest.raises(GleanerError, match="invalid label name"), catalog.write() as conn:
        add_label(conn, name, actor=ACTOR)
    with catalog.read() as conn:
        assert label_counts(conn) == {}


def test_rename_label(catalog: Catalog) -> None:
    a, b = sha_of("r1"), sha_of("r2")
    record(catalog, a, "/a.jpg", label="kitty")
    record(catalog, b, "/b.jpg", label="kitty")
    with catalog.write() as conn:
        ensure_label(conn, "dog")
        assert rename_label(conn, "kitty", "cat", actor="ann") == 2
    with catalog.read() as conn:
        assert label_counts(conn) == {"cat": 2, "dog": 0}
        image = get_image(conn, a)
        assert image is not None and image["label"] == "cat"
        assert _events(conn)[-1] == (None, "rename", "kitty", "cat", "cli", "ann")
    with pytest.raises(GleanerError, match="already exists"), catalog.write() as conn:
        rename_label(conn, "cat", "dog", actor="ann")
    with pytest.raises(GleanerError, match="no label named"), catalog.write() as conn:
        rename_label(conn, "kitty", "whatever", actor="ann")


def test_merge_labels(catalog: Catalog) -> None:
    a, b, c = sha_of("m1"), sha_of("m2"), sha_of("m3")
    record(catalog, a, "/a.jpg", label="kitten")
    record(catalog, b, "/b.jpg", label="kitty")
    record(catalog, c, "/c.jpg", label="cat")
    with catalog.write() as conn:
        assert merge_labels(conn, ["kitten", "kitty", "cat"], "cat", actor="ann", origin="human") == 2
    with catalog.read() as conn:
        assert label_counts(conn) == {"cat": 3}
        events = _events(conn)[3:]  # after the three "set" events of the recordings
    assert events == [
        (a, "set", "kitten", "cat", "human", "ann"),
        (None, "merge", "kitten", "cat", "human", "ann"),
        (b, "set", "kitty", "cat", "human", "ann"),
        (None, "merge", "kitty", "cat", "human", "ann"),
    ]


def test_merge_into_a_new_label_and_failed_merge_rolls_back(catalog: Catalog) -> None:
    record(catalog, sha_of("f1"), "/1.jpg", label="feline")
    with pytest.raises(GleanerError, match="no label named"), catalog.write() as conn:
        merge_labels(conn, ["feline", "nonexistent"], "cat", actor=ACTOR)
    with catalog.read() as conn:
        assert label_counts(conn) == {"feline": 1}  # nothing of the failed merge remains
    with catalog.write() as conn:
        assert merge_labels(conn, ["feline"], "cat", actor=ACTOR) == 1
    with catalog.read() as conn:
        assert label_counts(conn) == {"cat": 1}


def test_set_and_clear_label(catalog: Catalog) -> None:
    a, b = sha_of("s1"), sha_of("s2")
    record(catalog, a, "/a.jpg", label="cat")
    record(catalog, b, "/b.jpg")
    with catalog.write() as conn:
        assert set_label(conn, [a, b], "dog", actor="ann", origin="human") == 2
        assert set_label(conn, [a, b], "dog", actor="ann", origin="human") == 0  # no change, no event
        assert set_label(conn, [b], None, actor="bob", origin="human") == 1
        assert set_label(conn, [b], None, actor="bob", origin="human") == 0
    with catalog.read() as conn:
        assert label_counts(conn) == {"cat": 0, "dog": 1}
        history_a = label_history(conn, a)
        history_b = label_history(conn, b)
        newest = label_history(conn, limit=1)
    assert [(e["action"], e["before"], e["after"], e["actor"], e["origin"]) for e in history_a] == [
        ("set", "cat", "dog", "ann", "human"),
        ("set", None, "cat", ACTOR, "folder"),
    ]
    assert [(e["action"], e["before"], e["after"], e["actor"]) for e in history_b] == [
        ("clear", "dog", None, "bob"),
        ("set", None, "dog", "ann"),
    ]
    assert len(newest) == 1 and newest[0]["action"] == "clear"
    assert all(e["at"] is not None for e in history_a + history_b)
    with pytest.raises(GleanerError, match="no image with sha256"), catalog.write() as conn:
        set_label(conn, [sha_of("nope")], "cat", actor=ACTOR)


def test_label_counts_skip_rejected_missing_and_duplicates(catalog: Catalog) -> None:
    shas = [sha_of(f"c{n}") for n in range(5)]
    for n, sha in enumerate(shas):
        record(catalog, sha, f"/{n}.jpg", label="cat")
    record(catalog, sha_of("d"), "/d.jpg", label="dog")
    with catalog.write() as conn:
        conn.execute(images.update().where(images.c.sha256 == shas[1]).values(review="rejected"))
        mark_status(conn, shas[2], "missing")
        conn.execute(images.update().where(images.c.sha256 == shas[3]).values(duplicate_of=shas[0]))
        conn.execute(images.update().where(images.c.sha256 == shas[4]).values(review="accepted"))
        conn.execute(images.update().where(images.c.sha256 == sha_of("d")).values(review="rejected"))
        ensure_label(conn, "empty")
    with catalog.read() as conn:
        assert label_counts(conn) == {"cat": 2, "dog": 0, "empty": 0}
        assert label_counts(conn, include_empty=False) == {"cat": 2}


# --- looking up images by prefix -------------------------------------------------------------------------


def test_resolve_sha(catalog: Catalog) -> None:
    first = "abcdef01" + "0" * 56
    second = "abcdef02" + "1" * 56
    record(catalog, first, "/1.jpg")
    record(catalog, second, "/2.jpg")
    with catalog.read() as conn:
        assert resolve_sha(conn, first) == first
        assert resolve_sha(conn, "abcdef01") == first
        assert resolve_sha(conn, "ABCDEF02") == second
        assert resolve_sha(conn, "  abcdef02 ") == second
        with pytest.raises(GleanerError, match="ambiguous"):
            resolve_sha(conn, "abcdef")
        with pytest.raises(GleanerError, match="no image"):
            resolve_sha(conn, "ffffff")
        for bad in ("abcde", "", "abcdeg", "abc-def01", "%abcdef"):
            with pytest.raises(GleanerError, match="not a sha256"):
                resolve_sha(conn, bad)


def test_runs(catalog: Catalog) -> None:
    with catalog.write() as conn:
        run_id = start_run(conn, "import", {"paths": ["/x"]})
    with catalog.write() as conn:
        finish_run(conn, run_id, "done", {"added": 3})
    with catalog.read() as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).one()
    assert (row.kind, row.status, row.config, row.summary) == ("import", "done", {"paths": ["/x"]}, {"added": 3})
    assert row.finished_at is not None


# --- several processes writing at once -------------------------------------------------------------------

COMMON = sha_of("seen by every worker")


def _writer(url: str, worker: int, count: int, barrier: Any, results: Any) -> None:
    """One OS process: open (and maybe create) the catalog, then write `count` images, one per transaction."""
    try:
        barrier.wait(timeout=120)  # everybody opens the fresh catalog at the same moment
        catalog = Catalog(url)
        try:
            with catalog.write() as conn:
                created = add_label(conn, "race", actor=f"w{worker}")
            added = 0
            for n in range(count):
                added += record(
                    catalog, sha_of(f"w{worker}-{n}"), f"/w{worker}/{n}.jpg", label="shared", actor=f"w{worker}"
                )
                if n == count // 2:
                    added += record(catalog, COMMON, f"/w{worker}/common.jpg", label="shared", actor=f"w{worker}")
        finally:
            catalog.close()
        results.put((worker, added, created, None))
    except BaseException:
        results.put((worker, 0, False, traceback.format_exc()))


def _run_writers(url: str, workers: int, count: int) -> list[tuple[int, int, bool, str | None]]:
    """Run the writers; check that none failed and that the catalog holds exactly what they wrote."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    processes = [ctx.Process(target=_writer, args=(url, w, count, barrier, results)) for w in range(workers)]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=240) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    errors = [error for _w, _a, _c, error in reports if error]
    assert not errors, "\n".join(errors)
    assert all(process.exitcode == 0 for process in processes)

    with Catalog(url) as catalog, catalog.read() as conn:
        assert current_version(conn) == SCHEMA_VERSION
        assert conn.execute(select(func.count()).select_from(meta)).scalar_one() == 1
        assert count_images(conn) == workers * count + 1
        assert conn.execute(select(func.count()).select_from(sources)).scalar_one() == workers * (count + 1)
        assert len(image_sources(conn, COMMON)) == workers
        assert sorted(conn.execute(select(labels.c.name)).scalars()) == ["race", "shared"]
        assert label_counts(conn) == {"race": 0, "shared": workers * count + 1}
    return reports


def _check_reports_and_history(url: str, reports: list[tuple[int, int, bool, str | None]], total: int) -> None:
    """What the writers were told matches what happened: each image added once, the label created once."""
    assert sum(added for _w, added, _c, _e in reports) == total  # COMMON counted as added exactly once
    assert sum(created for _w, _a, created, _e in reports) == 1  # exactly one worker created "race"
    with Catalog(url) as catalog, catalog.read() as conn:
        actions = conn.execute(select(label_events.c.action, func.count()).group_by(label_events.c.action)).all()
    assert {a: int(n) for a, n in actions} == {"add": 1, "set": total}


def test_concurrent_processes_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'shared.db'}"  # does not exist yet: the workers race to create it
    reports = _run_writers(url, workers=4, count=100)
    _check_reports_and_history(url, reports, total=4 * 100 + 1)


@pytest.mark.postgres
def test_concurrent_processes_on_postgres(pg_url: str) -> None:
    reports = _run_writers(pg_url, workers=4, count=25)  # an empty database: the workers race to migrate it
    _check_reports_and_history(pg_url, reports, total=4 * 25 + 1)
