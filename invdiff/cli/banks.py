"""``invdiff banks``: write (or check) the versioned operator banks (masks, kernels) that the
presets read (``invdiff.operators.banks``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from invdiff.operators.banks import BANKS, check, write
from invdiff.paths import banks_dir, writable_home


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names",
        nargs="*",
        metavar="BANK",
        help=f"banks to write (default: all of {', '.join(BANKS)})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder to write into (default: operators/ of the checkout or of INVDIFF_HOME; "
        "an installed package's own copy is read-only)",
    )
    parser.add_argument(
        "--check", action="store_true", help="verify the banks against the manifest; write nothing"
    )


def run(args: argparse.Namespace) -> int:
    folder: Path = args.out or banks_dir()
    unknown = [n for n in args.names if n not in BANKS]
    if unknown:
        print(f"unknown bank(s) {', '.join(unknown)}; valid: {', '.join(BANKS)}")
        return 2
    if args.check:
        problems = check(folder)
        for p in problems:
            print(p)
        print(
            "banks OK"
            if not problems
            else f"{len(problems)} problem(s); run `invdiff banks` to rewrite"
        )
        return 0 if not problems else 1
    if args.out is None and not writable_home():
        # the banks inside an installed wheel are the ones its presets were checked against
        print(
            f"the banks in {folder} belong to the installed package; write a copy with "
            "--out DIR (and set INVDIFF_HOME to use it)"
        )
        return 2
    command = "invdiff banks" + ("".join(f" {n}" for n in args.names))
    manifest = write(folder, args.names or None, command=command)
    for name in args.names or BANKS:
        e = manifest["banks"][name]
        print(f"{folder / e['file']}  {e['shape']}  sha256 {e['sha256'][:16]}")
    return 0
