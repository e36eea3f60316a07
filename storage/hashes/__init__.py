"""Perceptual hashes: computing them (`compute`, `perceptual`), comparing them (`compare`) and verifying a
candidate pair on the pixels (`verify`). Import from the submodules; this package re-exports nothing."""
