"""``python -m cartos`` runs the CLI."""

from cartos.cli.main import main

main()
