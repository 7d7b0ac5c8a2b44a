"""Camera initialisation (``g3d sfm-init``): one camera per view from pose bins and keypoints.

Every image of a view column shares one camera, so this is a V-camera problem (39 for cars).

Reads the annotations through :mod:`g3d.datasets.annotations` and writes ``cameras.parquet`` through
:mod:`g3d.datasets.cameras` (its schema and the camera-source vocabulary live there).

- :mod:`g3d.sfm.solution`   the data: SfmConfig, Solution (the cameras in memory), SfmReport and its text summary
- :mod:`g3d.sfm.posebins`   pose-bin cameras (always available: the fallback of everything else)
- :mod:`g3d.sfm.colmap`     keypoint refinement through COLMAP (pycolmap): from the bins, or keypoints only
- :mod:`g3d.sfm.align`      the reconstruction in the object frame of :mod:`g3d.cameras`, from keypoint names
- :mod:`g3d.sfm.checks`     checks that catch what reprojection error hides (flips, swapped labels, ...)
- :mod:`g3d.sfm.run`        :func:`run_sfm_init`: read, refine, align, check, fall back, write ``cameras.parquet``
- :mod:`g3d.sfm.report`     ``previews/sfm_cameras.png``
- :mod:`g3d.sfm.synthetic`  annotations with known truth from the built-in generator (tests, benchmark)

pycolmap (the ``sfm`` extra) is imported only by the functions that need it.
"""

__all__ = ["SfmConfig", "SfmReport", "run_sfm_init", "solve"]


def __getattr__(name: str):
    # Lazy: `g3d --help` imports g3d.sfm.commands, which must not pull numpy in through here.
    if name in __all__:
        from g3d.sfm import run

        return getattr(run, name)
    raise AttributeError(f"module 'g3d.sfm' has no attribute {name!r}")
