"""Near-duplicate grouping: candidate pairs (`pairs`), verified groups that cannot chain, keepers a person would
choose and the corrections people made (`groups`), the report and applying it (`clusters`), and exact
multi-index search over plain 64-bit hashes at scale (`index`).

`near_duplicate_groups` is part of the library contract (DESIGN.md), so it is importable from here."""

from curate.dedupe.index import near_duplicate_groups

__all__ = ["near_duplicate_groups"]
