"""The `storyengine` command line (moved from storyengine/cli.py and storyengine/cli_*.py)."""

from .series import app, main

__all__ = ["app", "main"]
