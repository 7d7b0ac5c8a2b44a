"""g3d: turn a 2D image GAN into a 3D data engine.

Importing ``g3d`` is cheap: torch, pyarrow and friends are imported by the stage that needs them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
