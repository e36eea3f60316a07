"""Server-side render time of the review grid (200 cards) on a catalog of 100,000 images.

Data: a fresh SQLite workspace filled in bulk with SQLAlchemy: image rows with realistic hash blobs, 12 labels
(30% unlabelled), review states, 3% marked near-duplicates (some with label conflicts), one source per image
(1% with a second source that suggests another label), quality flags on 5%, label and review history, and one
training run with predictions for 20% of the images. Most rows are fake (no object behind them: the grid HTML
does not read objects), but the images whose thumbnails are timed are real JPEGs stored under their true sha256.

Each grid is requested through the real app (Starlette TestClient, token auth, Jinja2 templates), several
times, with the app's caches cleared before each request (as after any label change); the median is printed.
Baselines measured in the same run: one plain scan of the catalog (`SELECT count(*) FROM images WHERE
status = 'ok'`; each grid is given as a multiple of it), and a deep page (the middle of the catalog) fetched the
naive way, OFFSET paging plus a label join, against the app's keyset query for the same page. The grids are
timed on today's schema, then again after creating the indexes the app wants (storage.catalog.review.WANTED_INDEXES).
Goal: < 300 ms per grid page of 200 on 100,000 images.
Run: `.venv/bin/python bench/review.py [--n 100000] [--repeat 7]`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from curate.review.app import create_app  # noqa: E402
from storage.catalog.review import WANTED_INDEXES, Filter, encode_cursor, grid_page  # noqa: E402
from storage.catalog.schema import (  # noqa: E402
    images,
    label_events,
    labels,
    predictions,
    quality_flags,
    review_events,
    runs,
    sources,
)
from storage.keys import image_key  # noqa: E402
from storage.workspace import Workspace, init_workspace  # noqa: E402

GOAL_MS = 300.0
LABELS = ["bird", "boat", "car", "cat", "cow", "dog", "horse", "plane", "sheep", "train", "tree", "truck"]
FLAGS = ["blurry", "dark", "small"]
REAL_IMAGES = 24
CHUNK = 10_000

warnings.filterwarnings("ignore", category=DeprecationWarning)


def real_jpeg(rng: random.Random) -> bytes:
    """A small real photo-like JPEG (a smooth gradient with noise): thumbnails decode real bytes."""
    side = rng.randint(300, 640)
    base = np.linspace(0, 255, side, dtype=np.float32)
    r = np.add.outer(base, base[::-1]) / 2
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 20, (side, side))
    rgb = np.stack([r, r[::-1], (r + noise) % 255], axis=-1).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def build_catalog(ws: Workspace, n: int, seed: int = 0) -> dict[str, object]:
    """Insert n images and their side tables in bulk; returns facts the timings need."""
    rng = random.Random(seed)
    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    real: list[str] = []
    with ws.catalog.write() as conn:
        conn.execute(labels.insert(), [{"name": name, "created_at": stamp} for name in LABELS])
        ids = {row.name: row.id for row in conn.execute(select(labels.c.id, labels.c.name))}
        run_id = conn.execute(
            runs.insert().values(kind="train", status="done", config={}, started_at=stamp, finished_at=stamp)
        ).inserted_primary_key[0]
    shas: list[str] = []
    for start in range(0, n, CHUNK):
        rows, events, srcs, flags, reviews, preds = [], [], [], [], [], []
        for k in range(start, min(n, start + CHUNK)):
            if k < REAL_IMAGES:
                data = real_jpeg(rng)
                sha = hashlib.sha256(data).hexdigest()
                ws.store.put(image_key(sha, "jpg"), data, content_type="image/jpeg")
                real.append(sha)
            else:
                sha = hashlib.sha256(f"fake-{seed}-{k}".encode()).hexdigest()
            shas.append(sha)
            label = rng.choice(LABELS) if rng.random() < 0.7 else None
            review = rng.choices(["unreviewed", "accepted", "rejected"], [85, 10, 5])[0]
            duplicate_of = shas[rng.randrange(len(shas) - 1)] if len(shas) > 10 and rng.random() < 0.03 else None
            if duplicate_of == sha:
                duplicate_of = None
            added = stamp + timedelta(seconds=k)
            rows.append(
                {
                    "sha256": sha,
                    "object_key": image_key(sha, "jpg"),
                    "ext": "jpg",
                    "format": "JPEG",
                    "size_bytes": rng.randint(20_000, 400_000),
                    "width": 640,
                    "height": 480,
                    "mode": "RGB",
                    "phash": rng.getrandbits(63),
                    "dhash": rng.getrandbits(63),
                    "phash_trim": rng.getrandbits(63),
                    "hash_variants": rng.randbytes(144),
                    "hash_version": 2,
                    "label_id": ids[label] if label else None,
                    "status": "ok",
                    "review": review,
                    "duplicate_of": duplicate_of,
                    "added_at": added,
                    "updated_at": added,
                }
            )
            uri = f"https://example.org/img/{k}.jpg"
            srcs.append({"sha256": sha, "kind": "url", "uri": uri, "label": label, "fetched_at": added})
            if rng.random() < 0.01:
                other = rng.choice(LABELS)
                srcs.append({"sha256": sha, "kind": "scrape", "uri": uri + "?2", "label": other, "fetched_at": added})
            if label:
                events.append(
                    {
                        "sha256": sha,
                        "action": "set",
                        "before": None,
                        "after": label,
                        "origin": "folder",
                        "actor": "b",
                        "at": added,
                    }
                )
            if review != "unreviewed":
                reviews.append({"sha256": sha, "before": "unreviewed", "after": review, "actor": "b", "at": added})
            if rng.random() < 0.05:
                flags.append({"sha256": sha, "flag": rng.choice(FLAGS), "value": rng.random()})
            if label and rng.random() < 0.2:
                wrong = rng.random() < 0.1
                predicted = rng.choice(LABELS) if wrong else label
                confidence = rng.uniform(0.2, 1.0)
                preds.append(
                    {
                        "run_id": run_id,
                        "sha256": sha,
                        "split": "val",
                        "true_label": label,
                        "predicted_label": predicted,
                        "confidence": confidence,
                        "loss": -float(np.log(max(confidence if not wrong else 1 - confidence, 1e-6))),
                        "needs_review": wrong or confidence < 0.5,
                    }
                )
        with ws.catalog.write() as conn:
            conn.execute(images.insert(), rows)
            conn.execute(sources.insert(), srcs)
            if events:
                conn.execute(label_events.insert(), events)
            if reviews:
                conn.execute(review_events.insert(), reviews)
            if flags:
                conn.execute(quality_flags.insert(), flags)
            if preds:
                conn.execute(predictions.insert(), preds)
    with ws.catalog.write() as conn:
        conn.execute(text("ANALYZE"))
    middle = sorted(shas)[n // 2]
    return {"real": real, "middle": middle, "label": "cat"}


def median_ms(call, repeat: int) -> float:
    call()  # warm: first-use costs (template compilation, statement caches) are not the steady state
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def naive_deep_page(ws: Workspace, offset: int) -> None:
    """The obvious way: OFFSET paging with a label join (SQLite walks and drops `offset` rows)."""
    query = (
        select(images, labels.c.name)
        .select_from(images.outerjoin(labels, images.c.label_id == labels.c.id))
        .where(images.c.status == "ok")
        .order_by(images.c.sha256)
        .offset(offset)
        .limit(200)
    )
    with ws.catalog.read() as conn:
        conn.execute(query).all()


def time_grids(ws: Workspace, facts: dict[str, object], repeat: int) -> dict[str, float]:
    from starlette.testclient import TestClient

    app = create_app(ws, token="bench")
    client = TestClient(app, headers={"authorization": "Bearer bench"})
    deep = encode_cursor([facts["middle"]])
    cases = {
        "all": "/",
        "all, deep page (keyset)": f"/?after={deep}",
        "label=cat": "/?label=cat",
        "unlabelled": "/?view=unlabelled",
        "unreviewed": "/?review=unreviewed",
        "accepted": "/?review=accepted",
        "flag=blurry": "/?view=flagged&flag=blurry",
        "duplicates": "/?view=duplicates",
        "conflicts": "/?view=conflicts",
        "misclassified": "/?view=misclassified",
        "low confidence": "/?view=lowconf",
        "label=cat + unreviewed": "/?label=cat&review=unreviewed",
    }
    results: dict[str, float] = {}
    for name, url in cases.items():

        def get(url: str = url) -> None:
            app.state.review.cache.clear()  # cold: legend and view size computed again, as after any change
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code, response.text[:200])
            assert response.text.count('class="card ') == 200, (url, response.text.count('class="card '))

        results[name] = median_ms(get, repeat)
    return results


def time_thumbs(ws: Workspace, facts: dict[str, object]) -> tuple[float, float]:
    from starlette.testclient import TestClient

    client = TestClient(create_app(ws, token="bench"), headers={"authorization": "Bearer bench"})
    real = list(facts["real"])  # type: ignore[call-overload]
    first, again = [], []
    for sha in real:
        started = time.perf_counter()
        assert client.get(f"/thumb/{sha}").status_code == 200
        first.append((time.perf_counter() - started) * 1000)
    fresh = TestClient(create_app(ws, token="bench"), headers={"authorization": "Bearer bench"})  # empty memory cache
    for sha in real:
        started = time.perf_counter()
        assert fresh.get(f"/thumb/{sha}").status_code == 200
        again.append((time.perf_counter() - started) * 1000)
    return statistics.median(first), statistics.median(again)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="catalog size")
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per grid (median)")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="gleaner-bench-review-") as tmp:
        ws, _ = init_workspace(Path(tmp) / "ws")
        started = time.perf_counter()
        facts = build_catalog(ws, args.n)
        console.print(f"built a catalog of {args.n:,} images in {time.perf_counter() - started:.1f} s")

        def scan() -> None:
            with ws.catalog.read() as conn:
                conn.execute(select(func.count()).select_from(images).where(images.c.status == "ok")).scalar_one()

        def keyset_deep_page() -> None:
            with ws.catalog.read() as conn:
                grid_page(conn, Filter(), after=encode_cursor([facts["middle"]]))

        scan_ms = median_ms(scan, args.repeat)
        naive_ms = median_ms(lambda: naive_deep_page(ws, args.n // 2), args.repeat)
        keyset_ms = median_ms(keyset_deep_page, args.repeat)
        before = time_grids(ws, facts, args.repeat)
        with ws.catalog.write() as conn:
            for statement in WANTED_INDEXES:
                conn.execute(text(statement))
            conn.execute(text("ANALYZE"))
        after = time_grids(ws, facts, args.repeat)
        thumb_first, thumb_stored = time_thumbs(ws, facts)
        ws.close()

    table = Table(title=f"Review grid, 200 cards, {args.n:,} images (median of {args.repeat}, ms)")
    table.add_column("filter")
    table.add_column("schema now", justify="right")
    table.add_column("+ wanted indexes", justify="right")
    table.add_column("÷ one catalog scan", justify="right")
    for name in before:
        table.add_row(name, f"{before[name]:.1f}", f"{after[name]:.1f}", f"{after[name] / scan_ms:.1f}×")
    console.print(table)
    worst_now, worst = max(before.values()), max(after.values())
    console.print(
        f"baselines: one catalog scan (count of whole images) {scan_ms:.1f} ms; deep page query: naive OFFSET "
        f"{naive_ms:.1f} ms, keyset {keyset_ms:.1f} ms ({naive_ms / keyset_ms:.0f}× faster)"
    )
    console.print(
        f"thumbnails of real {REAL_IMAGES} JPEGs: {thumb_first:.1f} ms first (decode + store), "
        f"{thumb_stored:.1f} ms when stored"
    )
    verdict = "[green]met[/]" if worst < GOAL_MS else "[red]missed[/]"
    console.print(
        f"slowest grid: {worst:.1f} ms with the wanted indexes, {worst_now:.1f} ms on today's schema; "
        f"goal < {GOAL_MS:.0f} ms: {verdict}"
    )
    if os.environ.get("BENCH_STRICT") and worst >= GOAL_MS:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
