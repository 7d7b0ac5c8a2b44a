"""sfm-init on a real (small) built-in dataset: keypoints and visibility as the generator rendered them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from g3d.sfm.align import angle_difference_deg, compare_cameras
from g3d.sfm.run import SfmConfig, run_sfm_init
from g3d.sfm.synthetic import annotations_from_dataset
from g3d.synth.sampling import SynthConfig, run_synth

from .conftest import needs_pycolmap


@pytest.mark.slow
@needs_pycolmap
def test_cameras_of_a_built_in_dataset(tmp_path):
    out = Path(tmp_path) / "car"
    run_synth(SynthConfig(out=out, samples=1, views=12, resolution=64, batch_size=12, samples_per_shard=1, candidates=48, preview_samples=1))
    annotations_from_dataset(out, sample_id=0)
    rep = run_sfm_init(SfmConfig(folder=out))
    cams = pq.read_table(out / "cameras.parquet").to_pandas()
    vp = pq.read_table(out / "viewpoints.parquet").to_pandas().sort_values("view_id")
    rows = pq.read_table(next((out / "images").glob("part-*.parquet")), columns=["view_id", "K", "R", "t"]).to_pandas()
    rows = rows.drop_duplicates("view_id").sort_values("view_id")
    assert len(cams) == 12 and rep.written == 12
    kept = (cams.source == "sfm").to_numpy()
    # The rendered visibility leaves 4 points in some exact front or back views: those fall back.
    assert kept.sum() >= 9
    R_true = np.stack([np.reshape(r, (3, 3)) for r in rows.R])
    t_true = np.stack([np.asarray(x) for x in rows.t])
    R = np.stack([np.reshape(r, (3, 3)) for r in cams.R])
    t = np.stack([np.asarray(x) for x in cams.t])
    e = compare_cameras(R[kept], t[kept], cams.K[0][0], R_true[kept], t_true[kept], rows.K.iloc[0][0])
    assert e.worst_rotation_deg < 0.01 and e.focal_rel < 1e-5  # keypoints are exact projections
    # The object frame is the generator's: azimuth read directly, no alignment.
    d_az = angle_difference_deg(cams.azimuth_deg[kept], vp.gt_azimuth_deg.to_numpy()[kept])
    assert np.abs(d_az).max() < 1.5
    front = int(np.argmin(np.abs(angle_difference_deg(vp.gt_azimuth_deg.to_numpy(), 0.0))))
    assert abs(angle_difference_deg(cams.azimuth_deg[front], vp.gt_azimuth_deg.iloc[front])) < 1.5 or cams.source[front] != "sfm"


def _rotation_errors(folder: Path, R_true: np.ndarray) -> tuple:
    from g3d.sfm.align import rotation_angle_deg

    cams = pq.read_table(folder / "cameras.parquet").to_pandas()
    R = np.stack([np.reshape(r, (3, 3)) for r in cams.R])
    return cams, rotation_angle_deg(R, R_true[cams.view_id.to_numpy()])


@pytest.mark.slow
@needs_pycolmap
def test_mistakes_and_two_reference_objects_give_no_wrong_usable_camera(tmp_path):
    """#11: one flipped pose bin, one view with mirrored labels, keypoints clicked on two objects (1 px noise)."""
    import shutil

    base = Path(tmp_path) / "car"
    run_synth(SynthConfig(out=base, samples=2, views=24, resolution=256, batch_size=24, samples_per_shard=2, candidates=96, preview_samples=1, seed=3))
    rows = pq.read_table(next((base / "images").glob("part-*.parquet")), columns=["view_id", "R", "azimuth_deg"]).to_pandas()
    rows = rows.drop_duplicates("view_id").sort_values("view_id")
    R_true = np.stack([np.reshape(r, (3, 3)) for r in rows.R])
    az = rows.azimuth_deg.to_numpy()
    # The flipped bin goes on a rear-quarter view: there the keypoints settle front/back. On a view
    # within ~15 deg of straight behind only the rear face is clicked, and a planar rear face with its
    # labels exchanged fits a camera in front as well as the flipped bin does (seen at 170.6 deg with
    # the version-2 generator): that view must stay flagged and unusable, which the first assertion
    # below checks for every view.
    flip = int(np.argmin(np.abs(angle_difference_deg(az, 150.0))))
    mirror = int(np.argmin(np.abs(angle_difference_deg(az, 50.0))))
    assert 20.0 <= abs(angle_difference_deg(az[flip], 180.0)) <= 50.0, az[flip]  # a rear-quarter view, not the rear
    median = {}
    for name, objects in (("first", [0]), ("second", [1]), ("both", [0, 1])):
        out = Path(tmp_path) / name
        shutil.copytree(base, out)
        annotations_from_dataset(out, sample_id=objects, noise_px=1.0, seed=5, flip_bins=[flip], swap_labels=[mirror])
        rep = run_sfm_init(SfmConfig(folder=out, preview=False))
        cams, err = _rotation_errors(out, R_true)
        usable = cams.usable.to_numpy()
        # No usable camera far from the truth: the flipped bin is not written 180 deg wrong, the mirrored view is not on its bin.
        assert err[usable].max() < 5.0, (name, err.round(1).tolist(), cams.source.tolist())
        assert cams.source[flip] == "sfm_bin_corrected" and cams.source[mirror] == "sfm_labels_swapped", (name, cams.source.tolist())
        median[name] = float(np.median(err[usable]))
        if name == "both":
            assert any("keypoints of 2 objects" in p for p in rep.problems)
    # A flipped bin on the view nearest straight behind: corrected or left unusable, never a usable wrong camera.
    rear = int(np.argmin(np.abs(angle_difference_deg(az, 180.0))))
    out = Path(tmp_path) / "rear"
    shutil.copytree(base, out)
    annotations_from_dataset(out, sample_id=[0], noise_px=1.0, seed=5, flip_bins=[rear])
    run_sfm_init(SfmConfig(folder=out, preview=False))
    cams, err = _rotation_errors(out, R_true)
    assert err[rear] < 5.0 or not cams.usable[rear], (cams.source[rear], float(err[rear]))
    print("median rotation error of the usable views, deg:", median)
    # Two objects solved jointly (one camera, a point per object and name): twice the clicks, clearly
    # better than the better object alone (0.40 against 0.65 deg when written).
    assert median["both"] <= 0.8 * min(median["first"], median["second"]), median
