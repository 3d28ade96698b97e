"""Fixtures of the map tests: a small synthetic 1 m scene on disk and a quickly trained U-Net."""

import pytest


@pytest.fixture(scope="session")
def hr_scene():
    """A 240 x 180 px synthetic scene (1 m, SinoLC-1 classes) with 10 m and 30 m label products."""
    from minescape.maps.synthetic_hr import HRConfig, make_scene

    return make_scene(HRConfig(seed=1, width=240, height=180))


@pytest.fixture(scope="session")
def hr_files(hr_scene, tmp_path_factory):
    """The scene written as GeoTIFFs (dict of paths)."""
    from minescape.maps.synthetic_hr import write_scene

    return write_scene(hr_scene, tmp_path_factory.mktemp("hr"))


@pytest.fixture(scope="session")
def tiny_unet(hr_scene):
    """A U-Net trained for a few steps on the 10 m labels (enough for mechanics, not for accuracy)."""
    from minescape.legend import SINOLC1
    from minescape.maps.train import TrainConfig, train_unet
    from minescape.maps.weak import agreement_labels

    labels = agreement_labels([hr_scene.label_10m], hr_scene.image.grid, SINOLC1)
    return train_unet(hr_scene.image.data, labels, SINOLC1,
                      config=TrainConfig(epochs=1, steps_per_epoch=4, batch=2, patch=32),
                      band_names=hr_scene.image.band_names)
