"""Low-to-high weak supervision: train a high-resolution model from low-resolution label products.

1. Every label product (e.g. a 10 m and a 30 m land-cover map) is resampled to the image grid by nearest
   neighbour (:func:`upsample_labels`); values outside the legend are rejected with the product's name.
2. With several products, a pixel is labelled only where they all agree; elsewhere it gets the ignore index
   (255) and does not enter the loss (:func:`agreement_labels`).
3. A U-Net is trained on those labels, then one self-training round relabels the pixels the model is
   confident about (max probability >= ``confidence``) with its own prediction — by default only pixels
   without an agreed label (``fill_only``) — keeps the agreed label elsewhere, and fine-tunes on the result
   at a tenth of the learning rate (:func:`train_weak`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from minescape.errors import ConfigError, CRSMismatchError, InputError
from minescape.geo.grid import Grid, reproject_to_grid
from minescape.geo.raster import Raster
from minescape.legend import Legend
from minescape.maps.train import IGNORE, Checkpoint, TrainConfig, predict_proba, train_unet


def upsample_labels(labels: Raster, grid: Grid, legend: Legend, *, name: str = "labels") -> Raster:
    """A low-resolution label raster on the (finer) image ``grid`` by nearest neighbour (codes preserved).

    Raises InputError naming ``name`` if the labels hold values outside the legend or carry no CRS.
    """
    data = legend.with_legend_nodata(labels.data, labels.nodata)
    legend.check_codes(data, source=name)  # the product's own nodata (255, say) is the legend's, no class
    if labels.crs is None:
        raise CRSMismatchError(f"{name}: label raster has no CRS; cannot place it on the image grid")
    return reproject_to_grid(replace(labels, data=data, nodata=legend.nodata), grid, resampling="nearest",
                             dst_nodata=legend.nodata)


def codes_to_index(codes: np.ndarray, legend: Legend) -> np.ndarray:
    """Legend codes -> class indexes (uint8); nodata and unknown codes -> IGNORE."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    lut[legend.codes] = np.arange(len(legend), dtype=np.uint8)
    return lut[np.asarray(codes, dtype=np.uint8)]


def agreement_labels(products: Sequence[Raster], grid: Grid, legend: Legend, *,
                     names: Sequence[str] | None = None) -> np.ndarray:
    """Class indexes ``(rows, cols)`` where every product agrees (after upsampling), IGNORE elsewhere."""
    if not products:
        raise InputError("at least one label product is needed")
    names = list(names) if names is not None else [f"labels[{i}]" for i in range(len(products))]
    ups = [upsample_labels(p, grid, legend, name=n).data[0] for p, n in zip(products, names, strict=True)]
    first = ups[0]
    agree = np.ones(first.shape, dtype=bool)
    for other in ups[1:]:
        agree &= other == first
    idx = codes_to_index(first, legend)
    idx[~agree] = IGNORE
    return idx


@dataclass
class WeakResult:
    """The self-trained checkpoint, the first-round checkpoint and the labels of each round."""

    model: Checkpoint
    first_round: Checkpoint
    labels: np.ndarray  # agreed labels (indexes, IGNORE where products disagree)
    relabelled: np.ndarray  # labels of the self-training round
    agreement_share: float  # share of valid pixels where the products agree
    relabel_share: float  # share of valid pixels relabelled by the confident model


def train_weak(image: Raster, products: Sequence[Raster], legend: Legend, *, config: TrainConfig | None = None,
               self_training: bool = True, confidence: float = 0.9, finetune_epochs: int | None = None,
               names: Sequence[str] | None = None, fill_only: bool = True) -> WeakResult:
    """Train a high-resolution U-Net from low-resolution label products (see the module docstring).

    Args:
        image: high-resolution imagery ``(bands, rows, cols)`` with its grid.
        products: one or more label rasters (legend codes) on their own coarser grids, same or other CRS.
        legend: the label legend (output classes).
        config: training options of the first round.
        self_training: run the self-training round.
        confidence: minimum max-probability for a pixel to take the model's own label.
        finetune_epochs: epochs of the self-training round (default: half of ``config.epochs``, at least 1).
        names: product names for error messages.
        fill_only: relabel only pixels without an agreed label (otherwise every confident pixel).
    """
    cfg = config or TrainConfig()
    if finetune_epochs is not None and finetune_epochs < 1:
        raise ConfigError(f"finetune_epochs must be >= 1, not {finetune_epochs} (self_training=False skips the "
                          "self-training round)")
    labels = agreement_labels(products, image.grid, legend, names=names)
    valid = image.valid_mask()
    labels[~valid] = IGNORE
    share = float((labels != IGNORE).sum() / max(valid.sum(), 1))
    data = image.data.astype(np.float32)
    first = train_unet(data, labels, legend, config=cfg, band_names=image.band_names,
                       description="weak supervision: round 1")
    if not self_training:
        return WeakResult(first, first, labels, labels, share, 0.0)
    proba = predict_proba(first, data)
    confident = (proba.max(axis=0) >= confidence) & valid
    if fill_only:
        confident &= labels == IGNORE
    relabelled = labels.copy()
    relabelled[confident] = proba.argmax(axis=0)[confident].astype(np.uint8)
    changed = float((confident & (relabelled != labels)).sum() / max(valid.sum(), 1))
    epochs = finetune_epochs if finetune_epochs is not None else max(1, cfg.epochs // 2)
    second_cfg = replace(cfg, epochs=epochs, lr=cfg.lr / 10, seed=cfg.seed + 1)
    model = train_unet(data, relabelled, legend, config=second_cfg, init=first, band_names=image.band_names,
                       description="weak supervision: self-training")
    return WeakResult(model, first, labels, relabelled, share, changed)
