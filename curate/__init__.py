"""Curation: labels, integrity, duplicates, quality, review, snapshots and export."""
