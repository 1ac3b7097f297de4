"""steadyseg: temporally stable video segmentation without video annotations.

Subpackages (each a folder at the repository root, mapped by ``pyproject.toml``):

- ``steadyseg.datasets`` (``datasets/``): COCO (the only pycocotools user), video and mask IO, optical flow + cache,
  synthetic generators.
- ``steadyseg.refine`` (``refine/``): mask refiners (CascadePSP, guided), guided filters 2D/3D, COCO rewrite driver.
- ``steadyseg.train`` (``train/``): model builders, losses, trainers.
- ``steadyseg.curation`` (``curation/``): FiftyOne views (the only fiftyone user).

The core package holds the flow warps and validity checks (``warp``), the consistency measures (``measures``; the
scores of other papers in ``consistency_scores``), their differentiable loss (``losses``), accuracy (``accuracy``),
frame-pair selection (``pairs``), measuring a mask video end to end (``measure_video``), the user-study tool
(``study``), manifests (``manifest``) and the command line (``cli`` and one ``*_cli`` module per command).
"""

__version__ = "0.1.0"
