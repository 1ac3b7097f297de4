"""Small file helpers shared by every stage: atomic writes, content hashes, resolved-config records.

Outputs are always written atomically (temporary file in the same folder, then ``os.replace``), so a killed job
never leaves a half-written file where a finished one is expected. A killed job may leave its temporary
(``.<name>.<pid>.<random>.tmp``); :func:`remove_orphan_temporaries` removes those of processes that are gone, and
the resumable commands call it when they start.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import io
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
"""Names of the temporaries of :func:`atomic_path` / :func:`atomic_dir`: ``.<name>.<pid>.<random>.tmp``."""


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def remove_orphan_temporaries(folder: str | os.PathLike, *, name: str | None = None,
                              recursive: bool = False) -> list[Path]:
    """Remove the temporaries that a killed process left in ``folder`` (``recursive``: and below); returns them.

    Only names of :data:`TEMPORARY_NAME` whose process (``<pid>``, on this machine) no longer runs are removed,
    so concurrent writers sharing the folder are safe. ``name`` limits it to the temporaries of one output name.
    """
    import shutil

    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*.tmp" if name is not None else ".*.tmp"
    removed = []
    for p in sorted(folder.rglob(pattern) if recursive else folder.glob(pattern)):
        m = TEMPORARY_NAME.match(p.name)
        if m is None or (name is not None and m["name"] != name) or _process_alive(int(m["pid"])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to write a folder of outputs into; it appears complete or not at all.

    On success the temporary folder is renamed to ``path`` when ``path`` does not exist yet, else its files are
    moved into ``path`` one by one (each move atomic; other files of ``path`` are kept). On error it is removed,
    so a failing command leaves no half-written folder. The temporary name is ``.<name>.<pid>.<random>.tmp`` like
    :func:`atomic_path`'s; the folder of a killed earlier run (its process gone) is removed first.
    """
    import shutil

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_temporaries(path.parent, name=path.name)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        yield tmp
        if not path.exists():
            os.chmod(tmp, 0o777 & ~_umask())
            os.replace(tmp, path)
        else:
            for item in sorted(tmp.rglob("*")):
                target = path / item.relative_to(tmp)
                if item.is_dir():
                    target.mkdir(exist_ok=True)
                else:
                    os.replace(item, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path,)):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.decode("ascii")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON atomically. numpy scalars/arrays and paths are converted; NaN is written as NaN."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, *, what: str = "JSON file", error: type[ValueError] = ValueError) -> Any:
    """Read a JSON file with errors that name it: ``FileNotFoundError`` ("<path>: <what> not found") or ``error``
    ("<path>: malformed JSON at line L column C: ...")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` atomically (the file name is kept exactly, no ``.npz`` appended)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_resolved_config(out_dir: str | os.PathLike, config: dict[str, Any], *, name: str = "config.yaml") -> Path:
    """Save the resolved configuration of a run beside its outputs (YAML), with version and environment info."""
    import yaml

    from steadyseg import __version__

    record = {
        "steadyseg_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "argv": sys.argv,
        "config": json.loads(json.dumps(config, default=_json_default)),
    }
    return atomic_write_text(Path(out_dir) / name, yaml.safe_dump(record, sort_keys=False))
