"""``steadyseg cache info`` / ``steadyseg cache clear`` on the default cache (``STEADYSEG_CACHE_DIR``, a temporary
folder in every test: tests/conftest.py) and on a ``--cache`` folder."""

from __future__ import annotations

import argparse
import io

import pytest

from steadyseg import cache_cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cache_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def filled(tmp_path):
    """A flow cache with the flows, validity masks and sampling maps of a window-1 measure of a small video."""
    from steadyseg.datasets.flow import FlowProvider, window_pairs
    from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder
    from steadyseg.datasets.video import open_video

    video = make_moving_shapes_video(num_frames=4, height=32, width=40, seed=1)
    frames = open_video(write_video_folder(video, tmp_path / "synth")["frames"])

    def fill(root):
        prov = FlowProvider(frames, preset="ultrafast", cache_dir=root)
        prov.precompute(window_pairs(4, 1), progress=False)
        from steadyseg.warp import nearest_sampling_map

        for p, q in window_pairs(4, 1):
            prov.valid(p, q)
            prov.put_nearest_map(p, q, nearest_sampling_map(prov(p, q)))
        return root

    return fill


def test_registered_in_cli():
    from steadyseg.cli import SUBCOMMANDS, build_parser

    assert SUBCOMMANDS["cache"][0] == "steadyseg.cache_cli"
    args = build_parser().parse_args(["cache", "clear", "--yes"])
    assert args.func is cache_cli.main_clear and args.yes


def test_info_and_clear_default_cache(filled, capsys, monkeypatch):
    from steadyseg.datasets.flow import cache_info, default_flow_cache_dir

    root = default_flow_cache_dir()
    assert _run(["info"]) == 0
    out = capsys.readouterr().out
    assert str(root) in out and "does not exist yet" in out
    filled(root)
    assert _run(["info"]) == 0
    out = capsys.readouterr().out
    assert "entries   18," in out and "flows" in out and "validity masks" in out and "sampling maps" in out
    assert [line.split()[-6] for line in out.splitlines()[2:]] == ["6", "6", "6"]

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: --yes is needed
    with pytest.raises(ValueError, match="without --yes"):
        _run(["clear"])
    assert cache_info(root)["entries"] == 18
    assert _run(["clear", "--yes"]) == 0
    assert "removed 18 entries" in capsys.readouterr().out and cache_info(root)["entries"] == 0


def test_clear_asks_on_a_terminal(filled, tmp_path, capsys, monkeypatch):
    from steadyseg.datasets.flow import cache_info

    root = filled(tmp_path / "mine")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty("n\n"))
    assert _run(["clear", "--cache", str(root)]) == 1
    assert "nothing removed" in capsys.readouterr().out and cache_info(root)["entries"] == 18
    monkeypatch.setattr("sys.stdin", Tty("y\n"))
    assert _run(["clear", "--cache", str(root)]) == 0
    assert cache_info(root)["entries"] == 0


def test_command_line_error_without_yes(tmp_path):
    """Through the console script: one line naming the folder, exit status 1."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "steadyseg.cli", "cache", "clear", "--cache", str(tmp_path / "c")],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and r.stderr.strip() == (f"steadyseg cache: error: {tmp_path / 'c'}: not clearing the "
                                                      "flow cache without --yes (no terminal to ask)")
