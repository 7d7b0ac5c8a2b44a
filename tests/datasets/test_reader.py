import numpy as np
import pytest
import torch

from g3d.datasets import open_dataset
from g3d.errors import DatasetError
from g3d.synth.sampling import SynthConfig, run_synth


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("reader") / "car"
    run_synth(SynthConfig(out=out, samples=3, views=3, resolution=40, samples_per_shard=2, candidates=12))
    return out


def test_torch_dataset_yields_decoded_rows(folder):
    ds = open_dataset(folder)
    assert len(ds) == 9
    item = ds[4]
    assert item["image"].shape == (40, 40, 3) and item["image"].dtype == torch.uint8
    assert item["mask"].dtype == torch.bool and item["mask"].any()
    assert item["K"].shape == (3, 3) and item["R"].shape == (3, 3) and item["t"].shape == (3,)
    assert (item["sample_id"], item["view_id"]) == (1, 1)
    assert item["keypoints_2d"].shape == (12, 2)
    # The mask is where the ground-truth camera projects the object: visible keypoints fall on it.
    uv = item["keypoints_2d"][item["keypoints_visible"]].long().clamp(0, 39)
    m = torch.nn.functional.max_pool2d(item["mask"][None, None].float(), 3, 1, 1)[0, 0]
    assert m[uv[:, 1], uv[:, 0]].all()
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 40, 40, 3)


def test_keep_only_drops_rejected_rows(folder):
    import pyarrow.parquet as pq

    from g3d.datasets import folder as dsf
    from g3d.datasets import io as dsio

    path = dsf.shard_paths(folder)[0]
    table = pq.read_table(path)
    keep = np.ones(table.num_rows, bool)
    keep[0] = False
    copy = folder.parent / "copy"
    import shutil

    shutil.copytree(folder, copy)
    dsio.write_table(copy / "images" / path.name, table.set_column(table.schema.get_field_index("keep"), "keep", [keep.tolist()]))
    assert len(open_dataset(copy)) == 9 and len(open_dataset(copy, keep_only=True)) == 8


def test_hugging_face_datasets_decodes_the_image_column(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    hf = datasets.load_dataset("parquet", data_files=str(folder / "images" / "*.parquet"), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(hf) == 9
    assert type(hf.features["image"]).__name__ == "Image"
    row = hf[0]
    img = np.asarray(row["image"])
    assert img.shape == (40, 40, 3) and img.dtype == np.uint8
    assert np.asarray(row["mask"]).shape == (40, 40)
    ours = open_dataset(folder)
    first = [i for i in range(len(ours)) if (ours[i]["sample_id"], ours[i]["view_id"]) == (row["sample_id"], row["view_id"])][0]
    np.testing.assert_array_equal(img, ours[first]["image"].numpy())


def test_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(DatasetError, match="no g3d dataset.*g3d synth"):
        open_dataset(tmp_path / "nothing")
