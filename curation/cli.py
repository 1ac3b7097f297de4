"""``steadyseg curate``: build / views / app / export / video. fiftyone is imported only when a command runs."""

from __future__ import annotations

import argparse
import json

from steadyseg.cli import set_flags
from steadyseg.curation.env import CurationExtraMissing


def _db_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("database")
    g.add_argument("--database-dir", default=None, help="FiftyOne's database folder (FIFTYONE_DATABASE_DIR)")
    g.add_argument("--database-uri", default=None, help="an already running MongoDB (FIFTYONE_DATABASE_URI)")
    g.add_argument("--database-name", default=None, help="database name on that server (FIFTYONE_DATABASE_NAME)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="curate_command", metavar="ACTION")

    p = sub.add_parser("build", help="create or update the FiftyOne dataset of original vs refined masks")
    p.add_argument("--original", required=True, help="original COCO instances JSON")
    p.add_argument("--refined", required=True, help="refined COCO instances JSON (steadyseg refine-coco)")
    p.add_argument("--images", required=True, help="image folder")
    p.add_argument("--name", required=True, help="FiftyOne dataset name")
    p.add_argument("--overwrite", action="store_true", default=None, help="delete the dataset first (drops tags)")
    p.add_argument("--workers", type=int, default=None, help="processes (default 1)")
    p.add_argument("--chunk-size", type=int, default=None, help="images per insert batch (default 64)")
    p.add_argument("--change-threshold", type=float, default=None, help="IoU below which a mask counts as changed")
    p.add_argument("--boundary-tolerance", type=int, default=None, help="boundary F tolerance, px (default DAVIS)")
    p.add_argument("--writer", choices=["raw", "fiftyone"], default=None, help="insert path (default raw)")
    p.add_argument("--strict", action="store_true", default=None,
                   help="exit with an error when an image or annotation could not be used (it is skipped either way)")
    _db_args(p)
    p.set_defaults(func=_build)

    p = sub.add_parser("views", help="(re)save the review views with other thresholds and print their sizes")
    p.add_argument("name", help="FiftyOne dataset name")
    p.add_argument("--change-threshold", type=float, default=None)
    p.add_argument("--small-area", type=int, default=None, help="pixels below which an object is small (32^2)")
    p.add_argument("--max-area-ratio", type=float, default=None, help="shrink ratio for small_shrunk (0.9)")
    p.add_argument("--boundary-f-threshold", type=float, default=None, help="boundary_moves threshold (0.9)")
    _db_args(p)
    p.set_defaults(func=_views)

    p = sub.add_parser("app", help="launch the FiftyOne App on the dataset (prints the URL and the views)")
    p.add_argument("name", help="FiftyOne dataset name")
    p.add_argument("--port", type=int, default=None, help="App port (default 5151)")
    p.add_argument("--address", default=None, help="listen address (default 127.0.0.1)")
    p.add_argument("--view", default=None, help="saved view to open first")
    p.add_argument("--no-wait", action="store_true", default=None, help="return after starting (scripts)")
    _db_args(p)
    p.set_defaults(func=_app)

    p = sub.add_parser("export", help="write the curated COCO variant (refined where accepted, original elsewhere)")
    p.add_argument("name", help="FiftyOne dataset name")
    p.add_argument("--out", required=True, help="curated instances JSON to write")
    p.add_argument("--rule", choices=["accepted", "refined-unless-rejected"], default=None,
                   help="which refined masks to use (default accepted)")
    _db_args(p)
    p.set_defaults(func=_export)

    p = sub.add_parser("tag", help="tag refined labels accept/reject by COCO annotation id (the App does it too)")
    p.add_argument("name", help="FiftyOne dataset name")
    p.add_argument("decision", choices=["accept", "reject"])
    p.add_argument("ids", nargs="+", type=int, help="COCO annotation ids")
    _db_args(p)
    p.set_defaults(func=_tag)

    p = sub.add_parser("video", help="FiftyOne dataset of a mask video's per-frame inconsistency and flicker maps")
    p.add_argument("--video", required=True, help="frame folder or video file")
    p.add_argument("--masks", required=True, help="mask stack (PNG folder or .npy/.npz)")
    p.add_argument("--name", required=True, help="FiftyOne dataset name")
    p.add_argument("--out", required=True, help="folder for the frame and flicker-map files")
    p.add_argument("--window", type=int, default=None, help="frame window K of the measure (default 3)")
    p.add_argument("--flow-cache", default=None, help="optical flow cache folder")
    p.add_argument("--binary", action="store_true", default=None, help="treat masks as foreground/background")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the encoded clip (default: the video file's, 24 for a frame folder)")
    p.add_argument("--no-video-sample", dest="video_sample", action="store_false", default=None,
                   help="build only the frame dataset (no NAME-video dataset, no encoded clip)")
    p.add_argument("--overwrite", action="store_true", default=None)
    _db_args(p)
    p.set_defaults(func=_video)


def _configure(args: argparse.Namespace) -> None:
    from steadyseg.curation.env import configure_environment

    configure_environment(**set_flags(args, {"database_dir": "database_dir", "database_uri": "database_uri",
                                       "database_name": "database_name"}))


def _guard(fn):
    def run(args: argparse.Namespace):
        try:
            _configure(args)
            return fn(args)
        except CurationExtraMissing as exc:
            raise SystemExit(f"steadyseg curate: {exc}") from None
    return run


@_guard
def _build(args):
    from steadyseg.curation.build import build_curation_dataset

    ds = build_curation_dataset(args.original, args.refined, args.images, args.name, **set_flags(args, {
        "overwrite": "overwrite", "workers": "workers", "chunk_size": "chunk_size",
        "change_threshold": "change_threshold", "boundary_tolerance": "boundary_tolerance", "writer": "writer",
        "strict": "strict"}))
    ing = ds.info["steadyseg"]["ingest"]
    print(f"dataset {ds.name!r}: {len(ds)} samples, {ing['instances']} instances in {ing['seconds']:.1f} s "
          f"({ing['instances_per_second']} instances/s)")
    if ing["failures"]:
        print(f"{len(ing['failures'])} image(s) skipped (recorded in the dataset info, steadyseg.ingest.failures):")
        for f in ing["failures"][:10]:
            print(f"  failed: {f['error']}")
    _print_views(ds)
    return 0


def _print_views(ds) -> None:
    for v in ds.list_saved_views():
        view = ds.load_saved_view(v)
        print(f"  view {v:<22s} {len(view):>6d} samples")


@_guard
def _views(args):
    from steadyseg.curation.app import _load_dataset
    from steadyseg.curation.views import save_curation_views

    ds = _load_dataset(args.name)
    save_curation_views(ds, **set_flags(args, {"change_threshold": "change_threshold", "small_area": "small_area",
                                         "max_area_ratio": "max_area_ratio",
                                         "boundary_f_threshold": "boundary_f_threshold"}))
    _print_views(ds)
    return 0


@_guard
def _app(args):
    from steadyseg.curation.app import launch_app

    launch_app(args.name, wait=not args.no_wait, **set_flags(args, ("port", "address", "view")))
    return 0


@_guard
def _export(args):
    from steadyseg.curation.export import export_curated_coco

    summary = export_curated_coco(args.name, args.out, **set_flags(args, {"rule": "rule"}))
    print(json.dumps(summary, indent=2))
    return 0


@_guard
def _tag(args):
    from steadyseg.curation.app import _load_dataset
    from steadyseg.curation.views import set_review_tags

    n = set_review_tags(_load_dataset(args.name), args.ids, args.decision)
    print(f"tagged {n} refined labels {args.decision!r}")
    return 0


@_guard
def _video(args):
    from steadyseg.curation.video import build_flicker_dataset

    ds = build_flicker_dataset(args.video, args.masks, args.name, args.out, **set_flags(args, {
        "window": "window", "flow_cache": "flow_cache_dir", "binary": "binary", "overwrite": "overwrite",
        "fps": "fps", "video_sample": "video_sample"}))
    info = ds.info["steadyseg_video"]
    print(f"dataset {ds.name!r}: {len(ds)} frames; saved views: {', '.join(ds.list_saved_views())}; "
          f"per-frame timeline: {info['timeline_plot']}")
    if info.get("video_dataset"):
        print(f"video dataset {info['video_dataset']!r}: the clip {info['video_file']} at {info['fps']:g} fps "
              f"with the masks and flicker maps as frame labels (open it in the App to play it)")
    return 0


def main(args: argparse.Namespace) -> int:
    """Called when ``steadyseg curate`` is given no action: print the actions."""
    print("usage: steadyseg curate {build,views,app,export,tag,video} ... (see steadyseg curate -h)")
    return 2
