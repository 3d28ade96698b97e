"""Georeferenced data: rasters, grids, vectors, polygonization (pure functions)."""
