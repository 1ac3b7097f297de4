"""steadyseg.curation: FiftyOne curation views. The only subpackage that imports ``fiftyone``.

Importing this package does NOT import fiftyone; call :func:`steadyseg.curation.require_fiftyone` (or any function
that needs it) to import it lazily, after the environment (database dir, tracking) is configured.
"""
