"""Render the CLI reference (``cli.md``): ``steadyseg <command> --help`` for every command in ``SUBCOMMANDS``.

Run by the MkDocs hook (docs/hooks.py) on every build, so the page never goes stale; standalone::

    python docs/gen_cli.py [OUT.md]     # prints the page, or writes it to OUT.md
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

WIDTH = 110  # help text wrap width (argparse reads $COLUMNS)

HEADER = """# CLI reference

Generated from the argparse parsers of `steadyseg` (`steadyseg.cli.SUBCOMMANDS`) when the site is built: each block
is exactly what `steadyseg <command> --help` prints. Flags default to `None` on the command line; the defaults that
apply are those of the library functions (see the stage pages and the [API reference](api/core.md)).
"""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands of ``parser`` (name -> parser), in registration order; {} when it has none."""
    for action in parser._actions:  # noqa: SLF001 - argparse exposes sub-parsers only through its actions
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def _block(parser: argparse.ArgumentParser) -> str:
    return "```text\n" + parser.format_help().rstrip() + "\n```\n"


def render() -> str:
    """The whole CLI reference page as Markdown."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        from steadyseg.cli import SUBCOMMANDS, build_parser

        root = build_parser()
        commands = _subparsers(root)
        parts = [HEADER, "## steadyseg\n", _block(root)]
        for name in SUBCOMMANDS:
            parser = commands[name]
            parts += [f"## steadyseg {name}\n", _block(parser)]
            for sub_name, sub in _subparsers(parser).items():
                parts += [f"### steadyseg {name} {sub_name}\n", _block(sub)]
        return "\n".join(parts)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
