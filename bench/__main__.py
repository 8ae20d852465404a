"""``python -m bench``: see ``bench.cli.main``."""

from bench.cli.main import entry

raise SystemExit(entry())
