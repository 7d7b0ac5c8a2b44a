"""``g3d pipeline``: every stage in a row from one config file, skipping what is current (see :mod:`g3d.pipeline.run`)."""
