"""Bi-temporal change detection: pairs, index differencing, refinement, patches, datasets, models."""
