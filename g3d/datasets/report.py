"""``g3d report DIR --out report/ [--run RUN]``: a static, self-contained HTML report of a dataset folder.

One ``index.html`` beside the images it shows (copied or drawn into OUT; no network, no server, no
script from elsewhere): the contact sheet, the kept fraction per view and the filter's rejected
examples per rule, a picture of the camera rig (one marker per view, from ``cameras.parquet`` or the
rows' own cameras, seen from above), the annotation status, the training curves and the held-out IoU per
view when a run folder is given, and the dataset card. Written under a hidden name and renamed when
whole. A small inline script marks the page once every image has loaded (``data-images-ok``) and
collects script errors (``data-errors``): what the headless-browser test reads.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np

from g3d.errors import DatasetError

CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => { window.__errors.push(String(e.message || e.type)); }, true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.dataset.images = String(imgs.length);
  document.body.dataset.imagesOk = String(imgs.every(i => i.complete && i.naturalWidth > 0));
  document.body.dataset.errors = window.__errors.join(' | ');
});
</script>"""


def _rig_png(R: np.ndarray, t: np.ndarray, views: list[int], size: int = 420) -> bytes:
    """Top view (object frame: front up, the object's left on the left) of the camera centres and directions."""
    import cv2

    from g3d import cameras
    from g3d.datasets.schema import encode_png

    img = np.full((size, size, 3), 255, np.uint8)
    c = cameras.center_of(R, t)
    scale = 0.42 * size / max(1e-9, float(np.abs(c[:, [0, 2]]).max()))
    to_px = lambda p: (int(size / 2 - p[0] * scale), int(size / 2 - p[2] * scale))  # noqa: E731  (x left, +z up)
    cv2.rectangle(img, to_px((0.45, 0, 1.0)), to_px((-0.45, 0, -1.0)), (120, 120, 120), 1)
    cv2.putText(img, "front", (size // 2 - 18, int(size / 2 - 1.0 * scale) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    for ci, Ri, v in zip(c, R, views):
        a = to_px(ci)
        b = to_px(ci + 0.5 * Ri[2] * np.linalg.norm(ci[[0, 2]]) / 4.0)
        cv2.line(img, a, b, (200, 90, 30), 1, cv2.LINE_AA)
        cv2.circle(img, a, 4, (200, 90, 30), -1, cv2.LINE_AA)
        cv2.putText(img, str(v), (a[0] + 5, a[1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (40, 40, 40), 1, cv2.LINE_AA)
    return encode_png(img[..., ::-1].copy())


def _bars_svg(values: list[float], labels: list[str], width: int = 640, height: int = 140) -> str:
    """An inline SVG bar chart of values in [0, 1]."""
    n = max(1, len(values))
    w = width / n
    bars = "".join(
        f'<rect x="{i * w + 1:.1f}" y="{height - 20 - v * (height - 30):.1f}" width="{max(1.0, w - 2):.1f}" height="{v * (height - 30):.1f}" fill="#3a7"/>'
        f'<text x="{i * w + w / 2:.1f}" y="{height - 6}" font-size="9" text-anchor="middle">{html.escape(lab)}</text>'
        for i, (v, lab) in enumerate(zip(values, labels))
    )
    return f'<svg width="{width}" height="{height}" role="img">{bars}</svg>'


def _curve_svg(steps: list[int], values: list[float], width: int = 640, height: int = 160) -> str:
    if len(steps) < 2:
        return "<p>(fewer than two logged steps)</p>"
    x0, x1 = min(steps), max(steps)
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    pts = " ".join(f"{10 + (s - x0) / max(1, x1 - x0) * (width - 20):.1f},{height - 10 - (v - lo) / span * (height - 20):.1f}" for s, v in zip(steps, values))
    return (f'<svg width="{width}" height="{height}" role="img"><polyline fill="none" stroke="#36c" stroke-width="1.5" points="{pts}"/>'
            f'<text x="10" y="12" font-size="10">{hi:.3f}</text><text x="10" y="{height - 2}" font-size="10">{lo:.3f}</text></svg>')


def write_report(folder: str | Path, out: str | Path, run: str | Path | None = None) -> Path:
    """Write the report of ``folder`` (and ``run``) into ``out``; returns ``out/index.html``."""
    from g3d.datasets import cameras as dscam
    from g3d.datasets import folder as dsf
    from g3d.datasets import io as dsio
    from g3d.datasets.manifest import read_manifest

    folder, out = Path(folder), Path(out)
    man = read_manifest(folder)
    if out.exists() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise DatasetError(f"--out {out} is not empty and holds no earlier report: choose another --out")
    tmp = dsio.fresh_dir(out)
    parts = [f"<h1>g3d dataset: {html.escape(man.class_name)}</h1>",
             f"<p>{man.samples} objects x {man.views} views = {man.rows} images of {man.width}x{man.height} px; "
             f"generator {html.escape(str(man.generator.get('format')))}, seed {man.seed}.</p>"]
    try:
        sheet = folder / dsf.PREVIEWS / "contact_sheet.png"
        if sheet.is_file():
            shutil.copy(sheet, tmp / "contact_sheet.png")
            parts.append('<h2>Contact sheet</h2><img src="contact_sheet.png" alt="contact sheet" style="max-width:100%">')
        fr = folder / "filter_report.json"
        if fr.is_file():
            rep = json.loads(fr.read_text())
            pv = rep.get("per_view", [])
            parts.append(f"<h2>Filter</h2><p>kept {rep.get('kept')} of {rep.get('rows')} images; first reasons: "
                         + html.escape(", ".join(f"{k} {v}" for k, v in (rep.get("first_reason") or {}).items()) or "none") + "</p>")
            parts.append("<h3>Kept fraction per view</h3>" + _bars_svg([float(v.get("kept_fraction", 0)) for v in pv], [f"v{v.get('view_id')}" for v in pv]))
            for p in sorted((folder / dsf.PREVIEWS).glob("filter_*.png")):
                shutil.copy(p, tmp / p.name)
                parts.append(f'<h3>Rejected: {html.escape(p.stem[7:])}</h3><img src="{p.name}" alt="{html.escape(p.stem)}" style="max-width:100%">')
        # The camera rig.
        try:
            cams = dscam.read_cameras(folder, man, fallbacks=(dscam.FROM_TRUTH,)) if dsf.shard_paths(folder) or dscam.has_camera_file(folder) else None
        except DatasetError:
            cams = None  # no cameras yet: the page says nothing of them
        if cams is not None and not cams.per_image:
            has = np.array([s is not None for s in cams.sources])
            src = {dscam.FROM_FILE: "cameras.parquet (g3d sfm-init)", dscam.FROM_TRUTH: "the generator's cameras"}[cams.origin]
            (tmp / "camera_rig.png").write_bytes(_rig_png(cams.R[has], cams.t[has], [int(v) for v in cams.view_ids[has]]))
            parts.append(f'<h2>Camera rig</h2><p>{int(has.sum())} views, from {src}; seen from above, front up.</p><img src="camera_rig.png" alt="camera rig">')
        # Annotation status.
        from g3d.datasets.annotations import annotation_counts

        rows = [f"<tr><td>{Path(name).stem}</td><td>{n}</td><td>{views} of {man.views}</td></tr>"
                for name, (n, views) in annotation_counts(folder).items()]
        parts.append("<h2>Annotations</h2>" + (f"<table><tr><th>file</th><th>rows</th><th>views</th></tr>{''.join(rows)}</table>" if rows else "<p>none pulled yet</p>"))
        if run is not None:
            run = Path(run)
            metrics = run / "metrics.jsonl"
            if metrics.is_file():
                recs = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
                steps = [r["step"] for r in recs if "loss" in r]
                parts.append("<h2>Training</h2><h3>loss</h3>" + _curve_svg(steps, [r["loss"] for r in recs if "loss" in r]))
                if any("iou_hard" in r for r in recs):
                    parts.append("<h3>training IoU</h3>" + _curve_svg([r["step"] for r in recs if "iou_hard" in r], [r["iou_hard"] for r in recs if "iou_hard" in r]))
            ev = run / "eval.json"
            if ev.is_file():
                e = json.loads(ev.read_text())
                per = e.get("per_view", {})
                parts.append(f"<h3>Held-out IoU per view</h3><p>IoU {e['iou']:.3f}, swapped pairing {e['swap_iou']:.3f}, template {e['template_iou']:.3f}</p>"
                             + _bars_svg([float(v) for v in per.values()], [f"v{k}" for k in per]))
        card = folder / "README.md"
        if card.is_file():
            parts.append(f"<h2>Dataset card</h2><pre>{html.escape(card.read_text())}</pre>")
        page = ("<!doctype html><html><head><meta charset='utf-8'><title>g3d report</title>"
                "<style>body{font-family:sans-serif;margin:24px;max-width:1100px}td,th{padding:2px 8px;text-align:left}pre{white-space:pre-wrap}</style>"
                f"{CHECK}</head><body>" + "\n".join(parts) + "</body></html>")
        (tmp / "index.html").write_text(page)
        dsio.replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"
