"""The ``invdiff`` command line: ``list``, ``demo``, ``train``, ``solve``, ``bench``, ``tune``,
``banks``.

One module per sub-command in this package (``invdiff/cli/<command>.py``; ``list`` is
``listing.py``, so that the module does not shadow the builtin), each exposing
``add_arguments(parser)`` and ``run(args) -> int`` and importing the modules it uses; this file
only wires them together and prints errors as one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> (module with add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": (
        "invdiff.cli.listing",
        "list the registered operators, solvers, priors, problems and data sets",
    ),
    "demo": (
        "invdiff.cli.demo",
        "degrade a bundled photo with several operators and write a figure",
    ),
    "train": ("invdiff.cli.train", "train a prior (pixel, sr3, autoencoder, latent)"),
    "solve": ("invdiff.cli.solve", "solve one problem with one solver and write a figure"),
    "bench": ("invdiff.cli.bench", "run a benchmark suite and write tables and figures"),
    "tune": (
        "invdiff.cli.tune",
        "tune a solver's hyperparameters for a problem and budget on the validation split",
    ),
    "banks": ("invdiff.cli.banks", "write the versioned operator banks (masks, kernels)"),
}


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one ``--help`` away)."""

    def error(self, message: str):  # noqa: ANN201 - NoReturn in argparse
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="invdiff",
        description="Imaging inverse problems solved with diffusion priors. "
        "Run `invdiff COMMAND --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue  # command not available in this build
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip())
        mod.add_arguments(p)
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the full traceback of an error",
        )
        p.set_defaults(_run=mod.run)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def error_line(err: BaseException) -> str:
    """An error as the line the command line prints: its message, without a traceback."""
    from invdiff.bench.suite import SuiteError

    text = str(err) if not isinstance(err, KeyError) or not err.args else str(err.args[0])
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    if not isinstance(err, SuiteError):  # a suite error lists every problem, one per line
        # lines are joined with "; ", or a space after a line that ends with ":" (it introduces
        # the next one, e.g. a command to run)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = "".join(
            line + ("" if k == len(lines) - 1 else " " if line.endswith(":") else "; ")
            for k, line in enumerate(lines)
        )
    expected = (ValueError, TypeError, KeyError, OSError, IndexError, SuiteError)
    if not isinstance(err, expected) or not text:
        text = f"{type(err).__name__}: {text} (run again with --debug for the traceback)"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"invdiff {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"invdiff {args.command}: error: {error_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
