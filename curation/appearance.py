"""How the curation datasets look when the FiftyOne App opens them: label fields switched on, fixed colours.

Both are stored in the dataset's App config (``dataset.app_config``), so every App session — ``steadyseg curate
app``, a notebook, ``fiftyone app launch`` — opens the dataset the same way:

- **COCO curation** (``steadyseg curate build``): ``ground_truth`` (the original masks) in **orange**
  (:data:`ORIGINAL_COLOR`) and ``refined`` in **blue** (:data:`REFINED_COLOR`) — a colour-blind safe pair that
  stays apart at thumbnail size —, both active.
- **Video flicker** (``steadyseg curate video``): ``masks`` in blue, ``flicker_regions`` in red
  (:data:`FLICKER_COLOR`) and the ``flicker_map`` heat map (0 = every valid neighbour agrees, 255 = all disagree)
  in amber (:data:`HEAT_COLOR`), all three active. With ``color_by="field"`` the App (FiftyOne 1.22) draws a heat
  map in its field colour with opacity proportional to the value (0 transparent); the ``hot`` colour scale that is
  also stored (:data:`FLICKER_COLORSCALE`) is used only when the App colours by value. In the video dataset (one
  video sample) the same labels are frame fields, so the paths are ``frames.masks``, ``frames.flicker_map`` and
  ``frames.flicker_regions``.

The App colours labels by field (``color_by="field"``), so a field has one colour in every sample.
"""

from __future__ import annotations

from steadyseg.curation.env import require_fiftyone

__all__ = ["ORIGINAL_COLOR", "REFINED_COLOR", "MASK_COLOR", "FLICKER_COLOR", "HEAT_COLOR", "FLICKER_COLORSCALE",
           "set_app_appearance", "apply_curation_appearance", "apply_flicker_appearance"]

ORIGINAL_COLOR = "#ff7f0e"  # orange: the original COCO masks (ground_truth)
REFINED_COLOR = "#1f77ff"   # blue: the refined masks
MASK_COLOR = REFINED_COLOR  # the evaluated masks of a flicker dataset
FLICKER_COLOR = "#e8112d"   # red: flicker regions
HEAT_COLOR = "#ffb000"      # amber: the flicker heat map (opacity = value when the App colours by field)
FLICKER_COLORSCALE = "hot"


def set_app_appearance(dataset, *, colors: dict[str, str], active: list[str],
                       colorscales: dict[str, str] | None = None) -> None:
    """Store field colours, colour scales and the active (checked) label fields in ``dataset.app_config``.

    Args:
        dataset: a ``fiftyone.core.dataset.Dataset``.
        colors: field path → ``"#rrggbb"`` (frame fields of a video dataset: ``"frames.<field>"``).
        active: the label fields checked in the App's sidebar when the dataset opens.
        colorscales: field path → a named colour scale for heat maps (e.g. ``"hot"``).
    """
    fo = require_fiftyone()
    schema = set(dataset.get_field_schema())
    if dataset.media_type == "video":
        schema |= {f"frames.{f}" for f in dataset.get_frame_field_schema()}
    missing = [f for f in list(colors) + list(active) + list(colorscales or {}) if f not in schema]
    if missing:
        raise ValueError(f"dataset {dataset.name!r} has no field(s) {missing}")
    dataset.app_config.color_scheme = fo.ColorScheme(
        color_by="field",
        fields=[{"path": path, "fieldColor": color} for path, color in colors.items()],
        colorscales=[{"path": path, "name": name} for path, name in (colorscales or {}).items()])
    dataset.app_config.active_fields = fo.ActiveFields(paths=list(active))
    dataset.save()


def apply_curation_appearance(dataset) -> None:
    """Original masks orange, refined masks blue, both active (a ``curate build`` dataset)."""
    from steadyseg.curation.build import GT_FIELD, REFINED_FIELD

    set_app_appearance(dataset, colors={GT_FIELD: ORIGINAL_COLOR, REFINED_FIELD: REFINED_COLOR},
                       active=[GT_FIELD, REFINED_FIELD])


def apply_flicker_appearance(dataset) -> None:
    """Masks blue, flicker regions red, the flicker heat map amber (``hot`` scale by value), all active.

    The frame dataset has them as sample fields; the video dataset as frame fields (``frames.`` paths).
    """
    prefix = "frames." if dataset.media_type == "video" else ""
    set_app_appearance(dataset, colors={f"{prefix}masks": MASK_COLOR, f"{prefix}flicker_map": HEAT_COLOR,
                                        f"{prefix}flicker_regions": FLICKER_COLOR},
                       active=[f"{prefix}masks", f"{prefix}flicker_map", f"{prefix}flicker_regions"],
                       colorscales={f"{prefix}flicker_map": FLICKER_COLORSCALE})
