"""A small catalog worth reviewing, built once per session from real photos and copied for each test."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from storage.catalog.schema import images, predictions, quality_flags, runs
from storage.ingest import IngestItem, Ingestor, source_for_path
from storage.workspace import Workspace, init_workspace, open_workspace

LABELS = ["cat"] * 4 + ["dog"] * 3 + [None] * 3


@dataclass(frozen=True)
class Catalogue:
    """Which image plays which part; `shas[i]` came from the i-th photo with LABELS[i]."""

    root: Path
    shas: list[str]

    @property
    def cats(self) -> list[str]:
        return self.shas[:4]

    @property
    def dogs(self) -> list[str]:
        return self.shas[4:7]

    @property
    def unlabelled(self) -> list[str]:
        return self.shas[7:]

    def open(self) -> Workspace:
        return open_workspace(self.root)


def build_catalogue(root: Path, photos: list[Path], catalog_url: str | None = None) -> Catalogue:
    """10 photos: 4 cat, 3 dog, 3 unlabelled; two near-duplicate groups (one with a label conflict), quality
    flags, and a training run with two misclassified and one low-confidence prediction."""
    workspace, _ = init_workspace(root, catalog_url=catalog_url)
    ingest = Ingestor.for_workspace(workspace, actor="fixture")
    shas = []
    for path, label in zip(photos[:10], LABELS, strict=True):
        outcome = ingest.ingest(IngestItem(source=source_for_path(path), label=label, path=str(path)))
        assert outcome.sha256 and outcome.status in ("added", "duplicate"), outcome  # new bytes either way
        shas.append(outcome.sha256)
    assert len(set(shas)) == len(shas)
    stamp = datetime.now(UTC)
    with workspace.catalog.write() as conn:
        conn.execute(update(images).values(duplicate_of=None))  # the groups below are the only ones, whatever
        # ingest's own near-duplicate check thought of these photos
        conn.execute(update(images).where(images.c.sha256 == shas[1]).values(duplicate_of=shas[0]))
        conn.execute(update(images).where(images.c.sha256 == shas[4]).values(duplicate_of=shas[2]))  # cat vs dog
        conn.execute(quality_flags.insert(), [{"sha256": shas[7], "flag": "blurry", "value": 0.9}])
        conn.execute(quality_flags.insert(), [{"sha256": shas[5], "flag": "dark", "value": 0.1}])
        run_id = conn.execute(
            runs.insert().values(kind="train", status="done", config={}, started_at=stamp, finished_at=stamp)
        ).inserted_primary_key[0]
        rows = [
            (shas[3], "cat", "dog", 0.9, 2.3, True),  # misclassified, highest loss
            (shas[6], "dog", "cat", 0.7, 1.2, True),  # misclassified
            (shas[0], "cat", "cat", 0.4, 0.9, True),  # right but unsure: low confidence
            (shas[5], "dog", "dog", 0.95, 0.05, False),
        ]
        conn.execute(
            predictions.insert(),
            [
                {
                    "run_id": run_id,
                    "sha256": sha,
                    "split": "val",
                    "true_label": true,
                    "predicted_label": predicted,
                    "confidence": confidence,
                    "loss": loss,
                    "needs_review": needs_review,
                }
                for sha, true, predicted, confidence, loss, needs_review in rows
            ],
        )
    workspace.close()
    return Catalogue(root, shas)


@pytest.fixture(scope="session")
def catalogue_template(tmp_path_factory: pytest.TempPathFactory, photo_files: list[Path]) -> Catalogue:
    return build_catalogue(tmp_path_factory.mktemp("review-template") / "ws", photo_files)


@pytest.fixture
def catalogue(catalogue_template: Catalogue, tmp_path: Path) -> Catalogue:
    """A private copy of the template workspace (relative store and catalog paths make it portable)."""
    root = tmp_path / "ws"
    shutil.copytree(catalogue_template.root, root)
    return Catalogue(root, catalogue_template.shas)


# --- near-duplicate candidates: real ones, found by ingest -------------------------------------------------

PAIR_LABELS = ["cat", "dog", None]
PAIR_PHOTOS = [22, 25, 26]  # photos whose edited copies are near their photo by the hashes (not all are)


@dataclass(frozen=True)
class Pairs:
    """Photos and an edited copy of each (another photo pasted over its middle third): ingest finds every copy
    by its hashes but the pixels do not verify, so each pair is a candidate waiting for a person.
    `originals[i]` carries PAIR_LABELS[i]; `copies[i]` is its unlabelled copy."""

    root: Path
    originals: list[str]
    copies: list[str]

    def open(self) -> Workspace:
        return open_workspace(self.root)


def edited_copy(photo: Path, patch: Path, out: Path) -> Path:
    from PIL import Image

    image = Image.open(photo).convert("RGB")
    width, height = image.size
    image.paste(Image.open(patch).convert("RGB").resize((width // 3, height // 3)), (width // 3, height // 3))
    target = out / f"{photo.stem}-edited.jpg"
    image.save(target, quality=90)
    return target


def build_pairs(root: Path, photos: list[Path], copies_dir: Path, catalog_url: str | None = None) -> Pairs:
    from storage.catalog.duplicates import candidates

    workspace, _ = init_workspace(root, catalog_url=catalog_url)
    ingest = Ingestor.for_workspace(workspace, actor="fixture")
    originals: list[str] = []
    copies: list[str] = []
    for k, label in zip(PAIR_PHOTOS, PAIR_LABELS, strict=True):
        photo = photos[k]
        copy = edited_copy(photo, photos[k + 80], copies_dir)
        for path, given, into in ((photo, label, originals), (copy, None, copies)):
            outcome = ingest.ingest(IngestItem(source=source_for_path(path), label=given, path=str(path)))
            assert outcome.status == "added" and outcome.sha256, outcome
            into.append(outcome.sha256)
    with workspace.catalog.read() as conn:
        found = {(c.sha256, c.other) for c in candidates(conn)}
    assert found == set(zip(copies, originals, strict=True)), "ingest should list each copy as a candidate"
    workspace.close()
    return Pairs(root, originals, copies)


@pytest.fixture(scope="session")
def pairs_template(tmp_path_factory: pytest.TempPathFactory, photo_files: list[Path]) -> Pairs:
    base = tmp_path_factory.mktemp("review-pairs")
    (base / "copies").mkdir()
    return build_pairs(base / "ws", photo_files, base / "copies")


@pytest.fixture
def pairs(pairs_template: Pairs, tmp_path: Path) -> Pairs:
    root = tmp_path / "pairs"
    shutil.copytree(pairs_template.root, root)
    return Pairs(root, pairs_template.originals, pairs_template.copies)
