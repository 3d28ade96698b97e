"""Releases: per-site class maps as regional ZIPs of GeoPackage shards (``fid``, ``index_n``, ``class_name``,
``area_m2``, ``year``), with a manifest, README and QGIS style; and their inspection."""
