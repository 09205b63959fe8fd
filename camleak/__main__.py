"""`python -m camleak`: the same as the `camleak` console script (playbooks run steps this way)."""

from .cli import main

main()
