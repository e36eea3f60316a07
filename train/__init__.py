"""Training: datasets from snapshots, models, the engine, reports and collection targets."""
