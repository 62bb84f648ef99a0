"""`python -m storyengine …`: the same command line as the `storyengine` script."""

from .cli import main

main()
