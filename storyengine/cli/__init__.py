"""The `storyengine` command line: one module per noun, `common` for what they share, `app` for the root.

The only package that prints or turns errors into exit codes (docs/cli.md lists them per command).
"""

from .app import app, main

__all__ = ["app", "main"]
