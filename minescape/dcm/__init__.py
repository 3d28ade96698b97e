"""TanDEM-X DEM Change Maps (DCM) as DLR delivers them: tile names, discovery in folders and ZIPs, a tile
index, per-site mosaics on the site grid, quality masks, acquisition dates, and a synthetic tile writer."""
