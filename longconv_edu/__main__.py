"""Command line: ``python -m longconv_edu COMMAND [options]`` (``--help`` on each command).

Each command lives in its own module, which provides ``add_arguments(parser)`` and ``run(args)``;
this file only lists them, so ``python -m longconv_edu --help`` stays quick.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "bench": ("longconv_edu.lab.bench", "time every long_conv backend against torch.fft over L"),
    "train": ("longconv_edu.lab.cli", "train a long-convolution classifier, or run a whole experiment"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longconv_edu", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = {}
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            modules[name] = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    if args.command not in modules:
        parser.error(f"command {args.command!r} is not available in this version")
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
