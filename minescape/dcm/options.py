"""How a DCM delivery is read: which map (LAST or FIRST) and the quality masks.

Defaults and their source: users' public code keeps ``CIM`` classes 1 and 4 and ``HAI`` <= 5 m, and treats
-32767 and ``DATE`` <= 0 as void (issue 15; DLR's product description gives the layer meanings, see
docs/dcm.md for what could not be confirmed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minescape.dcm.layers import MapKind
from minescape.errors import ConfigError, check_choice

DEFAULT_MAX_HAI = 5.0  # metres
DEFAULT_KEEP_CIM: tuple[int, ...] = (1, 4)
MAP_CHOICES = ("last", "first")


@dataclass(frozen=True)
class DcmOptions:
    """Reading options.

    Attributes:
        kind: LAST (change to the newest acquisition, default) or FIRST (to the oldest).
        max_hai: pixels whose HAI exceeds this many metres are masked (treated as voids).
        keep_cim: CIM classes kept; every other class is masked.
    """

    kind: MapKind = MapKind.LAST
    max_hai: float = DEFAULT_MAX_HAI
    keep_cim: tuple[int, ...] = DEFAULT_KEEP_CIM

    def __post_init__(self) -> None:
        if not isinstance(self.kind, MapKind):
            object.__setattr__(self, "kind", MapKind(check_choice(str(self.kind).lower(), MAP_CHOICES,
                                                                  what="DCM map").upper()))
        if not (isinstance(self.max_hai, (int, float)) and math.isfinite(self.max_hai) and self.max_hai > 0):
            raise ConfigError(f"--dcm-max-hai must be a positive number of metres (got {self.max_hai!r})")
        keep = tuple(sorted({int(c) for c in self.keep_cim}))
        if not keep or any(c < 0 or c > 255 for c in keep):
            raise ConfigError(f"CIM classes to keep must be integers 0..255, at least one (got {self.keep_cim!r})")
        object.__setattr__(self, "keep_cim", keep)
        object.__setattr__(self, "max_hai", float(self.max_hai))

    @classmethod
    def from_config(cls, config: dict) -> DcmOptions:
        """From LULC config keys ``dcm_map``, ``dcm_max_hai``, ``dcm_keep_cim``."""
        return cls(MapKind(check_choice(str(config.get("dcm_map", "last")).lower(), MAP_CHOICES,
                                        what="DCM map").upper()),
                   config.get("dcm_max_hai", DEFAULT_MAX_HAI), tuple(config.get("dcm_keep_cim", DEFAULT_KEEP_CIM)))
