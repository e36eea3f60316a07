"""Suspected label errors, as `curate labels --suspects` lists them: read from the catalog, where `train audit`
recorded them (curate never imports train). Most likely first; suspects whose label a person has changed since
the audit are left out, as are images rejected since."""

from __future__ import annotations

from typing import Any

from storage.catalog.audits import audit_info, latest_audit, suspects
from storage.errors import GleanerError
from storage.workspace import Workspace

__all__ = ["list_suspects"]


def list_suspects(workspace: Workspace, *, limit: int | None = None) -> dict[str, Any]:
    """{"suspects": [{"sha256", "label", "suggested", "score", "sources"}], "audit": {...}} of the newest audit."""
    with workspace.catalog.read() as conn:
        run_id = latest_audit(conn)
        if run_id is None:
            raise GleanerError("no finished label audit in this catalog: run `train audit` first")
        info = audit_info(conn, run_id) or {}
        found = suspects(conn, run_id, limit=limit)
    items = []
    for suspect in found:
        item = suspect.to_json()
        item.pop("current")
        items.append(item)
    audit = {"run_id": run_id, "snapshot": info.get("snapshot"), "finished_at": str(info.get("finished_at"))}
    return {"suspects": items, "audit": audit}
