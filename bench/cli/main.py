"""Command line: ``python -m bench {all,run,figures,train,ls,check,plan}``.

Usage errors exit with code 2 and one line on stderr; a run in which some cell failed exits with
code 1 after every other cell has finished and been saved.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import warnings

from bench.errors import BenchError

log = logging.getLogger("bench")


def _environment() -> None:
    # No network but package registries: never let a library wait on hub retries.
    if os.environ.get("BENCH_ONLINE") != "1":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*HookedTransformer.*")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from bench.cli.plan import add_plan_command
    from bench.cli.run import add_run_commands
    from bench.cli.tools import add_tool_commands
    from bench.cli.train import add_train_command

    p = _Parser(prog="python -m bench", description="SAE-latent circuit discovery benchmark")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_train_command(sub)
    add_run_commands(sub)
    add_tool_commands(sub)
    add_plan_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    _environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    for noisy in ("sae_lens", "transformer_lens", "httpx", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished cells are saved, rerun to resume", file=sys.stderr)
        return 130


def entry() -> int:
    """The process entry point (``python -m bench``, the ``sae-circuit-bench`` script): :func:`main`,
    then, with everything the command made saved, ``gc.freeze()`` so the interpreter's exit skips the
    collector's walk over the millions of objects torch, TransformerLens and transformers leave (about
    1.5 s of a short command such as ``bench plan``). Atexit handlers still run (Ray's shutdown,
    multiprocessing's, ``weakref.finalize``) and objects freed by reference counting as modules are
    cleared are still finalised, but an object caught in a reference cycle is not: whatever a command
    must write is written and closed before :func:`main` returns (results, locks and worker pools
    are closed explicitly). Not in :func:`main`, which tests call in-process."""
    code = main()
    gc.freeze()
    return code
