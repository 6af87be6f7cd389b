"""`python -m mirror` behaves exactly like the `mirror` console script."""

from mirror.cli import run

run()
