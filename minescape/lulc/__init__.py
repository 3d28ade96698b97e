"""Mining land use/land cover per site: features, knowledge-based rules, LightGBM model, pipeline."""
