"""The audit's report: report.json and report.html in the audit folder, beside the fold run folders.

Per class: images, suspects, the confident-learning threshold; the estimated noise matrix P(given | true); the
suspects most likely first; and, once `train audit --compare` has run, the accuracy of a model retrained on the
corrected labels against one trained on the audited labels, on the same test split (train.audit.compare).
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from storage.errors import GleanerError
from train.audit.suspects import find_suspects
from train.data import Sample
from train.report_html import STYLE, _table

__all__ = ["REPORT_FILE", "load_audit_report", "render_audit_html", "write_audit_report"]

REPORT_FILE = "report.json"
HTML_FILE = "report.html"
LISTED = 200  # suspects kept in report.json (all of them are in the catalog)
PICTURED = 40  # suspects shown with their picture in report.html


def _png(pixels: np.ndarray) -> str:
    from PIL import Image

    array = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_audit_report(
    out: Path,
    class_names: Sequence[str],
    samples: Sequence[Sample],
    groups: Sequence[str],
    probs: np.ndarray,
    *,
    meta: dict[str, Any],
    images: Any = None,
) -> dict[str, Any]:
    """Find the suspects and write report.json/report.html; the returned document also holds them as
    storage.catalog.audits.Suspect objects under "_suspects" (for the catalog)."""
    labels = np.asarray([s.target for s in samples], np.int64)
    shas = [s.sha256 for s in samples]
    found, issues = find_suspects(
        shas, labels, groups, probs, class_names, rank_by=meta.get("rank_by", "self_confidence")
    )
    per_label = Counter(s.label for s in found)
    into = Counter(s.suggested for s in found)
    counts = Counter(int(t) for t in labels)
    per_class = {
        name: {"images": counts.get(k, 0), "suspects": per_label.get(name, 0), "suggested_as": into.get(name, 0),
               "threshold": round(float(issues.thresholds[k]), 4)}
        for k, name in enumerate(class_names)
    }  # fmt: skip
    sources = Counter(source for s in found for source in s.sources)
    document: dict[str, Any] = {
        **meta,
        "status": "done",
        "images": len(samples),
        "labels": list(class_names),
        "oof_accuracy": round(float((probs.argmax(axis=1) == labels).mean()), 4) if len(labels) else None,
        "suspect_count": len(found),
        "sources": dict(sources),
        "per_class": per_class,
        "noise_matrix": {
            "labels": list(class_names),
            "rows": "given label",
            "columns": "true label (estimated)",
            "matrix": [[round(float(v), 4) for v in row] for row in issues.noise],
        },
        "confident_joint": {"labels": list(class_names), "matrix": issues.joint.tolist()},
        "suspects": [s.to_json() for s in found[:LISTED]],
        "comparison": None,
        "report": str(out / HTML_FILE),
    }
    for item in document["suspects"]:
        item.pop("current")
    if images is not None:
        where = {sha: i for i, sha in enumerate(shas)}
        document["_pictures"] = {s.sha256: _png(images[where[s.sha256]].numpy()) for s in found[:PICTURED]}
    save_audit_report(out, document)
    document.pop("_pictures", None)
    document["_suspects"] = found
    return document


def save_audit_report(out: Path, document: dict[str, Any]) -> None:
    pictures = document.get("_pictures", {})
    plain = {k: v for k, v in document.items() if not k.startswith("_")}
    (out / REPORT_FILE).write_text(json.dumps(plain, indent=2), encoding="utf-8")
    (out / HTML_FILE).write_text(render_audit_html(plain, pictures), encoding="utf-8")


def load_audit_report(out: Path) -> dict[str, Any]:
    path = Path(out) / REPORT_FILE
    if not path.is_file():
        raise GleanerError(f"{out} holds no finished audit (no {REPORT_FILE}): run `train audit --out {out}` first")
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _comparison_html(comparison: dict[str, Any] | None) -> str:
    if not comparison:
        return (
            "<p class='muted'>No retraining yet. After a review has changed labels (suggestions accepted), "
            "<code>train audit --compare --out THIS_FOLDER</code> retrains on the corrected labels and on the "
            "audited ones and compares them on the same test split.</p>"
        )
    rows = [[name, m["accuracy"], m["test_images"]] for name, m in comparison["models"].items()]
    return (
        f"<p>{comparison['changed']} labels changed since the audit ({comparison['changed_in_test']} of them in the "
        f"test split); both models tested on the {escape(comparison['tested_on'])}.</p>"
        + _table(["trained on", "test accuracy", "test images"], rows)
        + f"<p>Difference: <b>{comparison['gain']:+.2%}</b></p>"
    )


def render_audit_html(report: dict[str, Any], pictures: dict[str, str] | None = None) -> str:
    pictures = pictures or {}
    names = report["labels"]
    class_rows = [
        [n, m["images"], m["suspects"], m["suggested_as"], m["threshold"]] for n, m in report["per_class"].items()
    ]
    noise = report["noise_matrix"]["matrix"]
    noise_rows = [[f"given {name}", *[float(v) for v in row]] for name, row in zip(names, noise, strict=True)]
    cards = []
    for s in report["suspects"][:PICTURED]:
        url = pictures.get(s["sha256"])
        picture = f'<img src="{url}" alt="{escape(s["sha256"][:12])}">' if url else ""
        cards.append(
            f'<div class="card">{picture}<div>given <b>{escape(s["label"])}</b></div>'
            f'<div class="bad">probably {escape(s["suggested"])} ({s["score"]:.2f})</div>'
            f'<div class="muted">{escape(", ".join(s["sources"]))} · {escape(s["sha256"][:12])}</div></div>'
        )
    suspect_rows = [[s["sha256"][:12], s["label"], s["suggested"], float(s["score"]), ", ".join(s["sources"])]
                    for s in report["suspects"]]  # fmt: skip
    title = f"Label audit of {report.get('snapshot', 'a snapshot')}"
    folds = report.get("folds") or []
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='muted'>{escape(str(report.get('run_dir', '')))} · {report['images']} images · {len(folds)} folds "
        f"grouped by near-duplicate group · out-of-fold accuracy {report['oof_accuracy']:.2%} · "
        f"{report.get('seconds', 0):.0f} s</p>",
        f"<p>Suspected label errors <span class='kpi'>{report['suspect_count']}</span> "
        f"<span class='muted'>({escape(', '.join(f'{k}: {v}' for k, v in report['sources'].items()))}); "
        "review them with <code>curate labels --suspects</code> or in <code>curate review</code></span></p>",
        "<h2>What fixing gained</h2>",
        _comparison_html(report.get("comparison")),
        "<h2>Per class</h2>",
        _table(["label", "images", "suspects", "suggested as", "threshold"], class_rows),
        "<h2>Estimated noise matrix P(given label | true label)</h2>",
        _table(["", *names], noise_rows),
        "<h2>Most likely label errors</h2>",
        f"<div class='gallery'>{''.join(cards)}</div>" if cards else "<p>No suspects.</p>",
        _table(["sha256", "given", "suggested", "score", "sources"], suspect_rows) if suspect_rows else "",
        "</body></html>",
    ]
    return "\n".join(parts)
