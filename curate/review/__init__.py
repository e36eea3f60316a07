"""`curate review`: a local, keyboard-first web app to review labels, duplicates and model mistakes."""

from curate.review.app import create_app

__all__ = ["create_app"]
