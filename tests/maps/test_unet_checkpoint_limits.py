"""A U-Net checkpoint whose ``net`` metadata asks for a giant network is refused with one line before it is
built; the honest checkpoint loads."""

from __future__ import annotations

import pytest


def test_giant_unet_metadata_is_refused_before_building(tiny_unet, tmp_path):
    import torch

    from minescape.errors import InputError
    from minescape.maps.train import load_checkpoint, save_checkpoint

    good = save_checkpoint(tiny_unet, tmp_path / "good.pt")
    assert load_checkpoint(good).net.config() == tiny_unet.net.config()  # sound before it is tampered with
    payload = torch.load(good, weights_only=True)
    for name, change, words in (("wide", {"base": 10_000_000}, "the U-Net it describes needs"),
                                ("deep", {"depth": 1_000}, "malformed U-Net checkpoint"),
                                # wider than its weights: refused on the meta device, before it is built
                                ("wider", {"base": 2 * payload["net"]["base"]},
                                 "weights do not fit the U-Net it describes: ")):
        bad = tmp_path / f"{name}.pt"
        torch.save({**payload, "net": {**payload["net"], **change}}, bad)
        with pytest.raises(InputError) as e:
            load_checkpoint(bad)
        assert str(e.value).startswith(str(bad)) and words in str(e.value) and "\n" not in str(e.value)
