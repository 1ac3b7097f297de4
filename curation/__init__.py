"""steadyseg.curation: FiftyOne curation views. The only subpackage that imports ``fiftyone``.

Importing this package does NOT import fiftyone; call :func:`steadyseg.curation.require_fiftyone` (or any function
that needs it) to import it lazily, after the environment (database dir, tracking) is configured with
:func:`steadyseg.curation.configure_environment`.

Modules: ``env`` (environment, lazy import, private mongod), ``metrics`` (change metrics, numpy only), ``build``
(the dataset), ``views`` (saved review views, tagging), ``export`` (curated COCO), ``app`` (the App), ``video``
(flicker view), ``cli`` (``steadyseg curate``).
"""

from steadyseg.curation.env import CurationExtraMissing, configure_environment, require_fiftyone, start_mongod

__all__ = ["CurationExtraMissing", "configure_environment", "require_fiftyone", "start_mongod"]
