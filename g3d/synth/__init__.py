"""Multi-view synthesis: generators, checkpoint loaders, viewpoint codes and the sampling loop.

Heavy modules (torch) are imported lazily so ``import g3d.synth`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from g3d.synth.generator import Generator


def load_generator(path: str, device: str = "cpu", **kwargs: Any) -> "Generator":
    """Load a generator by name (``"builtin"``) or from a checkpoint file of any supported format.

    The format is detected from the file's content, not its name; nothing in the file is executed.
    Refusals raise :class:`g3d.errors.G3DError` subclasses.
    """
    from g3d.synth.checkpoints import load_generator as _load

    return _load(path, device=device, **kwargs)


__all__ = ["load_generator"]
