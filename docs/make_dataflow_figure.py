"""Draw docs/img/dataflow.png, the data-flow diagram of the README and the docs home page.

    python docs/make_dataflow_figure.py      # needs matplotlib (a core dependency)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "img" / "dataflow.png"

DATA = "#e8f0fb"     # files on disk
COMMAND = "#fdf1dc"  # steadyseg commands
NEXT = "#eeeeee"     # not there yet

# (x, y, text, colour): centres in axis units
BOXES = {
    "coco": (1.0, 3.0, "COCO images\n+ instances.json", DATA),
    "refine": (3.0, 3.0, "steadyseg\nrefine-coco\n(guided | CascadePSP)", COMMAND),
    "refined": (5.0, 3.0, "refined COCO\ninstances.json\n+ run.json", DATA),
    "curate": (7.0, 3.0, "steadyseg curate\n(original + refined)\nbuild, app, tag, export", COMMAND),
    "curated": (9.0, 3.0, "curated COCO\ninstances.json", DATA),
    "train": (11.0, 3.0, "train (next issues)\nteacher, decoder", NEXT),
    "video": (1.0, 1.0, "video frames\n+ per-frame masks", DATA),
    "flow": (3.0, 1.0, "steadyseg flow\nDIS | Farneback\n| RAFT", COMMAND),
    "cache": (5.0, 1.0, "flow cache\n(content-addressed)", DATA),
    "measure": (7.0, 1.6, "steadyseg measure\nE_cons, E_smooth,\nJ&F, mVC, TC", COMMAND),
    "post": (7.0, 0.4, "steadyseg\npostprocess\n3D WGF | Gaussian", COMMAND),
    "scores": (9.0, 1.6, "scores JSON\n+ plot", DATA),
    "stable": (9.0, 0.4, "stabilised masks", DATA),
    "study": (11.0, 1.0, "steadyseg study\nmake-grid | analyze", COMMAND),
}
ARROWS = [("coco", "refine"), ("refine", "refined"), ("refined", "curate"),
          ("curate", "curated"), ("curated", "train"), ("video", "flow"), ("flow", "cache"), ("cache", "measure"),
          ("cache", "post"), ("measure", "scores"), ("post", "stable"), ("stable", "measure"), ("video", "study")]
W, H = 1.75, 0.85


def main() -> None:
    fig, ax = plt.subplots(figsize=(12, 4.2), dpi=110)
    ax.set_xlim(0, 12)
    ax.set_ylim(-0.45, 3.75)
    ax.axis("off")
    for x, y, text, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x - W / 2, y - H / 2), W, H, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    fc=colour, ec="#555555", lw=1))
        ax.text(x, y, text, ha="center", va="center", fontsize=8)
    for a, b in ARROWS:
        (xa, ya, *_), (xb, yb, *_) = BOXES[a], BOXES[b]
        if a == "stable" and b == "measure":
            start, end, style = (xa - W / 2 + 0.1, ya + H / 2), (xb + W / 2 - 0.1, yb - H / 2), "arc3,rad=0"
        elif a == "video" and b == "study":
            start, end, style = (xa, ya - H / 2), (xb, yb - H / 2), "arc3,rad=0.12"
        else:
            dx = W / 2 if xb > xa else 0
            start, end, style = (xa + dx, ya), (xb - dx, yb), "arc3,rad=0"
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color="#333333", lw=1,
                                     connectionstyle=style))
    ax.text(0.1, 3.55, "images: refine and curate a COCO variant", fontsize=10, weight="bold")
    ax.text(0.1, 2.05, "video: measure and stabilise mask videos", fontsize=10, weight="bold")
    ax.text(11.95, 3.55, "blue: files on disk   orange: steadyseg commands   grey: next issues", fontsize=7.5,
            ha="right", color="#444444")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
