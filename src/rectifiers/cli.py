"""Command line: ``rectifiers <command> [options]``.

Each command lives in the module that owns its work; this file only dispatches, importing
the command's module lazily so ``rectifiers --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys

from rectifiers.errors import EXIT_USER_ERROR, UserError, debug_enabled

# command -> (module with ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "rectifiers.train.cli",
        "train a model (the paper's recipe; resumable; DDP via torchrun)",
    ),
    "eval": (
        "rectifiers.eval.cli",
        "evaluate checkpoints: centre, 10-view, dense multi-scale, ensembles",
    ),
    "export": (
        "rectifiers.export",
        "export a checkpoint to ONNX / TorchScript / torch.export and check it",
    ),
    "reproduce": (
        "rectifiers.experiments.reproduce",
        "reproduce the paper's findings on Fashion-MNIST; writes a report",
    ),
    "bench": (
        "rectifiers.experiments.bench",
        "activation x init x depth grid over seeds, with statistics",
    ),
}


DEBUG_HELP = """
error reporting (every rectifiers command):
  --debug               show the full traceback of an error (also: RECTIFIERS_DEBUG=1); without
                        it a user error ends with one message and exit code 2"""


def _usage() -> str:
    lines = ["usage: rectifiers <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'rectifiers <command> --help' for the options of a command.",
              "A user error ends with one message and exit code 2; add --debug (or set",
              "RECTIFIERS_DEBUG=1) to see its traceback."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader closed stdout (``rectifiers bench --help | head``): stop quietly, as Unix
        # tools do, instead of a traceback; the interpreter must not flush into it again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the pipe


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from rectifiers import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        known = ", ".join(COMMANDS)
        print(f"rectifiers: unknown command '{name}'. Known: {known}.", file=sys.stderr)
        return 2
    debug = debug_enabled(rest)
    rest = [a for a in rest if a != "--debug"]
    # Commands that report their own errors ask debug_enabled() without argv: the flag reaches
    # them (and any process they start) through the environment, for the command's duration.
    saved = os.environ.get("RECTIFIERS_DEBUG")
    if debug:
        os.environ["RECTIFIERS_DEBUG"] = "1"
    try:
        return _run(name, rest, debug)
    finally:
        if saved is None:
            os.environ.pop("RECTIFIERS_DEBUG", None)
        else:
            os.environ["RECTIFIERS_DEBUG"] = saved


def _run(name: str, rest: list[str], debug: bool) -> int:
    wants_help = any(a in ("-h", "--help") for a in rest)
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except SystemExit as e:
        if wants_help and e.code in (0, None):
            # --debug belongs to the dispatcher (every command has it): document it here once
            print(DEBUG_HELP)
        raise
    except UserError as e:
        if debug:
            raise
        print(f"rectifiers {name}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"rectifiers {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
