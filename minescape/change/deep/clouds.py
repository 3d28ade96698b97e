"""Synthetic clouds and their shadows on training crops, labelled no change.

OSCD's training cities are cloud-free, so a network trained on them reads a cumulus in one date as change: in the
leave-one-city-out run, paris's false alarms are two small clouds and their shadows in date 2 (precision 0.02 at
every threshold, ``docs/deep-change.md``). No decision rule separates them, so the network has to see clouds as
no change while it learns. Neither torch nor the geo stack has a cloud simulator, hence this module.

A crop chosen for a cloud gets, in one of its dates (at random):

* a **cloud**: a smooth random opacity field (Gaussian noise on a coarse grid, upsampled bicubically, thresholded
  with a soft edge of random width) blends each pixel towards a cloud's top-of-atmosphere reflectance
  (:data:`CLOUD_TOA`, scaled by a random brightness and a small per-band tint), so thin edges and thick cores
  both occur;
* its **shadow**: the same field, shifted by a random offset, darkens the surface multiplicatively (less in the
  blue bands, which diffuse skylight still lights; not at all in the cirrus band B10, which sees the atmosphere).

Pixels of a changed label under a cloud or shadow that hides more than half of the surface become ignored (255);
everything else keeps its label, so a cloud over unchanged ground is a no-change example.

The crops are already normalised by the training set's per-band mean and standard deviation, so both operations
are applied in normalised units: blending towards ``(cloud - mean) / std`` and darkening by ``x f + (mean / std)
(f - 1)`` are the reflectance operations exactly. Per-image normalisation has no fixed mean, so it is refused.
All random choices come from the caller's numpy generator (reproducible); the pixels stay on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from minescape.errors import ConfigError

#: Top-of-atmosphere reflectance (Sentinel-2 L1C, 0-1) of a thick low water cloud: bright and nearly flat from
#: the visible to the near infrared, darker in the shortwave infrared (ice-free droplets absorb there), dim in
#: the water-vapour band B09 and nearly dark in the cirrus band B10 (vapour above a low cloud absorbs it).
CLOUD_TOA: dict[str, float] = {
    "B01": 0.50, "B02": 0.48, "B03": 0.46, "B04": 0.45, "B05": 0.46, "B06": 0.47, "B07": 0.48, "B08": 0.47,
    "B8A": 0.47, "B09": 0.25, "B10": 0.02, "B11": 0.30, "B12": 0.20,
}
#: How much of the shadow's depth each band takes (diffuse skylight is blue; B10 sees no ground).
SHADOW_WEIGHT: dict[str, float] = {"B01": 0.5, "B02": 0.6, "B03": 0.8, "B10": 0.0}


@dataclass(frozen=True)
class SyntheticClouds:
    """What :func:`add_clouds` needs: the share of crops that get a cloud, and per band ``(C,)`` the cloud's
    reflectance, the training statistics (reflectance units) and the shadow weights."""

    share: float
    toa: np.ndarray  # CLOUD_TOA of the bands
    std: np.ndarray  # training standard deviation
    mean_over_std: np.ndarray  # training mean / standard deviation
    shadow_weight: np.ndarray


def check_clouds(share: float, norm: str) -> None:
    """Raise :class:`ConfigError` for a share outside [0, 1), or clouds with per-image normalisation."""
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"clouds must be a share of crops in [0, 1) (got {share})")
    if share > 0 and norm != "global":
        raise ConfigError("synthetic clouds need global normalisation (per-image statistics change with the cloud)")


def synthetic_clouds(share: float, bands: Sequence[str], mean: np.ndarray, std: np.ndarray, *, norm: str
                     ) -> SyntheticClouds | None:
    """The cloud augmentation for these bands and training statistics (reflectance units), or None for share 0.

    Raises :class:`ConfigError` for a share outside [0, 1), per-image normalisation, or bands that are not
    Sentinel-2 band names (a cloud's spectrum is known only for those).
    """
    check_clouds(share, norm)
    if share == 0.0:
        return None
    unknown = [b for b in bands if b not in CLOUD_TOA]
    if unknown:
        raise ConfigError(f"synthetic clouds need Sentinel-2 bands; no cloud spectrum for {unknown}")
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    toa = np.array([CLOUD_TOA[b] for b in bands])
    return SyntheticClouds(share=float(share), toa=toa.astype(np.float32), std=std.astype(np.float32),
                           mean_over_std=(mean / std).astype(np.float32),
                           shadow_weight=np.array([SHADOW_WEIGHT.get(b, 1.0) for b in bands], np.float32))


@dataclass(frozen=True)
class CloudDraws:
    """The random choices for the clouded crops of one batch (numpy, drawn in a fixed order)."""

    crops: np.ndarray  # (n,) indices of the clouded crops in the batch
    dates: np.ndarray  # (n,) 0 = date 1, 1 = date 2
    grids: np.ndarray  # (n, g, g) coarse Gaussian noise of the opacity field
    cover: np.ndarray  # (n,) threshold of the field (higher: less cover), in field standard deviations
    edge: np.ndarray  # (n,) width of the soft edge, in field standard deviations
    opacity: np.ndarray  # (n,) peak opacity, 0-1
    brightness: np.ndarray  # (n, C) cloud reflectance factor per band (brightness x tint)
    shift: np.ndarray  # (n, 2) shadow offset in pixels (rows, cols)
    depth: np.ndarray  # (n,) shadow depth: the surface keeps 1 - depth of its light where the shadow is full


def draw_clouds(rng: np.random.Generator, clouds: SyntheticClouds, *, batch: int, size: int) -> CloudDraws:
    """Which crops of a batch of ``size``-pixel crops get a cloud, and its shape, spectrum and shadow."""
    chosen = np.flatnonzero(rng.random(batch) < clouds.share)
    n, c = len(chosen), len(clouds.toa)
    g = max(3, size // 12)  # a 64-px crop: 5 x 5 grid, blobs of about 13 px (130 m), cumulus-sized
    margin = size // 4
    return CloudDraws(
        crops=chosen, dates=rng.integers(0, 2, n), grids=rng.standard_normal((n, g, g)),
        cover=rng.uniform(0.2, 1.4, n), opacity=rng.uniform(0.35, 1.0, n),
        brightness=rng.uniform(0.5, 1.2, (n, 1)) * rng.uniform(0.9, 1.1, (n, c)),
        shift=rng.integers(-margin, margin + 1, (n, 2)), depth=rng.uniform(0.3, 0.7, n),
        edge=rng.uniform(0.3, 1.0, n))


def add_clouds(x1, x2, label, draws: CloudDraws, clouds: SyntheticClouds):
    """Put the drawn clouds and shadows into the crops ``x1``, ``x2`` ``(B, C, S, S)`` (normalised) in place.

    Changed labels that a cloud or shadow hides by more than half become 255 (ignored). Returns the tensors.
    """
    import torch
    from torch.nn import functional as F

    if len(draws.crops) == 0:
        return x1, x2, label
    dev, dt = x1.device, x1.dtype
    size = x1.shape[-1]
    margin = size // 4
    big = size + 2 * margin
    noise = torch.from_numpy(draws.grids.astype(np.float32)).to(dev)[:, None]
    field = F.interpolate(noise, size=(big, big), mode="bicubic", align_corners=False)[:, 0]  # (n, big, big)
    field = (field - field.mean(dim=(1, 2), keepdim=True)) / field.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    cover = torch.from_numpy(draws.cover.astype(np.float32)).to(dev)[:, None, None]
    edge = torch.from_numpy(draws.edge.astype(np.float32)).to(dev)[:, None, None]
    alpha_big = ((field - cover) / edge).clamp(0.0, 1.0)
    opacity = torch.from_numpy(draws.opacity.astype(np.float32)).to(dev)[:, None, None]
    alpha = alpha_big[:, margin:margin + size, margin:margin + size] * opacity
    shade = torch.stack([alpha_big[i, margin + int(dr):margin + int(dr) + size,
                                   margin + int(dc):margin + int(dc) + size]
                         for i, (dr, dc) in enumerate(draws.shift)])
    shade = shade * torch.from_numpy(draws.depth.astype(np.float32)).to(dev)[:, None, None]  # light lost, 0-0.7
    m_s = torch.from_numpy(clouds.mean_over_std).to(dev, dt)[None, :, None, None]
    # the cloud per crop and band, normalised: (toa * brightness - mean) / std
    target = torch.from_numpy(clouds.toa[None] * draws.brightness / clouds.std[None]).to(dev, dt)[:, :, None, None]
    target = target - m_s  # (n, C, 1, 1)
    w = torch.from_numpy(clouds.shadow_weight).to(dev, dt)[None, :, None, None]
    keep = 1.0 - shade[:, None] * w  # (n, C, S, S): share of the surface's light left under the shadow
    for date, x in ((0, x1), (1, x2)):
        pick = np.flatnonzero(draws.dates == date)
        if not len(pick):
            continue
        sel = torch.from_numpy(draws.crops[pick]).to(dev)
        p = torch.from_numpy(pick).to(dev)
        a = alpha[p][:, None].to(dt)
        surface = x[sel] * keep[p] + m_s * (keep[p] - 1.0)  # shadow first (on the ground), cloud above it
        x[sel] = (1.0 - a) * surface + a * target[p]
    hidden = (alpha > 0.5) | (shade > 0.5)
    sel = torch.from_numpy(draws.crops).to(dev)
    lab = label[sel]
    label[sel] = torch.where(hidden & (lab == 1), torch.full_like(lab, 255), lab)
    return x1, x2, label
