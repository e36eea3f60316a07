"""`harvest urls` against the fixture site: list formats, labels, failures, reruns, --retry-failed, SIGKILL.

Format and failure tests call the library in-process (ingest in this process, no rate limit) to stay quick;
the rerun, retry and kill-and-resume tests run the console entry point as a user would.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from harvest.fetch import FetchPolicy
from harvest.urls import harvest_urls
from storage.catalog import (
    Catalog,
    FrontierEntry,
    FrontierUpdate,
    add_urls,
    frontier_counts,
    image_sources,
    iter_images,
    job_key,
    mark_batch,
    mark_done,
    mark_failed,
    mark_skipped,
    pending,
    requeue_failed,
)
from storage.errors import GleanerError
from storage.workspace import open_workspace
from tests.harvest.test_import import assert_summary, curate, harvest, ok_json
from tests.support.site import Request, Response, Site

FAST = FetchPolicy(allow_private=True, per_host_rate=0, retries=0)


def write_list(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write rows as CSV, TSV, JSONL or Parquet, chosen by the file's extension."""
    suffix = path.suffixes[-2] if path.suffix == ".gz" else path.suffix
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "wt", newline="") as handle:  # type: ignore[operator]
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    return path


def run(ws: Path, path: Path, **options: Any) -> dict[str, Any]:
    options.setdefault("policy", FAST)
    with open_workspace(ws) as workspace:
        return harvest_urls(workspace, path, workers=1, **options).to_json()


def catalog(ws: Path) -> dict[str, dict[str, Any]]:
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        return {row["sha256"]: row for row in iter_images(conn)}


def claim_owners(ws: Path) -> set[str]:
    """The workers holding claims on the workspace's frontier rows."""
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        query = sa.text("SELECT DISTINCT lease_owner FROM frontier WHERE lease_owner IS NOT NULL")
        return set(conn.execute(query).scalars())


def sha(site: Site, name: str) -> str:
    return hashlib.sha256(site.photo(name)).hexdigest()


def counts(ws: Path, path: Path) -> dict[str, int]:
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        return frontier_counts(conn, job_key("urls", str(path.resolve())))


def cli_urls(ws: Path, path: Path, *args: str) -> dict[str, Any]:
    return ok_json(
        harvest("urls", path, "--allow-private", "--per-host-rate", "0", *args, "--json", "-w", ws, cwd=ws.parent)
    )


@pytest.mark.parametrize("name", ["list.csv", "list.tsv", "list.jsonl", "list.parquet", "list.csv.gz"])
def test_list_formats_with_labels(site: Site, ws: Path, tmp_path: Path, name: str) -> None:
    photos = site.photo_names[:4]
    rows = [{"url": site.url(f"/img/{p}"), "label": "cat" if i % 2 else "dog"} for i, p in enumerate(photos)]
    document = run(ws, write_list(tmp_path / name, rows))
    assert_summary(document, added=4, duplicates=0, rejected=0, failed=0)
    images = catalog(ws)
    assert {images[sha(site, p)]["label"] for p in photos} == {"cat", "dog"}
    assert images[sha(site, photos[1])]["label"] == "cat"
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        (source,) = image_sources(conn, sha(site, photos[0]))
    assert (source["kind"], source["uri"], source["http_status"]) == ("url", rows[0]["url"], 200)
    assert source["label"] == "dog" and source["fetched_at"] is not None


def test_url_and_label_columns_default_label_text_lists_and_format(site: Site, ws: Path, tmp_path: Path) -> None:
    photos = site.photo_names[4:8]
    rows = [{"link": site.url(f"/img/{p}"), "kind": "bird" if i else ""} for i, p in enumerate(photos)]
    document = run(ws, write_list(tmp_path / "custom.csv", rows), url_col="link", label_col="kind", label="other")
    assert_summary(document, added=4)
    images = catalog(ws)
    assert [images[sha(site, p)]["label"] for p in photos] == ["other", "bird", "bird", "bird"]

    text = tmp_path / "plain.data"
    text.write_text(f"# one URL a line\n{site.url('/img/' + site.photo_names[8])}\n\n")
    assert_summary(run(ws, text, fmt="txt", label="txt"), added=1)
    with pytest.raises(GleanerError, match="no column 'url'"):
        run(ws, write_list(tmp_path / "nourl.csv", [{"href": "x"}]))
    with pytest.raises(GleanerError, match="cannot tell the list format"):
        run(ws, text)


def test_fetch_failures_and_rejections_are_reported_by_kind(site: Site, ws: Path, tmp_path: Path) -> None:
    site.reset()
    good = site.photo_names[10]
    rows = [
        {"url": site.url(f"/img/{good}")},
        {"url": site.url("/img/no-such.jpg")},
        {"url": site.url("/fault/html-as-jpeg")},
        {"url": site.url("/fault/pixel.gif")},
        {"url": site.url(f"/private/{good}")},
        {"url": site.url("/fault/noai")},
        {"url": site.url("/fault/switch/urls-down")},
        {"url": "ftp://example.org/a.jpg"},
        {"url": ""},
    ]
    path = write_list(tmp_path / "mixed.csv", rows)
    document = run(ws, path)
    assert_summary(document, added=1, duplicates=0, rejected=2, failed=6)
    reasons = {p["item"]: p["reason"] for p in document["problems"]}
    assert reasons[site.url("/img/no-such.jpg")] == "http_4xx: HTTP 404 Not Found"
    assert reasons[site.url("/fault/html-as-jpeg")].startswith("content_type: ")
    assert reasons[site.url(f"/private/{good}")].startswith("robots: ")
    assert reasons[site.url("/fault/noai")].startswith("noai: ")
    assert reasons[site.url("/fault/switch/urls-down")].startswith("http_5xx: ")
    assert reasons["ftp://example.org/a.jpg"].startswith("scheme: ")
    assert "too small" in reasons[site.url("/fault/pixel.gif")]
    assert reasons["mixed.csv:10"] == "no URL in column 'url'"
    assert document["errors_by_kind"]["http_4xx"] == 1 and document["errors_by_kind"]["rejected"] == 1
    assert site.hits[f"/private/{good}"] == 0
    # Final refusals are skipped for good; only the 5xx is worth another try.
    assert counts(ws, path) == {"pending": 0, "done": 1, "failed": 1, "skipped": 6}


def test_plain_rerun_retries_failures_and_skips_the_rest(site: Site, ws: Path, tmp_path: Path) -> None:
    good, flaky = site.photo_names[11], site.photo_names[12]
    rows = [{"url": site.url(f"/img/{good}")}, {"url": site.url(f"/fault/switch/rerun-x?img={flaky}")}]
    path = write_list(tmp_path / "rerun.csv", rows)
    assert_summary(run(ws, path), added=1, failed=1)
    site.flags["rerun-x"] = True
    site.reset()
    again = run(ws, path)
    assert_summary(again, added=1, duplicates=1, failed=0)  # the done URL counts as a duplicate, unfetched
    assert again["previously_done"] == 1 and again["fetched"] == 1
    assert site.hits[f"/img/{good}"] == 0
    assert counts(ws, path)["done"] == 2


def test_cli_rerun_is_idempotent(site: Site, ws: Path, tmp_path: Path) -> None:
    photos = site.photo_names[20:26]
    path = write_list(tmp_path / "urls.csv", [{"url": site.url(f"/img/{p}"), "label": "cli"} for p in photos])
    first = cli_urls(ws, path)
    assert_summary(first, added=6, duplicates=0, rejected=0, failed=0)
    site.reset()
    second = cli_urls(ws, path)
    assert_summary(second, added=0, duplicates=6, rejected=0, failed=0)
    assert second["fetched"] == 0 and sum(site.hits.values()) == 0
    assert ok_json(curate("labels", "--json", "-w", ws, cwd=ws.parent))["labels"] == {"cli": 6}


def test_cli_retry_failed_requeues_only_failures(site: Site, ws: Path, tmp_path: Path) -> None:
    good, flaky, late = site.photo_names[30], site.photo_names[31], site.photo_names[32]
    rows = [{"url": site.url(f"/img/{good}")}, {"url": site.url(f"/fault/switch/retry-y?img={flaky}")}]
    path = write_list(tmp_path / "retry.csv", rows)
    assert_summary(run(ws, path), added=1, failed=1)
    with path.open("a") as handle:  # a new row: --retry-failed must not read the list
        handle.write(site.url(f"/img/{late}") + "\n")
    site.flags["retry-y"] = True
    site.reset()
    document = cli_urls(ws, path, "--retry-failed")
    assert_summary(document, added=1, duplicates=0, failed=0)
    assert site.hits["/fault/switch/retry-y"] == 1 and site.hits[f"/img/{late}"] == 0
    assert sha(site, flaky) in catalog(ws) and sha(site, late) not in catalog(ws)


def test_cli_refuses_loopback_without_allow_private(site: Site, ws: Path, tmp_path: Path) -> None:
    site.reset()
    path = write_list(tmp_path / "ssrf.csv", [{"url": site.url(f"/img/{site.photo_names[40]}")}])
    document = ok_json(harvest("urls", path, "--json", "-w", ws, cwd=ws.parent))
    assert_summary(document, added=0, failed=1)
    assert document["problems"][0]["reason"].startswith("ssrf: ")
    assert sum(site.hits.values()) == 0


def test_cli_user_errors_are_one_line(ws: Path, tmp_path: Path) -> None:
    path = write_list(tmp_path / "bad.csv", [{"href": "http://example.org/a.jpg"}])
    result = harvest("urls", path, "-w", ws, cwd=ws.parent)
    assert result.code != 0 and "Traceback" not in result.stderr
    assert "no column 'url'" in result.stderr


def test_sigkill_mid_run_then_rerun_stores_every_image_once(site: Site, ws: Path, tmp_path: Path) -> None:
    photos = site.photo_names[60:120]
    path = write_list(tmp_path / "kill.csv", [{"url": site.url(f"/fault/hold?ms=150&img={p}")} for p in photos])
    command = [sys.executable, "-m", "harvest.cli", "urls", str(path), "--allow-private", "--per-host-rate", "0",
               "--concurrency", "3", "--json", "-w", str(ws)]  # fmt: skip
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_")}
    for kill_after in (5, 25):  # two SIGKILLs at different points of the run
        process = subprocess.Popen(
            command, cwd=ws.parent, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while len(catalog(ws)) < kill_after and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert process.poll() is None, "the run finished before it could be killed"
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: the CLI and its ingest workers
            process.wait()
        assert kill_after <= len(catalog(ws)) < len(photos)
    final = cli_urls(ws, path)
    assert final["failed"] == 0 and final["rejected"] == 0
    assert final["added"] + final["duplicates"] == len(photos)
    images = catalog(ws)
    assert set(images) == {sha(site, p) for p in photos}  # every image, each exactly once (content address)
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        per_image = Counter(len(image_sources(conn, digest)) for digest in images)
    assert per_image == Counter({1: len(photos)})  # one source row per URL, however often it was fetched
    assert counts(ws, path) == {"pending": 0, "done": len(photos), "failed": 0, "skipped": 0}
    report = ok_json(curate("fsck", "--json", "-w", ws, cwd=ws.parent))
    assert report["ok"] is True and report["orphans"] == [], report


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_frontier_states_on_both_catalogs(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    with Catalog(url) as catalog, catalog.write() as conn:
        entries = [FrontierEntry(f"http://x.example/{i % 700}.jpg", "image", label="l") for i in range(1000)]
        assert add_urls(conn, "j", entries) == 700  # duplicates in the input are ignored too
        assert add_urls(conn, "j", [FrontierEntry("http://x.example/1.jpg", "image")]) == 0
        assert add_urls(conn, "other", [FrontierEntry("http://x.example/1.jpg", "image")]) == 1  # jobs are apart
        first = pending(conn, "j", "image", limit=10)
        assert [row["url"] for row in first][:2] == ["http://x.example/0.jpg", "http://x.example/1.jpg"]
        assert len(pending(conn, "j", limit=1000, after_id=first[-1]["id"])) == 690
        mark_done(conn, "j", "image", "http://x.example/0.jpg", "a" * 64)
        mark_failed(conn, "j", "image", "http://x.example/1.jpg", "timeout: slow")
        mark_skipped(conn, "j", "image", "http://x.example/2.jpg", "robots: disallowed")
        mark_batch(conn, "j", [FrontierUpdate("image", "http://x.example/3.jpg", "failed", "http_5xx: HTTP 500")])
        assert frontier_counts(conn, "j") == {"pending": 696, "done": 1, "failed": 2, "skipped": 1}
        assert requeue_failed(conn, "j") == 2
        assert frontier_counts(conn, "j") == {"pending": 698, "done": 1, "failed": 0, "skipped": 1}
        (row,) = [r for r in pending(conn, "j") if r["url"] == "http://x.example/1.jpg"]
        assert (row["attempts"], row["last_error"], row["label"]) == (1, "timeout: slow", "l")
    assert job_key("urls", "/a/list.csv") == job_key("urls", "/a/list.csv") != job_key("urls", "/b/list.csv")


def test_two_runs_of_one_list_share_the_work_through_claims(site: Site, ws: Path, tmp_path: Path) -> None:
    """A second `harvest urls` of the same list while the first runs takes other rows (frontier claims with
    leases): together they fetch each URL once, and the catalog holds each image once. The site holds every
    response until both runs hold claims, so neither can finish the list before the other has started (the
    two start together: a response held for long would reach the fetcher's read timeout)."""
    opened = threading.Event()

    def gated(request: Request) -> Response:
        opened.wait(120)  # a bound, so that a failing test cannot leave server threads behind
        return Response.image(request.site.photo(request.arg("img")))

    site.route("/claims-gate/", gated)
    photos = site.photo_names[:64]
    path = write_list(tmp_path / "shared.csv", [{"url": site.url(f"/claims-gate/photo?img={p}")} for p in photos])
    command = [sys.executable, "-m", "harvest.cli", "urls", str(path), "--allow-private", "--per-host-rate", "0",
               "--concurrency", "2", "--workers", "1", "--json", "-w", str(ws)]  # fmt: skip
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_")}
    site.reset()
    runs = [subprocess.Popen(command, cwd=ws.parent, env=environment, stdout=subprocess.PIPE, text=True)]
    runs.append(subprocess.Popen(command, cwd=ws.parent, env=environment, stdout=subprocess.PIPE, text=True))
    first, second = runs
    try:
        owners = claim_owners(ws)
        deadline = time.monotonic() + 90
        while len(owners) < 2 and all(process.poll() is None for process in runs) and time.monotonic() < deadline:
            time.sleep(0.05)
            owners = claim_owners(ws)
        assert len(owners) == 2, owners  # both runs hold rows of the list before any response is sent
    finally:
        opened.set()
    documents = [json.loads(process.communicate(timeout=120)[0]) for process in (first, second)]
    assert first.returncode == 0 and second.returncode == 0
    fetched = [document["fetched"] for document in documents]
    assert sum(fetched) == len(photos) and min(fetched) > 0, fetched  # both worked, no URL twice
    assert site.hits["/claims-gate/photo"] == len(photos)
    assert sum(document["added"] for document in documents) == len(photos)
    assert set(catalog(ws)) == {sha(site, p) for p in photos}
    assert counts(ws, path) == {"pending": 0, "done": len(photos), "failed": 0, "skipped": 0}
