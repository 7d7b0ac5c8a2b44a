"""``g3d export-mesh``: one image in, a textured mesh out (OBJ + MTL + PNG, or a single GLB).

Faces carry per-corner UVs (the template's seam is split), so every face corner becomes its own
vertex in the written file: simple, and valid for every loader.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from g3d.datasets import io as dsio
from g3d.datasets.schema import encode_png
from g3d.errors import UsageError


def _unrolled(verts: np.ndarray, faces: np.ndarray, face_uvs: np.ndarray):
    """(positions float32 [3F, 3], uvs float32 [3F, 2] with v flipped for glTF/OBJ image origin, indices uint32 [F, 3])."""
    pos = verts[faces].reshape(-1, 3).astype(np.float32)
    uv = face_uvs.reshape(-1, 2).astype(np.float32)
    idx = np.arange(len(pos), dtype=np.uint32).reshape(-1, 3)
    return pos, uv, idx


def write_obj(path: Path, verts: np.ndarray, faces: np.ndarray, face_uvs: np.ndarray, texture: np.ndarray) -> list[Path]:
    """``path``.obj with ``.mtl`` and ``_texture.png`` beside it. texture uint8 [T, T, 3]."""
    path = Path(path)
    tex_name = path.stem + "_texture.png"
    mtl_name = path.stem + ".mtl"
    pos, uv, idx = _unrolled(verts, faces, face_uvs)
    lines = [f"mtllib {mtl_name}", "usemtl g3d"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in pos]
    lines += [f"vt {u:.6f} {1.0 - v:.6f}" for u, v in uv]  # OBJ's v runs up the image
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in idx]
    dsio.write_bytes(path, ("\n".join(lines) + "\n").encode())
    dsio.write_bytes(path.with_name(mtl_name), f"newmtl g3d\nKa 1 1 1\nKd 1 1 1\nmap_Kd {tex_name}\n".encode())
    dsio.write_bytes(path.with_name(tex_name), encode_png(texture))
    return [path, path.with_name(mtl_name), path.with_name(tex_name)]


def roughness_of(shininess: float) -> float:
    """glTF's (perceptual) roughness for a Blinn-Phong exponent: alpha = sqrt(2 / (shininess + 2)) (Walter et al.
    2007's Blinn-Phong to Beckmann match), roughness = sqrt(alpha) (glTF squares it)."""
    return float((2.0 / (float(shininess) + 2.0)) ** 0.25)


def write_glb(path: Path, verts: np.ndarray, faces: np.ndarray, face_uvs: np.ndarray, texture: np.ndarray, roughness: float = 1.0) -> list[Path]:
    """A binary glTF 2.0 file with the mesh and its texture embedded as PNG: a PBR material, the texture its base
    colour, metallic 0, ``roughness`` (1: matte; a light run's from its learned shininess, :func:`roughness_of`)."""
    pos, uv, idx = _unrolled(verts, faces, face_uvs)
    # glTF's UV origin is the image's top-left, as in the renderer; seam corners with u > 1 wrap (REPEAT).
    png = encode_png(texture)
    chunks = [pos.tobytes(), uv.tobytes(), idx.tobytes(), png]
    offsets, blob = [], b""
    for c in chunks:
        offsets.append(len(blob))
        blob += c + b"\x00" * ((4 - len(c) % 4) % 4)
    gltf = {
        "asset": {"version": "2.0", "generator": "g3d"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": float(roughness)}}],
        "textures": [{"source": 0, "sampler": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9729, "wrapS": 10497, "wrapT": 33071}],
        "images": [{"bufferView": 3, "mimeType": "image/png"}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": offsets[0], "byteLength": len(chunks[0]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[1], "byteLength": len(chunks[1]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[2], "byteLength": len(chunks[2]), "target": 34963},
            {"buffer": 0, "byteOffset": offsets[3], "byteLength": len(chunks[3])},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(pos), "type": "VEC3",
             "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": len(uv), "type": "VEC2"},
            {"bufferView": 2, "componentType": 5125, "count": int(idx.size), "type": "SCALAR"},
        ],
    }
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * ((4 - len(js) % 4) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(blob), 0x004E4942) + blob
    data = struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body
    dsio.write_bytes(Path(path), data)
    return [Path(path)]


@torch.no_grad()
def export_mesh(run: str | Path, image_path: str | Path, out: str | Path, device: str = "cpu") -> list[Path]:
    """Predict the textured mesh of the object in ``image_path`` and write it to ``out`` (.glb or .obj)."""
    import cv2

    from g3d.train.loop import load_run

    out = Path(out)
    if out.suffix.lower() not in (".glb", ".obj"):
        raise UsageError(f"--out {out}: choose a .glb or .obj file name")
    from g3d.devices import check_device

    check_device(device)
    if not Path(image_path).is_file():
        raise UsageError(f"{image_path}: no such image file: pass the path of a PNG or JPEG")
    cfg, model, _, tpl, _ = load_run(run, device)
    if cfg.crop:
        raise UsageError(f"{run} was trained on crops round each object's mask (g3d train --crop), and export-mesh reads a whole "
                         "photo with no mask: export from a run trained without --crop")
    img = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if img is None:
        raise UsageError(f"{image_path} is not a readable image: pass a PNG or JPEG")
    h, w = img.shape[:2]
    W = cfg.resolution
    H = max(1, round(W * h / w))
    img = cv2.resize(img[..., ::-1], (W, H), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().to(device) / 255.0
    verts, tex, _ = model(x)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create its folder ({exc.strerror}): choose a writable place") from None
    texture = (tex[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
    args = (verts[0].cpu().numpy(), tpl.faces.cpu().numpy(), tpl.face_uvs.cpu().numpy(), texture)
    return write_glb(out, *args) if out.suffix.lower() == ".glb" else write_obj(out, *args)
