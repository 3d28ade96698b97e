"""Offline HTML reports of run folders: ``minescape report RUN_DIR``.

``collect`` finds what a run folder holds and gathers it into a
:class:`~minescape.webreport.contents.RunContents` value (per part: site polygons, raster overlays, tables,
figures, and what is missing); ``render`` turns that value into HTML; ``assets`` copies the vendored Leaflet
and the page's own script and style; ``write`` puts the report on disk (``report.html`` plus
``report_files/``), atomically.
"""
