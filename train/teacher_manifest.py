"""``kind: train-teacher`` manifests: the schema and runner for ``steadyseg run`` (registered in ``KINDS``).

A manifest trains one teacher with :func:`steadyseg.train.teacher.train_teacher`; the three paper variants
(original / refined / curated COCO) share everything but ``data.annotations``::

    kind: train-teacher
    name: teacher-voc21-original
    description: free text                                # optional
    data:                                                 # required
      annotations: ${COCO_ROOT}/annotations/instances_train2017.json
      images: ${COCO_ROOT}/train2017
      labels: voc21                                       # voc21 | coco81 | file
    validation:                                           # optional: mIoU during training
      annotations: ${COCO_ROOT}/annotations/instances_val2017.json
      images: ${COCO_ROOT}/val2017
    model:
      architecture: deeplabv3_resnet50
      init: ${RESNET50_IMAGENET}                          # local checkpoint (full or backbone-only); optional
    recipe:                                               # train_teacher's keyword arguments (optional)
      epochs: 30
      base_size: 520
      crop_size: 480
      batch_size: 4
      lr: 0.02
      seed: 0
    execution:                                            # optional; command-line flags override
      workers: 8
      device: cuda
    output: ${STEADYSEG_OUT:-../out}/teacher-voc21-original

Multi-GPU: ``torchrun --nproc-per-node 8 -m steadyseg.cli run manifests/teacher-voc21-original.yaml``.
"""

from __future__ import annotations

from typing import Any

from steadyseg.manifest import COMMON_FIELDS, Field, Manifest

__all__ = ["TRAIN_TEACHER_SCHEMA", "run_train_teacher"]

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
TRAIN_TEACHER_SCHEMA: dict[str, Field] = {
    **COMMON_FIELDS,
    "data": Field(types=(dict,), required=True, children={
        "annotations": Field(required=True, path=True),
        "images": Field(required=True, path=True),
        "labels": Field(choices=("voc21", "coco81", "file")),
        "split": Field(choices=("train", "val")),
    }),
    "validation": Field(types=(dict,), children={
        "annotations": Field(required=True, path=True),
        "images": Field(required=True, path=True),
    }),
    "model": Field(types=(dict,), children={
        "architecture": Field(choices=("deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large",
                                       "lraspp_mobilenet_v3_large")),
        "aux_loss": Field(types=(bool, type(None))),
        "width_mult": Field(types=_NUM),
        "init": Field(types=(str, type(None)), path=True),
    }),
    "recipe": Field(types=(dict,), children={
        "epochs": Field(types=_OPT_NUM), "minutes": Field(types=_OPT_NUM), "base_size": Field(types=(int,)),
        "crop_size": Field(types=(int,)), "min_scale": Field(types=_NUM), "max_scale": Field(types=_NUM),
        "hflip_prob": Field(types=_NUM), "batch_size": Field(types=(int,)), "lr": Field(types=_NUM),
        "momentum": Field(types=_NUM), "weight_decay": Field(types=_NUM), "lr_power": Field(types=_NUM),
        "aux_weight": Field(types=_NUM), "aux_lr_mult": Field(types=_NUM), "seed": Field(types=(int,)),
        "eval_every": Field(types=_OPT_NUM), "checkpoint_every": Field(types=(int, type(None))),
        "precise_bn": Field(types=(int,)), "amp": Field(types=(bool,)),
    }),
    "execution": Field(types=(dict,), children={
        "workers": Field(types=(int,)),
        "device": Field(types=(str, type(None))),
    }),
    "output": Field(required=True, path=True),
}


def run_train_teacher(job: Manifest, *, resume: bool | None = None, workers: int | None = None,
                      scheduler: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Runner of ``kind: train-teacher`` (signature of ``steadyseg.manifest.KINDS`` runners)."""
    from steadyseg.train.teacher import train_teacher

    if scheduler is not None:
        raise ValueError(f"{job.source}: train-teacher runs under torchrun, not on a Dask scheduler")
    s = job.spec
    kwargs: dict[str, Any] = {**s.get("model", {}), **s.get("recipe", {}), **s.get("execution", {})}
    for key in ("labels", "split"):
        if key in s["data"]:
            kwargs[key] = s["data"][key]
    if "validation" in s:
        kwargs["val_annotations"] = s["validation"]["annotations"]
        kwargs["val_images"] = s["validation"]["images"]
    if workers is not None:
        kwargs["workers"] = workers
    record = train_teacher(s["data"]["annotations"], s["data"]["images"], s["output"], resume=bool(resume),
                           progress=progress, **kwargs)
    record["counts"] = {"steps": record["step"], "epochs": round(record["epochs"], 3)}
    return record
