"""The GLB g3d writes (`g3d predict`, `g3d export-mesh`) passes Khronos's glTF validator (the npm package
``gltf-validator``) with no errors: a PBR material (baseColorTexture, metallic 0) that Blender, three.js or a
game engine can light. The validator is installed into a cache folder on first use; where node or the npm
registry cannot be reached the test skips, naming why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from g3d.train.export import write_glb
from g3d.train.template import build_template

VALIDATOR = "gltf-validator@2.0.0-dev.3.10"
SCRIPT = """
const fs = require('fs');
const validator = require('gltf-validator');
validator.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])), {maxIssues: 100})
  .then((r) => console.log(JSON.stringify(r)))
  .catch((e) => { console.error(String(e)); process.exit(2); });
"""


@pytest.fixture(scope="session")
def validator_dir() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the glTF validator (npm package gltf-validator) cannot run")
    cache = Path(os.environ.get("G3D_TEST_CACHE", Path.home() / ".cache" / "g3d-tests")) / "gltf-validator"
    if not (cache / "node_modules" / "gltf-validator").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            r = subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", VALIDATOR],
                               capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm install gltf-validator timed out: the npm registry is unreachable")
        if r.returncode != 0:
            pytest.skip(f"npm install gltf-validator failed (the npm registry unreachable?): {r.stderr.strip().splitlines()[-1:]}")
    (cache / "validate.js").write_text(SCRIPT)
    return cache


def validate(cache: Path, path: Path) -> dict:
    r = subprocess.run(["node", str(cache / "validate.js"), str(path)], capture_output=True, text=True, timeout=120, cwd=cache)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _glb(path: Path, texture: np.ndarray) -> Path:
    tpl = build_template(2)
    verts = tpl.verts.numpy() * np.array([0.45, 0.3, 1.0])
    return write_glb(path, verts, tpl.faces.numpy(), tpl.face_uvs.numpy(), texture)[0]


def test_the_glb_passes_the_khronos_validator_with_a_pbr_material(validator_dir, tmp_path):
    import trimesh

    rng = np.random.default_rng(0)
    glb = _glb(tmp_path / "car.glb", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    report = validate(validator_dir, glb)
    issues = report["issues"]
    assert issues["numErrors"] == 0, [m for m in issues["messages"] if m["severity"] == 0]
    assert report["info"]["materialCount"] == 1 and report["info"]["drawCallCount"] == 1
    gltf = json.loads(glb.read_bytes()[20:20 + int.from_bytes(glb.read_bytes()[12:16], "little")])
    pbr = gltf["materials"][0]["pbrMetallicRoughness"]
    assert pbr["baseColorTexture"] == {"index": 0} and pbr["metallicFactor"] == 0.0 and 0 < pbr["roughnessFactor"] <= 1
    mesh = trimesh.load(glb, force="mesh")
    assert len(mesh.faces) == build_template(2).faces.shape[0]
    # The validator does find errors: the same file with its index accessor pointing past the buffer fails.
    data = bytearray(glb.read_bytes())
    js_len = int.from_bytes(data[12:16], "little")
    js = json.loads(data[20:20 + js_len])
    js["accessors"][2]["count"] += 3
    new = json.dumps(js, separators=(",", ":")).encode()
    new += b" " * (js_len - len(new))
    assert len(new) == js_len
    data[20:20 + js_len] = new
    (tmp_path / "broken.glb").write_bytes(bytes(data))
    assert validate(validator_dir, tmp_path / "broken.glb")["issues"]["numErrors"] > 0
