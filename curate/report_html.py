"""Self-contained HTML pages (inline thumbnails, no external files) for people who would rather look than read."""

from __future__ import annotations

import base64
import html
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from curate.dedupe.clusters import DedupeReport
from storage.errors import GleanerError
from storage.images import open_image
from storage.keys import image_key
from storage.stores import ObjectStore

__all__ = ["UNLABELLED", "check_writable", "label_text", "thumbnail_data_uri", "write_dedupe_html"]

THUMB_SIDE = 160
MAX_CLUSTERS = 500  # a page stays light; the JSON output has everything
MAX_CANDIDATES = 300

_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:20px}.summary{color:#555}
.cluster{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px;margin:12px 0}
.cluster.conflict{border-color:#d33}.tag{font-size:12px;padding:2px 6px;border-radius:4px;background:#eee}
.conflict .tag.c{background:#d33;color:#fff}.members{display:flex;flex-wrap:wrap;gap:10px;margin-top:8px}
figure{margin:0;width:170px}figure img{max-width:160px;max-height:160px;display:block;border-radius:4px}
figure.keeper img{outline:3px solid #2a7}figcaption{font-size:11px;color:#555;word-break:break-all}
.pair{background:#fff;border:1px dashed #b90;border-radius:8px;padding:12px;margin:12px 0}
.why{font-size:12px;color:#555;margin-top:6px}
"""


UNLABELLED = "(unlabelled)"  # how an image without a label is named to people (pages, tables), never Python's None


def label_text(label: object) -> str:
    """A label as shown to people: its name, or "(unlabelled)"."""
    return UNLABELLED if label is None or label == "" else str(label)


def check_writable(path: Path) -> Path:
    """Fail now, with one clear line, when the report cannot be written there (before minutes of work)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise GleanerError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def thumbnail_data_uri(data: bytes, side: int = THUMB_SIDE) -> str:
    """A small JPEG of an image as a data: URI (draft decoding keeps this cheap for large JPEGs)."""
    image = open_image(data, size=side, mode="RGB")  # upright, transparency on white
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(member: dict[str, object], keeper: str, thumb: str) -> str:
    sha = str(member["sha256"])
    role = "keeper" if sha == keeper else f"distance {member['distance']}"
    sources = member["sources"] or [""]
    source = html.escape(str(sources[0]))  # type: ignore[index]
    css = "keeper" if sha == keeper else ""
    return (
        f"<figure class='{css}'><img loading=lazy src='{thumb}' alt='{sha[:12]}'><figcaption><b>{role}</b> · "
        f"{member['width']}x{member['height']} · {html.escape(label_text(member['label']))}<br>{sha[:12]}<br>{source}"
        "</figcaption></figure>"
    )


def _candidate(candidate: dict[str, object], thumbs: dict[str, str]) -> str:
    """One unverified pair: both images side by side, what matched and why the pixels did not confirm it."""
    figures = []
    for side in ("a", "b"):
        sha = str(candidate[side])
        sources = candidate[f"sources_{side}"] or [""]
        source = html.escape(str(sources[0]))  # type: ignore[index]
        figures.append(
            f"<figure><img loading=lazy src='{thumbs.get(sha, '')}' alt='{sha[:12]}'><figcaption>{sha[:12]}<br>"
            f"{source}</figcaption></figure>"
        )
    why = (
        f"distance {candidate['distance']} ({html.escape(str(candidate['matched']))}); pixel score "
        f"{candidate['score']}: {html.escape(str(candidate['reason']))} · "
        f"<code>curate dedupe --duplicate {str(candidate['a'])[:12]} {str(candidate['b'])[:12]}</code> or "
        f"<code>--not-duplicate</code>"
    )
    return f"<div class=pair><div class=members>{''.join(figures)}</div><div class=why>{why}</div></div>"


def write_dedupe_html(report: DedupeReport, store: ObjectStore, ext_of: dict[str, str], path: Path) -> Path:
    """One page: every cluster with its members' thumbnails, the keeper outlined, conflicts in red; then the
    candidates that were not verified, pair by pair, for a person to decide."""
    clusters = report.clusters[:MAX_CLUSTERS]
    candidates = report.candidates[:MAX_CANDIDATES]
    wanted = sorted(
        {m["sha256"] for c in clusters for m in c.members} | {str(c[side]) for c in candidates for side in "ab"}
    )

    def thumb(sha: str) -> tuple[str, str]:
        try:
            return sha, thumbnail_data_uri(store.get(image_key(sha, ext_of[sha])))
        except Exception:  # a missing object shows as an empty frame; fsck reports it
            return sha, ""

    with ThreadPoolExecutor(8) as pool:
        thumbs = dict(pool.map(thumb, wanted))
    summary = report.to_json()
    parts = [
        f"<!doctype html><meta charset=utf-8><title>Gleaner near-duplicates</title><style>{_STYLE}</style>",
        "<h1>Near-duplicate groups</h1>",
        f"<p class=summary>{report.images:,} images, {len(report.clusters):,} groups, {summary['duplicates']:,}"
        f" duplicates, {summary['conflicts']:,} label conflicts, threshold {report.threshold}</p>",
    ]
    for cluster in clusters:
        labels = ", ".join(sorted({label_text(m["label"]) for m in cluster.members}))
        conflict = f"<span class='tag c'>label conflict: {html.escape(labels)}</span>" if cluster.conflict else ""
        parts.append(
            f"<div class='cluster{' conflict' if cluster.conflict else ''}'>"
            f"<span class=tag>{len(cluster.members)} images</span> {conflict}<div class=members>"
        )
        parts.extend(_figure(m, cluster.keeper, thumbs.get(m["sha256"], "")) for m in cluster.members)
        parts.append("</div></div>")
    if len(report.clusters) > MAX_CLUSTERS:
        parts.append(f"<p>… {len(report.clusters) - MAX_CLUSTERS:,} more groups in the JSON output</p>")
    parts.append(f"<h1 id=candidates>Candidates to review ({len(report.candidates):,})</h1>")
    parts.append(
        "<p class=summary>Close by their hashes, but their pixels did not confirm it: both stay in the dataset until "
        "a person decides (here, or in <code>curate review</code>, view Candidates).</p>"
    )
    parts.extend(_candidate(candidate, thumbs) for candidate in candidates)
    if len(report.candidates) > MAX_CANDIDATES:
        parts.append(f"<p>… {len(report.candidates) - MAX_CANDIDATES:,} more candidates in the JSON output</p>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
