"""`python -m mirror` behaves exactly like the `mirror` console script."""

from mirror.entry import run

run()
