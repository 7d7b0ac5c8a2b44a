"""Segmenter masks and bad-mask filtering (``g3d filter``)."""
