"""``python -m bench``: see ``bench.cli.main``."""

from bench.cli.main import main

raise SystemExit(main())
