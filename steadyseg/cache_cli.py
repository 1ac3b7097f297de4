"""``steadyseg cache info`` and ``steadyseg cache clear``: the persistent flow cache (parsing and printing only).

Without ``--cache`` both act on the default cache that ``steadyseg measure`` uses when it is given no ``--cache``:
``$XDG_CACHE_HOME/steadyseg/flow`` (by default ``~/.cache/steadyseg/flow``; ``$STEADYSEG_CACHE_DIR`` replaces
``$XDG_CACHE_HOME/steadyseg``)::

    steadyseg cache info                  # location, entries, size on disk by kind (flows, M masks, sampling maps)
    steadyseg cache clear --yes           # remove every cache entry (asks first on a terminal without --yes)
    steadyseg cache info --cache cache/flow

The work is :func:`steadyseg.datasets.flow.cache_info` and :func:`steadyseg.datasets.flow.clear_cache`.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``steadyseg cache info`` and ``steadyseg cache clear`` (flags default to None)."""
    sub = parser.add_subparsers(dest="cache_command", metavar="CACHE_COMMAND")
    i = sub.add_parser("info", help="where the flow cache is, how many entries, their size on disk by kind",
                       description="Location, entry count and size on disk (flows, validity masks, sampling maps) "
                                   "of the flow cache.")
    i.add_argument("--cache", metavar="DIR", default=None,
                   help="flow cache folder (default: the persistent cache steadyseg measure uses)")
    i.set_defaults(func=main_info)
    c = sub.add_parser("clear", help="remove every entry of the flow cache",
                       description="Remove the cache entries (flows, validity masks, sampling maps) and the "
                                   "temporaries of killed writers; other files in the folder stay. Asks for confirmation on a terminal; "
                                   "elsewhere it needs --yes.")
    c.add_argument("--cache", metavar="DIR", default=None,
                   help="flow cache folder (default: the persistent cache steadyseg measure uses)")
    c.add_argument("--yes", action="store_true", default=None, help="do not ask for confirmation")
    c.set_defaults(func=main_clear)


def main(args: argparse.Namespace) -> int:
    func = getattr(args, "func", None)
    if func is None or func is main:
        raise ValueError("choose a cache command: info or clear (see `steadyseg cache --help`)")
    return func(args)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def main_info(args: argparse.Namespace) -> int:
    from steadyseg.datasets.flow import cache_info

    info = cache_info(args.cache)
    print(f"location  {info['location']}" + ("" if info["exists"] else "  (does not exist yet)"))
    print(f"entries   {info['entries']}, {_size(info['disk_bytes'])} on disk")
    for kind, label in (("flow", "flows"), ("valid", "validity masks"), ("nearest-map", "sampling maps")):
        k = info["kinds"][kind]
        print(f"  {label:<15} {k['entries']:>7} entries  {_size(k['disk_bytes']):>10} on disk")
    return 0


def main_clear(args: argparse.Namespace) -> int:
    from steadyseg.datasets.flow import cache_info, clear_cache

    info = cache_info(args.cache)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ValueError(f"{info['location']}: not clearing the flow cache without --yes (no terminal to ask)")
        answer = input(f"remove {info['entries']} entries ({_size(info['disk_bytes'])}) from "
                       f"{info['location']}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    removed = clear_cache(args.cache)
    print(f"removed {removed['entries']} entries ({_size(removed['disk_bytes'])}) from {removed['location']}")
    return 0
