"""``python -m pipeline`` runs the ``l4s`` command."""

from pipeline.cli import main

main()
