"""``g3d annotate``: per-view annotation in a Label Studio server.

One person gives each view an azimuth bin (``poses``: one task per view, a grid of objects in
that view) or clicks the class keypoints on one object per view (``keypoints``); ``masks`` are
polygons on a handful of images. g3d pushes exactly these tasks and pulls the answers back into
the dataset folder, in pixels, validated against the label config.

Modules: :mod:`~g3d.annotate.configs` (label configs from the class preset),
:mod:`~g3d.annotate.client` (URL, API key kinds, one-line errors), :mod:`~g3d.annotate.push`,
:mod:`~g3d.annotate.pull`, :mod:`~g3d.annotate.server` (a local Label Studio for one user),
:mod:`~g3d.annotate.commands` (the Typer sub-app). Importing this package loads none of
label_studio_sdk, httpx or pyarrow.
"""
