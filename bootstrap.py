#!/usr/bin/env python3
"""Set up and run, on a fresh machine with nothing but Python 3.11-3.12.

    python3 bootstrap.py bench [ARGS]   create .venv, install, run `python -m bench all [ARGS]`
    python3 bootstrap.py test  [ARGS]   create .venv, install, run `python -m pytest [ARGS]`

The environment is created once (``.venv``) and reinstalled only when ``pyproject.toml`` changes.
No model weights or datasets are downloaded: the embedded world ships in the repository.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("BENCH_VENV", ROOT / ".venv"))
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env() -> None:
    stamp = VENV / ".bench-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing the suite and its dependencies (first time: about 2 minutes)", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f"{ROOT}[test]"],
                   check=True, cwd=ROOT)
    stamp.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("bench", "test"):
        print(__doc__.strip())
        return 2
    if sys.version_info < (3, 11):  # noqa: UP036 - bootstrap may be run by an older python3
        print("error: Python 3.11 or newer is needed (tomllib)", file=sys.stderr)
        return 2
    ensure_env()
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "WANDB_MODE": "disabled"}
    cmd = [str(PY), "-m", "bench", "all", *argv[1:]] if argv[0] == "bench" else [str(PY), "-m", "pytest", *argv[1:]]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
