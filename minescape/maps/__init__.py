"""Large-area land-cover maps: tiled inference, U-Net, low-to-high weak supervision, products."""
