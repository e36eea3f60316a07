"""Collection jobs: declared in gleaner.toml, run on demand (`harvest jobs run`) or on a schedule."""
