"""`python -m rolechat` is the `rolechat` command."""

from rolechat.cli import main

main()
