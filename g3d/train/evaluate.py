"""``g3d eval``: the paper's 2D IoU on held-out objects, overall and per view (and 3D Chamfer on built-in data)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from g3d.datasets import folder as dsf
from g3d.render.dibr import render
from g3d.train.data import PairData
from g3d.train.loop import load_run


@dataclass
class EvalReport:
    images: int
    iou: float  # mean 2D IoU of the predicted mesh re-projected in the input view vs the mask
    template_iou: float  # the same for the untrained template (the baseline)
    per_view: dict[int, float]
    chamfer: float | None  # mean symmetric Chamfer distance to the true mesh (built-in data), object units
    template_chamfer: float | None


class _TrueMeshes:
    """True car vertices (object frame) of the built-in generator, rebuilt from the stored latents.

    Reads the manifest, samples and viewpoints once; ``None`` from :meth:`load` for other generators.
    """

    @staticmethod
    def load(folder: Path) -> "_TrueMeshes | None":
        manifest = dsf.read_manifest(folder)
        return _TrueMeshes(folder, manifest) if manifest["generator"].get("format") == "builtin" else None

    def __init__(self, folder: Path, manifest: dict) -> None:
        import pyarrow.parquet as pq

        from g3d.synth.builtin import BuiltinGenerator

        gen = manifest["generator"]
        self.G = BuiltinGenerator(resolution=32, z_dim=gen["z_dim"], num_ws=gen["num_ws"], seed=gen["seed"])
        self.manifest = manifest
        self.z = pq.read_table(folder / dsf.SAMPLES).to_pandas().set_index("sample_id")
        self.vp = pq.read_table(folder / dsf.VIEWPOINTS).to_pandas().set_index("view_id")

    def __call__(self, sample_ids: np.ndarray, view_ids: np.ndarray) -> list[np.ndarray]:
        """Vertices float [V, 3] of each (sample, view)'s car."""
        m = self.manifest
        layers = m["viewpoint_layers"]
        zs = torch.tensor(np.stack([self.z.loc[int(s), "z"] for s in sample_ids]), dtype=torch.float32)
        ws = self.G.mapping(zs, m["truncation_psi"], m.get("truncation_cutoff"))
        codes = [np.asarray(self.vp.loc[int(v), "code"]).reshape(len(layers), -1) for v in view_ids]
        ws[:, layers] = torch.tensor(np.stack(codes), dtype=torch.float32)
        mesh, _, _ = self.G.build_mesh(self.G.parameters_of(ws))
        return list(mesh.verts.numpy())


def chamfer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric Chamfer distance (mean nearest-neighbour distance both ways) of point sets [P, 3], [Q, 3]."""
    d = torch.cdist(a[None], b[None])[0]
    return 0.5 * (d.min(1).values.mean() + d.min(0).values.mean())


@torch.no_grad()
def evaluate(run: str | Path, folder: str | Path | None = None, device: str = "cpu", batch: int = 16) -> EvalReport:
    """Evaluate the run on the held-out objects of its dataset (or of ``folder``)."""
    cfg, model, cams, tpl, _ = load_run(run, device)
    folder = Path(folder or cfg.folder)
    data = PairData(folder, cfg.resolution, "test", cfg.holdout, cfg.max_images)
    H, W = data.height, data.width
    true_meshes = _TrueMeshes.load(folder)
    ious, tious, views = [], [], []
    cd, tcd = [], []
    for lo in range(0, len(data), batch):
        idx = torch.arange(lo, min(len(data), lo + batch))
        img, mask, view = data.batch(idx, device)
        verts, tex, _ = model(img)
        K, R, t = cams(view)
        for v, store in ((verts, ious), (model.template_verts(len(idx)), tious)):
            o = render(v, tpl.faces, K, R, t, H, W, silhouette=False)
            hard = o.fragments.mask
            m = mask[:, 0] > 0.5
            inter = (hard & m).flatten(1).sum(1).float()
            union = (hard | m).flatten(1).sum(1).float().clamp(min=1)
            store.extend((inter / union).cpu().tolist())
        views.extend(view.cpu().tolist())
        if true_meshes is not None:
            true = true_meshes(data.sample_ids[idx].numpy(), data.view_ids[idx].numpy())
            tv = model.template_verts(len(idx))
            for k, tm in enumerate(true):
                tmv = torch.tensor(tm, dtype=torch.float32, device=device)
                cd.append(float(chamfer(verts[k], tmv)))
                tcd.append(float(chamfer(tv[k], tmv)))
    per_view: dict[int, list[float]] = defaultdict(list)
    for v, i in zip(views, ious):
        per_view[v].append(i)
    return EvalReport(
        images=len(ious),
        iou=float(np.mean(ious)),
        template_iou=float(np.mean(tious)),
        per_view={v: float(np.mean(x)) for v, x in sorted(per_view.items())},
        chamfer=float(np.mean(cd)) if cd else None,
        template_chamfer=float(np.mean(tcd)) if tcd else None,
    )
