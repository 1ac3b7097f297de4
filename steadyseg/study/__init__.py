"""The user-study protocol of the paper (§4) as a tool: qualification grid and rating analysis.

Two parts:

1. **Qualification grid** (:mod:`~steadyseg.study.corruptions` ``make_grid``; on disk with
   :mod:`~steadyseg.study.grid` ``write_grid`` / ``steadyseg study make-grid``). From an accurate mask sequence, nine
   corrupted copies are made along two independent axes:

   - *accuracy*: directional erosion by ``n ∈ {0, 10, 20}`` px (``erode_directional``). The direction is ONE random
     unit vector per grid, shared by every frame and every level, so that an accuracy corruption is a constant,
     temporally coherent bias (it must not add flicker) and the levels are nested (20 px ⊂ 10 px ⊂ clean).
   - *consistency*: a random local piecewise-affine displacement of magnitude ``m ∈ {0, 4, 8}`` px
     (``piecewise_affine_displacement``), drawn independently for every frame (that is what makes it flicker).
     For one consistency level, the same per-frame fields are used at every accuracy level, so moving along one
     axis of the grid changes exactly one factor.

2. **Rating analysis** (:mod:`~steadyseg.study.ratings` ``analyze_ratings``; from files with
   :mod:`~steadyseg.study.io` ``analyze_rating_files`` / ``steadyseg study analyze``): Spearman correlations
   between the mean crowd rating of each video and each measure, the qualification filter of §4.1, the mean pairwise Spearman
   agreement between qualified workers and the low-agreement split of §4.2.

Conventions
-----------
- A mask is an ``(H, W)`` integer label map: 0 = background, 1..L = objects/classes, 255 = void. DAVIS 2016 files
  are {0, 255} PNGs; they are read as labels {0, 1} and written back as {0, 255}.
- Ratings are Likert 1-5 where **higher = more consistent**. Corruption levels and the measures (E_cons, E_smooth)
  grow with inconsistency, so a worker who understands the task has a NEGATIVE Spearman correlation between
  their ratings and the consistency level, and good measures correlate NEGATIVELY with the mean rating. The
  qualification filter compares magnitudes ``|rho|`` (the paper's "higher correlation"), so the sign of the scale
  does not change who is dropped; the signs are reported as they are.

Modules: :mod:`~steadyseg.study.corruptions` (erosion, displacement, the grid), :mod:`~steadyseg.study.ratings`
(rating statistics), :mod:`~steadyseg.study.io` (files), :mod:`~steadyseg.study.drawing` (overlay, montage),
:mod:`~steadyseg.study.grid` (the grid on disk and its measures), :mod:`~steadyseg.study.cli` (the command). The
public names of all of them are importable from ``steadyseg.study``.
"""

from steadyseg.study.corruptions import (DISPLACEMENT_CELLS, DISPLACEMENT_LEVELS, EROSION_LEVELS,
                                         DisplacementLattice, cell_name, displacement_field, erode_directional,
                                         erosion_direction, make_grid, piecewise_affine_displacement, unit_direction)
from steadyseg.study.drawing import encode_png, overlay, preview_montage
from steadyseg.study.grid import GRID_MEASURES, evaluate_grid, write_grid
from steadyseg.study.io import (analyze_rating_files, load_frames, load_masks, read_grid, read_measures,
                                read_ratings_csv)
from steadyseg.study.ratings import analyze_ratings, format_report, grid_axis_correlations, qualify_worker, spearman

__all__ = [
    "EROSION_LEVELS", "DISPLACEMENT_LEVELS", "DISPLACEMENT_CELLS", "DisplacementLattice", "unit_direction",
    "erode_directional", "displacement_field", "piecewise_affine_displacement", "erosion_direction", "cell_name",
    "make_grid", "spearman", "qualify_worker", "analyze_ratings", "grid_axis_correlations", "format_report",
    "read_ratings_csv", "read_measures", "read_grid", "load_masks", "load_frames", "analyze_rating_files",
    "overlay", "preview_montage", "encode_png", "evaluate_grid", "write_grid", "GRID_MEASURES",
]
