"""storyengine: recurring characters from a few photos, extended into consistent clips and episodes."""

__version__ = "0.1.0"
