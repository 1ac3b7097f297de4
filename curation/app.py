"""Launch the FiftyOne App on a curation dataset (its saved review views are listed in the App's view menu)."""

from __future__ import annotations

import time
from typing import Any

from steadyseg.curation.env import require_fiftyone

DEFAULT_PORT = 5151
DEFAULT_ADDRESS = "127.0.0.1"


def _load_dataset(name: str):
    """``fo.load_dataset(name)`` with an error that lists the existing datasets."""
    fo = require_fiftyone()
    if not fo.dataset_exists(name):
        raise ValueError(f"no FiftyOne dataset named {name!r} (build it with `steadyseg curate build`); "
                         f"existing: {', '.join(fo.list_datasets()) or 'none'}")
    return fo.load_dataset(name)


def view_url(base_url: str, dataset_name: str, view_name: str | None = None) -> str:
    """URL of a dataset (and optionally one of its saved views, by slug) in a running App."""
    from urllib.parse import quote

    url = f"{base_url.rstrip('/')}/datasets/{quote(dataset_name)}"
    if view_name:
        url += f"?view={quote(view_name.lower().replace(' ', '-').replace('_', '-'))}"
    return url


def launch_app(name: str, *, port: int = DEFAULT_PORT, address: str = DEFAULT_ADDRESS, view: str | None = None,
               wait: bool = True, printer=print) -> Any:
    """Start the App server on dataset ``name``; print its URL and the saved views; block until Ctrl-C if ``wait``.

    Args:
        name: an existing FiftyOne dataset (``steadyseg curate build``).
        port, address: where the App server listens (``remote=True``: no browser is opened here).
        view: a saved view to open first (one of ``dataset.list_saved_views()``).
        wait: block until interrupted (the command line); False returns the running session (scripts, tests).
        printer: where the URL and view list go (``print``).

    Returns:
        the ``fiftyone.core.session.Session`` (its ``url``; ``close()`` stops the server).
    """
    fo = require_fiftyone()
    dataset = _load_dataset(name)
    saved = dataset.list_saved_views()
    if view is not None and view not in saved:
        raise ValueError(f"dataset {name!r} has no saved view {view!r}; saved views: {', '.join(saved) or 'none'}")
    start = dataset.load_saved_view(view) if view else dataset
    session = fo.launch_app(start, port=port, address=address, remote=True, auto=False)
    base = f"http://{address if address not in ('0.0.0.0', '') else 'localhost'}:{port}"
    printer(f"FiftyOne App for dataset {name!r} ({len(dataset)} samples): {view_url(base, name)}")
    for v in saved:
        printer(f"  view {v:<22s} {len(dataset.load_saved_view(v)):>6d} samples  {view_url(base, name, v)}")
    if wait:
        printer("Press Ctrl-C to stop the App.")
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            printer("stopping the App")
        finally:
            session.close()
    return session
