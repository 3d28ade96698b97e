"""Model cards: a JSON file beside each model (``model.pt`` -> ``model.json``) saying what it is and how it
was made: architecture, bands, normalisation, decision threshold, training data, metrics, seed, versions."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from minescape.atomic import atomic_write_text
from minescape.change.deep.model import ChangeModel
from minescape.errors import InputError
from minescape.jsonfile import read_json

CARD_FORMAT = "minescape-model-card/1"
REQUIRED = ("format", "arch", "bands", "normalisation", "threshold", "training_data", "metrics", "seed", "versions")


def card_path(model_path: str | Path) -> Path:
    """The card's path for a model file (same stem, ``.json``)."""
    return Path(model_path).with_suffix(".json")


def versions() -> dict[str, str]:
    """Versions of Python, minescape, numpy, torch (and onnx/onnxruntime when installed)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("minescape", "numpy", "torch", "onnx", "onnxruntime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def write_model_card(model: ChangeModel, *, training_data: dict, metrics: dict, config: dict, seed: int,
                     history: list[dict] | None = None) -> Path:
    """Write ``<model.path>.json`` atomically and return its path (mean/std in reflectance units, per band).

    Nothing in it depends on the clock: the same training gives the same bytes (timings: ``train_log.json``).
    """
    from minescape.change.deep.model import count_parameters

    if model.path is None:
        raise ValueError("the model needs a path to place its card beside")
    norm, tta, coregister = model.norm, model.tta, model.coregister
    card = {
        "format": CARD_FORMAT,
        "model_file": Path(model.path).name,
        "arch": model.arch,
        "parameters": int(count_parameters(model.net)),
        "bands": list(model.bands),
        "input": "two co-registered Sentinel-2 reflectance stacks (0-1) on one 10 m grid, bands in this order",
        "output": "probability of change per pixel; mask = probability >= threshold (CHANGE legend 0/1/255)",
        "normalisation": {"mode": norm,
                          "applied": ("each date of a pair standardised by its own per-band mean/std over the "
                                      "pixels valid in both dates" if norm == "per-image" else
                                      "(reflectance - mean) / std with the mean/std below"),
                          "mean": [round(float(v), 7) for v in np.asarray(model.mean)],
                          "std": [round(float(v), 7) for v in np.asarray(model.std)],
                          "computed_on": "valid training pixels of both dates"},
        "threshold": float(model.threshold),
        "threshold_chosen_on": f"validation pixels (pooled {_objective(config)} of change, grid 0.02..0.98)"
                               + (", probabilities averaged over 4 flips (TTA)" if tta else ""),
        "tta": bool(tta),
        "coregister": bool(coregister),
        "coregistration": ("date 2 moved onto date 1 by its sub-pixel shift (phase correlation on the 10 m bands, "
                           "bilinear) before training; predict does the same by default" if coregister else
                           "none: the dates are used as read"),
        "training_data": training_data,
        "metrics": metrics,
        "config": config,
        "seed": int(seed),
        "versions": versions(),
        "history": history or [],
    }
    return atomic_write_text(card_path(model.path), json.dumps(card, indent=2, sort_keys=False) + "\n")


def read_model_card(path: str | Path) -> dict:
    """Read a model card (the ``.json`` or the model file beside it); InputError naming the file if invalid."""
    path = Path(path)
    if path.suffix != ".json":
        path = card_path(path)
    card = read_json(path, "model card")
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise InputError(f"model card lacks {missing}", path=path)
    return card


def _objective(config: dict) -> str:
    """``F1``, or ``F0.5`` etc. for a run whose threshold maximised another F-beta."""
    beta = float(config.get("threshold_beta", 1.0))
    return "F1" if beta == 1.0 else f"F{beta:g} (F-beta, beta {beta:g})"
