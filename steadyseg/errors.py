"""The error type for problems with a user's input file, and the one-line message the CLI prints for it.

Contract of every ``steadyseg`` command (see docs/development.md, "Errors and partial outputs"): a bad input ends
the command with exit status 1 and ONE line on stderr, ``steadyseg <command>: error: <file>: <what is wrong>``,
without a traceback unless ``--debug`` or ``STEADYSEG_DEBUG=1`` asks for one.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["InputError", "user_error_message", "exception_text", "USER_ERRORS"]


class InputError(ValueError):
    """A user's input file (or output location) cannot be used.

    ``str(error)`` is ``"<path>: <message>"``; ``path`` and ``message`` are kept as attributes. A subclass of
    ``ValueError`` so that callers catching ``ValueError`` keep working.
    """

    def __init__(self, path: str | os.PathLike | None, message: str):
        self.path = None if path is None else Path(path)
        self.message = str(message)
        super().__init__(self.message if path is None else f"{path}: {message}")


def exception_text(exc: BaseException, path: str | os.PathLike) -> str:
    """The message of a library's exception about ``path`` without the path repeated (it is named already)."""
    text = str(exc).replace(f" '{path}'", "").replace(str(path), "").strip(" :")
    return text or type(exc).__name__


def _yaml_error() -> tuple[type, ...]:
    try:
        import yaml
    except ImportError:  # pragma: no cover - yaml is a dependency
        return ()
    return (yaml.YAMLError,)


def _zip_errors() -> tuple[type, ...]:
    import zipfile

    return (zipfile.BadZipFile, EOFError)


# Exceptions that mean "the input (or the output location) is bad", not "steadyseg has a bug". OSError covers
# PIL.UnidentifiedImageError, PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, *_yaml_error(), *_zip_errors())


def user_error_message(exc: BaseException) -> str:
    """One line describing ``exc`` for the user, naming the file when the exception knows it.

    An ``OSError`` with a ``filename`` becomes ``"<filename>: <strerror>"`` (``"<a> -> <b>: ..."`` for a rename);
    other messages are kept, with line breaks folded into ``" "`` so that the error stays on one line.
    """
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        where = str(exc.filename) if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        text = f"{where}: {exc.strerror}"
        if isinstance(exc, (FileExistsError, NotADirectoryError)) and Path(exc.filename).is_file():
            text = f"{where}: {exc.strerror} (a file is where an output folder should be)"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
