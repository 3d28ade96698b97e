"""Where Sentinel-2 pixels come from: STAC catalogues (search, conventions, signed URLs), windowed reads over
HTTP or from local files onto a site's grid, per-pixel cloud masks and annual composites.

One engine serves sites and change pairs: a :class:`~minescape.imagery.sources.ImagerySource` lists the
scenes of a year over an area and reads one scene onto a grid as reflectance plus a clear-pixel mask;
:func:`~minescape.imagery.composite.annual_composite` reduces those observations to one stack.
"""
