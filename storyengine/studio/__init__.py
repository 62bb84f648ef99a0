"""The creator's studio: ``storyengine studio`` serves a local web app over one workspace (see app.py)."""

from .app import create_app

__all__ = ["create_app"]
