"""report.html: one self-contained page (images inlined as data: URLs) that opens offline, anywhere."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

__all__ = ["data_url", "render_html"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1400px; }
h1 { margin-bottom: .2rem; } .muted { color: #666; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
td, th { padding: .25rem .6rem; border-bottom: 1px solid #ddd; }
th { text-align: left; background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.plot { max-width: 100%; border: 1px solid #eee; }
.gallery { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { width: 140px; font-size: .8rem; }
.card img { width: 112px; image-rendering: pixelated; border: 1px solid #ccc; }
.bad { color: #b00; } .kpi { font-size: 2rem; font-weight: 600; }
"""


def data_url(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            cells.append(f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(run_dir: Path, name: str, alt: str) -> str:
    url = data_url(run_dir / name)
    if not url:
        return f"<p class='muted'>({escape(name)} missing)</p>"
    return f'<img class="plot" src="{url}" alt="{escape(alt)}">'


def _parts(report: dict[str, Any]) -> str:
    """The linear baseline, the model alone and the verdict, next to the delivered model's accuracy."""
    pieces = []
    baseline, alone = report.get("baseline"), report.get("model_alone")
    if baseline and baseline.get("accuracy") is not None:
        pieces.append(f"linear baseline {baseline['accuracy']:.2%}")
    if alone and alone.get("accuracy") is not None and alone.get("blend"):
        pieces.append(f"{escape(alone['model'])} alone {alone['accuracy']:.2%}, blended at weight {alone['blend']:g}")
    versus = report.get("versus_baseline")
    if versus:
        pieces.append(f"<b>{escape(versus['text'])}</b>")
    return "".join(f" · {piece}" for piece in pieces)


def render_html(run_dir: Path, report: dict[str, Any]) -> str:
    per_class = report["per_class"]
    class_rows = [[label, m["precision"], m["recall"], m["f1"], m["support"]] for label, m in per_class.items()]
    target_rows = [[t["label"], t["want"], t["reason"]] for t in report["targets"]]
    confused_rows = [[c["true"], c["predicted"], c["count"]] for c in report["most_confused"]]
    cards = []
    for item in report["top_losses"]:
        url = data_url(run_dir / item["thumbnail"]) if item.get("thumbnail") else None
        picture = f'<img src="{url}" alt="{escape(item["sha256"][:12])}">' if url else ""
        cards.append(
            f'<div class="card">{picture}<div>true <b>{escape(item["true"])}</b></div>'
            f'<div class="bad">predicted {escape(item["predicted"])} ({item["confidence"]:.2f})</div>'
            f'<div class="muted">loss {item["loss"]:.2f} · {escape(item["sha256"][:12])}</div></div>'
        )
    title = f"Training report: {report.get('model', 'model')} on {report.get('snapshot', 'dataset')}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='muted'>run {escape(str(report.get('run_dir', run_dir)))} · {report['test_images']} test images · "
        f"best epoch {report.get('best_epoch')}</p>",
        f"<p>Test accuracy <span class='kpi'>{report['accuracy']:.2%}</span>{_parts(report)}</p>",
        "<h2>What to collect next</h2>",
        _table(["label", "want", "reason"], target_rows) if target_rows else "<p>No targets: every label is fine.</p>",
        "<h2>Per class</h2>",
        _table(["label", "precision", "recall", "f1", "support"], class_rows),
        "<h2>Confusion matrix</h2>",
        _image(run_dir, "confusion_matrix.png", "confusion matrix, counts and normalised"),
        "<h2>Most confused pairs</h2>",
        _table(["true", "predicted as", "count"], confused_rows) if confused_rows else "<p>No mistakes.</p>",
        "<h2>Learning curves</h2>",
        _image(run_dir, "curves.png", "loss and accuracy per epoch"),
        "<h2>Misclassified test images with the highest loss</h2>",
        f"<div class='gallery'>{''.join(cards)}</div>" if cards else "<p>No misclassified images.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
