"""YAML job specs (manifests) for dataset variants (and, later, training runs): load, validate, run.

The command is ``steadyseg run manifests/<name>.yaml`` (:mod:`steadyseg.manifest_cli`).

A manifest names its ``kind``, and each kind has a schema (allowed keys, types, which values are paths) and a
runner. Unknown keys are rejected with the key and the file named; paths may use ``${VAR}`` or
``${VAR:-default}`` and are resolved relative to the manifest's folder. Kinds register in ``KINDS``
(``kind -> (schema, runner)``): ``refine-coco`` here, ``train-teacher`` from :mod:`steadyseg.train.teacher_manifest`
(added on first use by :func:`manifest_kinds`, since that module builds its schema from this one's ``Field``).

``kind: refine-coco`` (runs :func:`steadyseg.refine.coco.refine_coco`)::

    kind: refine-coco
    name: coco2017-val-cascadepsp            # required, a label for records
    description: free text                   # optional
    source:                                  # required
      annotations: ${COCO_ROOT}/annotations/instances_val2017.json
      images: ${COCO_ROOT}/val2017
    refiner:                                 # required
      name: cascadepsp                       # a name of steadyseg.refine.refiners.REFINERS
      checkpoint: ${CASCADEPSP_CHECKPOINT}   # cascadepsp only
      params: {l_max: 900, max_upscale: 2.0} # keyword arguments of the refiner's builder (optional)
    parameters:                              # optional, refine_coco's keyword arguments
      context: 0.25
      context_min: 8
      threshold: 0.5
      guard: keep-original                   # a guard policy of refine_coco (GUARD_POLICIES)
      min_area_ratio: 0.5
      shard_size: 64
    execution:                               # optional; command-line flags override
      workers: 2
      scheduler: null                        # tcp://host:8786 for a Dask cluster
      strict: false
    output: ${STEADYSEG_OUT:-../out}/coco2017-val-cascadepsp

Python::

    from steadyseg.manifest import load_manifest, run_manifest
    job = load_manifest("manifests/coco-val2017-80-guided.yaml")   # validated, paths resolved
    record = run_manifest(job, resume=True)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ManifestError(ValueError):
    """An invalid manifest; the message names the file and the key."""


@dataclass(frozen=True)
class Field:
    """One manifest key: its Python type(s), whether it is required, whether it is a path, nested schema."""

    types: tuple[type, ...] = (str,)
    required: bool = False
    path: bool = False
    children: dict[str, "Field"] | None = None
    # allowed values, or a function returning them (read when a manifest is validated, so that the registry that
    # owns the names, e.g. REFINERS, is their only source and is imported only when needed)
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None
    free_mapping: bool = False  # a dict of arbitrary keys (e.g. refiner params, checked by the builder)


@dataclass
class Manifest:
    """A validated manifest: ``kind``, the resolved ``spec`` (paths absolute) and the ``source`` file."""

    kind: str
    spec: dict[str, Any]
    source: Path
    raw: dict[str, Any] = field(default_factory=dict)


_NUM = (int, float)


def _refiner_names() -> tuple[str, ...]:
    from steadyseg.refine.refiners import REFINERS

    return tuple(REFINERS)


def _guard_policies() -> tuple[str, ...]:
    from steadyseg.refine.coco import GUARD_POLICIES

    return tuple(GUARD_POLICIES)


#: the keys every manifest kind starts with
COMMON_FIELDS: dict[str, Field] = {
    "kind": Field(required=True),
    "name": Field(required=True),
    "description": Field(),
}

REFINE_COCO_SCHEMA: dict[str, Field] = {
    **COMMON_FIELDS,
    "source": Field(types=(dict,), required=True, children={
        "annotations": Field(required=True, path=True),
        "images": Field(required=True, path=True),
    }),
    "refiner": Field(types=(dict,), required=True, children={
        "name": Field(required=True, choices=_refiner_names),
        "checkpoint": Field(types=(str, type(None)), path=True),
        "params": Field(types=(dict,), free_mapping=True),
    }),
    "parameters": Field(types=(dict,), children={
        "context": Field(types=_NUM),
        "context_min": Field(types=(int,)),
        "threshold": Field(types=_NUM),
        "guard": Field(choices=_guard_policies),
        "min_area_ratio": Field(types=_NUM),
        "shard_size": Field(types=(int,)),
    }),
    "execution": Field(types=(dict,), children={
        "workers": Field(types=(int,)),
        "scheduler": Field(types=(str, type(None))),
        "strict": Field(types=(bool,)),
    }),
    "output": Field(required=True, path=True),
}


def expand_env(value: str, *, where: str) -> str:
    """``${VAR}`` / ``${VAR:-default}`` in ``value`` expanded (the one rule of every manifest, bench manifests too);
    an unset variable without a default raises :class:`ManifestError` naming ``where``."""
    def sub(m: re.Match) -> str:
        var, default = m.group(1), m.group(2)
        if var in os.environ and os.environ[var] != "":
            return os.environ[var]
        if default is not None:
            return default
        raise ManifestError(f"{where}: environment variable ${{{var}}} is not set "
                            f"(set it, or write ${{{var}:-default}})")
    return _ENV.sub(sub, value)


def _validate(node: Any, schema: dict[str, Field], *, path: Path, prefix: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise ManifestError(f"{path}: {prefix or 'the manifest'} must be a mapping, got {type(node).__name__}")
    unknown = [k for k in node if k not in schema]
    if unknown:
        raise ManifestError(f"{path}: unknown key {prefix + str(unknown[0])!r}; allowed here: {sorted(schema)}")
    out: dict[str, Any] = {}
    for key, f in schema.items():
        where = f"{path}: key {prefix + key!r}"
        if key not in node:
            if f.required:
                raise ManifestError(f"{where} is required")
            continue
        value = node[key]
        if isinstance(value, bool) and bool not in f.types:
            raise ManifestError(f"{where} must be {'/'.join(t.__name__ for t in f.types)}, got a boolean")
        if not isinstance(value, f.types):
            raise ManifestError(f"{where} must be {'/'.join(t.__name__ for t in f.types)}, "
                                f"got {type(value).__name__} {value!r}")
        if isinstance(value, str):
            value = expand_env(value, where=where)
        choices = f.choices() if callable(f.choices) else f.choices
        if choices is not None and value not in choices:
            raise ManifestError(f"{where} must be one of {list(choices)}, got {value!r}")
        if f.path and isinstance(value, str):
            p = Path(value).expanduser()
            value = str((p if p.is_absolute() else path.parent / p).resolve())
        if f.children is not None:
            value = _validate(value, f.children, path=path, prefix=f"{prefix}{key}.")
        elif f.free_mapping:
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise ManifestError(f"{where} keys must be strings, got {bad[0]!r}")
            value = {k: expand_env(v, where=f"{where}.{k}") if isinstance(v, str) else v for k, v in value.items()}
        out[key] = value
    return out


def _run_refine_coco(job: Manifest, *, resume: bool | None = None, workers: int | None = None,
                     scheduler: str | None = None, progress: bool = True) -> dict[str, Any]:
    from steadyseg.refine.coco import refine_coco

    s = job.spec
    execution = dict(s.get("execution", {}))
    for key, value in (("workers", workers), ("scheduler", scheduler)):
        if value is not None:
            execution[key] = value
    refiner = s["refiner"]
    return refine_coco(s["source"]["annotations"], s["source"]["images"], s["output"], refiner=refiner["name"],
                       refiner_kwargs=refiner.get("params") or None, checkpoint=refiner.get("checkpoint"),
                       resume=bool(resume), progress=progress, **s.get("parameters", {}), **execution)


# kind -> (schema, runner(job, *, resume, workers, scheduler, progress) -> record)
KINDS: dict[str, tuple[dict[str, Field], Callable[..., dict[str, Any]]]] = {
    "refine-coco": (REFINE_COCO_SCHEMA, _run_refine_coco),
}


def manifest_kinds() -> dict[str, tuple[dict[str, Field], Callable[..., dict[str, Any]]]]:
    """``KINDS`` with the kinds of the later stages registered (the training kinds import this module)."""
    if "train-teacher" not in KINDS:
        from steadyseg.train.teacher_manifest import TRAIN_TEACHER_SCHEMA, run_train_teacher

        KINDS["train-teacher"] = (TRAIN_TEACHER_SCHEMA, run_train_teacher)
    return KINDS


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read, validate and resolve a manifest (env vars expanded, paths absolute); ``ManifestError`` if invalid."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: a manifest must be a YAML mapping with a 'kind' key")
    kind = raw.get("kind")
    kinds = manifest_kinds()
    if kind not in kinds:
        raise ManifestError(f"{path}: key 'kind' must be one of {sorted(kinds)}, got {kind!r}")
    spec = _validate(raw, kinds[kind][0], path=path.resolve(), prefix="")
    return Manifest(kind=kind, spec=spec, source=path.resolve(), raw=raw)


def run_manifest(job: Manifest | str | os.PathLike, *, resume: bool | None = None, workers: int | None = None,
                 scheduler: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run a manifest's job; the manifest (as written and resolved) is saved beside the outputs."""
    from steadyseg import files

    if not isinstance(job, Manifest):
        job = load_manifest(job)
    record = manifest_kinds()[job.kind][1](job, resume=resume, workers=workers, scheduler=scheduler, progress=progress)
    out = job.spec.get("output")
    if out is not None:
        files.save_resolved_config(out, {"manifest": str(job.source), "kind": job.kind, "as_written": job.raw,
                                         "resolved": job.spec}, name="manifest.yaml")
    return record
