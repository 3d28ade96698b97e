"""Options shared by the commands that read imagery from a STAC catalogue (``--stac``, ``--collection``,
``--max-cloud``, ``--composite``) and their translation into library values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minescape.errors import InputError

StacOpt = Annotated[
    str | None,  # noqa: UP007 (Typer needs Optional)
    typer.Option("--stac", help="STAC API URL (e.g. https://earth-search.aws.element84.com/v1) or a saved "
                                "ItemCollection JSON; replaces --scenes."),
]
CollectionOpt = Annotated[
    str | None,  # noqa: UP007
    typer.Option("--collection", help="STAC collection (e.g. sentinel-2-l2a); needed with an API URL."),
]
MaxCloudOpt = Annotated[float, typer.Option("--max-cloud", help="Keep items with eo:cloud_cover <= this (%).")]
CompositeOpt = Annotated[
    str,
    typer.Option("--composite", help="median, clearest or medoid; auto = median from --stac, the clearest "
                                     "local scene from --scenes."),
]
MinClearOpt = Annotated[
    float | None,  # noqa: UP007
    typer.Option("--min-clear", help="Least share of a site's pixels with a clear observation (default 0.3); "
                                     "below it the site is reported and the run goes on."),
]

SclMaskOpt = Annotated[
    str | None,  # noqa: UP007
    typer.Option("--scl-mask", help="SCL classes masked per pixel, comma-separated (default 0,1,3,8,9,10)."),
]


def stac_query(stac: str | None, collection: str | None, max_cloud: float):
    """The :class:`~minescape.imagery.stac_search.StacQuery` of the options, or None without ``--stac``."""
    if stac is None:
        return None
    from minescape.imagery.stac_search import StacQuery

    if stac.startswith(("http://", "https://")) and not collection:
        raise InputError(f"--stac {stac}: give --collection (e.g. sentinel-2-l2a)")
    return StacQuery(stac, collection, max_cloud)


def check_scenes(scenes: list[Path] | None, stac: str | None) -> list[Path]:
    """``scenes`` or [] with ``--stac``; InputError when neither or both are given."""
    if stac is None and not scenes:
        raise InputError("give scenes (--scenes/-s) or a STAC catalogue (--stac URL --collection NAME)")
    if stac is not None and scenes:
        raise InputError("give either --scenes or --stac, not both")
    return list(scenes or [])


def scl_classes(text: str | None) -> list[int] | None:
    """``--scl-mask 0,1,3`` as a list of ints (ConfigError naming the option when not numbers)."""
    if text is None:
        return None
    from minescape.errors import ConfigError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"invalid --scl-mask {text!r}; expected comma-separated SCL codes such as 0,1,3,8,9,10") \
            from None


def imagery_config(composite: str, max_cloud: float, min_clear: float | None, scl_mask: str | None = None) -> dict:
    """The pipeline config keys ``composite`` and ``imagery`` from the options."""
    imagery: dict = {"max_cloud": max_cloud}
    if min_clear is not None:
        imagery["min_clear"] = min_clear
    if scl_mask is not None:
        imagery["scl_mask"] = scl_classes(scl_mask)
    return {"composite": composite, "imagery": imagery}
