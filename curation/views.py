"""Saved review views of a curation dataset: pure functions of the dataset and thresholds, worst change first.

Each ``*_view`` function returns a FiftyOne view; :func:`save_curation_views` registers all of them with
``dataset.save_view(name, view, overwrite=True)`` so they appear in the App's view list. In every view the
``refined`` (or, for removals, ``ground_truth``) field shows only the instances that matched, and
``ground_truth`` / ``refined`` show their counterparts (same ``coco_id``), so both masks of one change sit side
by side. Samples without a matching instance are left out.

- ``changed_masks``: refined masks with IoU to the original below ``iou_threshold`` (0.9); lowest IoU first;
- ``removed_or_vanished``: originals absent from the refined file or with an empty refined mask; most per image
  first;
- ``small_shrunk``: small originals (< ``small_area`` px, 32^2) whose refined area ratio is below
  ``max_area_ratio`` (0.9); lowest ratio first;
- ``boundary_moves``: refined masks with boundary F below ``boundary_f_threshold`` (0.9); lowest F first;
- ``guard_flags``: instances the refinement guard flagged ("vanished"/"shrunk") or put back (``kept_original``);
  most per image first;
- ``accepted`` / ``rejected``: refined labels tagged ``accept`` / ``reject``.
"""

from __future__ import annotations

from typing import Any, Callable

from steadyseg.curation.build import DEFAULT_CHANGE_THRESHOLD, GT_FIELD, INFO_KEY, REFINED_FIELD
from steadyseg.curation.env import require_fiftyone

ACCEPT_TAG = "accept"
REJECT_TAG = "reject"
DEFAULT_SMALL_AREA = 32 * 32
DEFAULT_MAX_AREA_RATIO = 0.9
DEFAULT_BOUNDARY_F_THRESHOLD = 0.9


def _F(path: str):
    return require_fiftyone().ViewField(path)


def _with_counterparts(view, *, matched: str, other: str):
    """Keep only the ``other`` field's labels whose coco_id is among the ``matched`` field's (already filtered)."""
    F = require_fiftyone().ViewField
    ids = F(f"${matched}.detections").map(F("coco_id"))
    return view.filter_labels(other, ids.contains([F("coco_id")]), only_matches=False)


def _refined_view(dataset, expr, *, sort_attr: str | None, descending_count: bool = False):
    F = require_fiftyone().ViewField
    view = dataset.filter_labels(REFINED_FIELD, expr, only_matches=True)
    view = _with_counterparts(view, matched=REFINED_FIELD, other=GT_FIELD)
    if sort_attr is not None:
        return view.sort_by(F(f"{REFINED_FIELD}.detections").map(F(sort_attr)).min())
    if descending_count:
        return view.sort_by(F(f"{REFINED_FIELD}.detections").length(), reverse=True)
    return view


def changed_masks_view(dataset, *, iou_threshold: float = DEFAULT_CHANGE_THRESHOLD):
    """Refined instances whose mask IoU with the original is below ``iou_threshold``; lowest IoU first."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    return _refined_view(dataset, _F("iou") < iou_threshold, sort_attr="iou")


def removed_view(dataset):
    """Original instances that the refinement removed (absent) or emptied; images with most of them first."""
    F = require_fiftyone().ViewField
    view = dataset.filter_labels(GT_FIELD, (F("removed") == True) | (F("vanished") == True),  # noqa: E712
                                 only_matches=True)
    view = _with_counterparts(view, matched=GT_FIELD, other=REFINED_FIELD)
    return view.sort_by(F(f"{GT_FIELD}.detections").length(), reverse=True)


def small_shrunk_view(dataset, *, small_area: int = DEFAULT_SMALL_AREA,
                      max_area_ratio: float = DEFAULT_MAX_AREA_RATIO):
    """Small instances (original mask < ``small_area`` px) whose refined area ratio is below ``max_area_ratio``."""
    if small_area <= 0 or max_area_ratio <= 0:
        raise ValueError(f"small_area and max_area_ratio must be > 0, got {small_area} and {max_area_ratio}")
    F = require_fiftyone().ViewField
    expr = (F("original_area") < small_area) & (F("area_ratio") < max_area_ratio)
    return _refined_view(dataset, expr, sort_attr="area_ratio")


def boundary_moves_view(dataset, *, boundary_f_threshold: float = DEFAULT_BOUNDARY_F_THRESHOLD):
    """Refined instances whose boundary F against the original is below the threshold; largest moves first."""
    if not 0.0 < boundary_f_threshold <= 1.0:
        raise ValueError(f"boundary_f_threshold must be in (0, 1], got {boundary_f_threshold}")
    return _refined_view(dataset, _F("boundary_f") < boundary_f_threshold, sort_attr="boundary_f")


def guard_flags_view(dataset):
    """Instances the refinement guard flagged or reverted to the original; images with most flags first."""
    F = require_fiftyone().ViewField
    expr = (F("guard") != None) | (F("kept_original") == True)  # noqa: E711,E712
    return _refined_view(dataset, expr, sort_attr=None, descending_count=True)


def tagged_view(dataset, tag: str):
    """Refined labels carrying label tag ``tag`` (e.g. ``accept`` / ``reject``)."""
    return _refined_view(dataset, _F("tags").contains(tag), sort_attr=None)


VIEW_BUILDERS: dict[str, tuple[Callable[..., Any], str]] = {
    "changed_masks": (changed_masks_view, "refined masks with IoU below the threshold, lowest IoU first"),
    "removed_or_vanished": (removed_view, "original instances removed or emptied by the refinement"),
    "small_shrunk": (small_shrunk_view, "small objects whose refined mask shrank, smallest ratio first"),
    "boundary_moves": (boundary_moves_view, "largest boundary moves (lowest boundary F first)"),
    "guard_flags": (guard_flags_view, "instances flagged or reverted by the refinement guard"),
    "accepted": (lambda ds: tagged_view(ds, ACCEPT_TAG), "refined labels tagged 'accept'"),
    "rejected": (lambda ds: tagged_view(ds, REJECT_TAG), "refined labels tagged 'reject'"),
}


def build_views(dataset, *, change_threshold: float = DEFAULT_CHANGE_THRESHOLD,
                small_area: int = DEFAULT_SMALL_AREA, max_area_ratio: float = DEFAULT_MAX_AREA_RATIO,
                boundary_f_threshold: float = DEFAULT_BOUNDARY_F_THRESHOLD) -> dict[str, Any]:
    """All review views by name (not saved)."""
    return {
        "changed_masks": changed_masks_view(dataset, iou_threshold=change_threshold),
        "removed_or_vanished": removed_view(dataset),
        "small_shrunk": small_shrunk_view(dataset, small_area=small_area, max_area_ratio=max_area_ratio),
        "boundary_moves": boundary_moves_view(dataset, boundary_f_threshold=boundary_f_threshold),
        "guard_flags": guard_flags_view(dataset),
        "accepted": tagged_view(dataset, ACCEPT_TAG),
        "rejected": tagged_view(dataset, REJECT_TAG),
    }


def save_curation_views(dataset, *, change_threshold: float = DEFAULT_CHANGE_THRESHOLD,
                        small_area: int = DEFAULT_SMALL_AREA, max_area_ratio: float = DEFAULT_MAX_AREA_RATIO,
                        boundary_f_threshold: float = DEFAULT_BOUNDARY_F_THRESHOLD) -> list[str]:
    """Register every review view on ``dataset`` (overwriting older versions); returns their names."""
    views = build_views(dataset, change_threshold=change_threshold, small_area=small_area,
                        max_area_ratio=max_area_ratio, boundary_f_threshold=boundary_f_threshold)
    for name, view in views.items():
        dataset.save_view(name, view, description=VIEW_BUILDERS[name][1], overwrite=True)
    info = dict(dataset.info.get(INFO_KEY, {}))
    info["views"] = {"names": list(views), "change_threshold": change_threshold, "small_area": small_area,
                     "max_area_ratio": max_area_ratio, "boundary_f_threshold": boundary_f_threshold}
    dataset.info[INFO_KEY] = info
    dataset.save()
    return list(views)


def set_review_tags(dataset, coco_ids, tag: str, *, field: str = REFINED_FIELD, remove: tuple[str, ...] = ()) -> int:
    """Tag the ``field`` labels with the given COCO annotation ids (Python side of the App's label tagging).

    Tagging ``accept`` removes ``reject`` and vice versa (a label has one decision). Returns how many labels were
    tagged; raises ``ValueError`` naming ids that are not in the dataset.
    """
    F = require_fiftyone().ViewField
    ids = sorted({int(i) for i in coco_ids})
    view = dataset.filter_labels(field, F("coco_id").is_in(ids))
    found = set(view.values(f"{field}.detections.coco_id", unwind=True))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValueError(f"dataset {dataset.name!r}: no {field} label with coco_id {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")
    opposite = {ACCEPT_TAG: (REJECT_TAG,), REJECT_TAG: (ACCEPT_TAG,)}.get(tag, ())
    untag = tuple(remove) + opposite
    if untag:
        view.untag_labels(list(untag), label_fields=[field])
    view.tag_labels(tag, label_fields=[field])
    return len(found)
