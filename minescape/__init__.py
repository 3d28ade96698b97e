"""minescape: land use/land cover, change maps and publishable datasets for mining areas."""

__version__ = "0.1.0"
