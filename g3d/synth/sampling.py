"""The batched, seeded, sharded, pipelined sampling loop behind ``g3d synth``.

For sample i the content latent is ``mapping(z_i)`` with z_i drawn from a generator seeded by
(seed, i); the image of view v is ``synthesis(ws_i with rows layers := code_v)``. Rows are
(sample_id, view_id) pairs in sample-major order; shards hold whole samples (see
:mod:`g3d.datasets.folder`). Generation runs in the calling thread while PNG encoding runs in a
thread pool and Parquet writing in a writer thread, with bounded queues between them, so memory
stays flat however many samples are asked for.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from g3d import __version__
from g3d.classes import get_preset
from g3d.datasets import folder as dsf
from g3d.datasets import io as dsio
from g3d.datasets.manifest import GeneratorRecord, Manifest, ShardPlan, car_ids, read_manifest, run_id
from g3d.datasets.schema import SCHEMA_VERSION, encode_png, image_rows_schema, image_struct, mask_stats
from g3d.errors import UsageError
from g3d.synth.viewpoints import RANDOM, Viewpoints, between_views, blend_codes, check_views, code_neighbours, item_seed, load_viewpoints, propose, random_codes, seeded_z, viewpoints_table

ProgressFactory = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n)


@dataclass
class SynthConfig:
    """Arguments of one ``g3d synth`` run (the CLI's options, one to one)."""

    out: Path  # dataset folder
    class_name: str = "car"  # class preset (g3d.classes)
    views: int | None = None  # number of viewpoint codes; None = the preset's (car 39)
    samples: int = 100  # objects (rows of the contact sheet)
    generator: str = "builtin"  # "builtin" or a checkpoint path
    seed: int = 0  # run seed; every random draw derives from (seed, item)
    truncation: float = 0.7  # truncation psi of the content and viewpoint latents
    truncation_cutoff: int | None = None  # truncate only ws rows below this; None = all
    batch_size: int = 32  # images per generator call
    resolution: int | None = None  # output size for generators that allow it (builtin: 256)
    viewpoints: str | None = None  # a viewpoints.parquet to use instead of proposing, or "random": a viewpoint per image
    # Per sample, this many extra images whose codes lie between two neighbouring frozen codes (view ids V .. V + between - 1;
    # viewpoints.between_views): continuous viewpoints for training, cameras interpolated from their frozen neighbours'
    between: int = 0
    viewpoint_layers: tuple[int, ...] | None = None  # ws rows of the viewpoint code; None = preset's
    candidates: int | None = None  # candidate codes for the proposal; None = max(64, 4 x views)
    shard: str | None = None  # "i/N": write only this worker's shards; None = all (or torchrun's)
    samples_per_shard: int | None = None  # None = about 1024 rows per shard
    overwrite: bool = False  # replace a different g3d run in `out`
    device: str = "cpu"
    distractors: float = 0.0  # built-in generator only: fraction of broken objects, for testing filters
    # built-in generator only: each car under this many lights. Samples come in groups of ``lights`` consecutive ids:
    # one car (the group's first latent) in the same views, only the light rows (builtin.LIGHT_ROWS) each sample's own
    lights: int = 1
    crop: tuple[int, int, int, int] | None | str = "auto"  # (top, bottom, left, right), None, or "auto"
    encode_workers: int = 1  # PNG encoder threads (on 2 cores, more only competes with the generator)
    pipelined: bool = True  # False: encode and write inline (the serial baseline of bench/synth.py)
    preview_samples: int = 8  # rows of the contact sheet
    generator_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SynthReport:
    """What a run did."""

    out: Path
    rows_written: int
    shards_written: list[int]
    shards_skipped: list[int]
    resumed: bool
    views: int
    samples: int
    contact_sheet: Path | None
    seconds: float
    timings: dict[str, float]  # proposal / generation / encoding / writing seconds (the last two overlap generation when pipelined)


def _load_generator(cfg: SynthConfig):
    kwargs = dict(cfg.generator_kwargs)
    if cfg.generator == "builtin":
        from g3d.synth.builtin import BuiltinGenerator

        kwargs.setdefault("class_name", cfg.class_name)
        kwargs["distractors"] = cfg.distractors
        if cfg.resolution is not None:
            kwargs["resolution"] = cfg.resolution
        G = BuiltinGenerator(**kwargs).to(cfg.device)
    else:
        from g3d.synth.checkpoints import load_generator

        if cfg.distractors:
            raise UsageError("--distractors is for the built-in generator only: drop it or use --generator builtin")

        G = load_generator(cfg.generator, device=cfg.device, **kwargs)
    if cfg.generator != "builtin" and cfg.resolution is not None and cfg.resolution != G.resolution:
        raise UsageError(
            f"--resolution {cfg.resolution}: {cfg.generator} draws {G.resolution} px images only; drop --resolution"
        )
    return G.eval()


def _resolve_crop(cfg: SynthConfig, G, preset) -> tuple[int, int, int, int] | None:
    crop = cfg.crop
    if crop == "auto":
        # The preset's crop is for the real checkpoints' letterboxed 512 px output (car config-f).
        is_builtin = cfg.generator == "builtin"
        crop = preset.crop if (preset.crop is not None and not is_builtin and G.resolution == 512) else None
    if crop is None:
        return None
    top, bottom, left, right = (int(v) for v in crop)
    if not (0 <= top < bottom <= G.resolution and 0 <= left < right <= G.resolution):
        raise UsageError(f"--crop {top},{bottom},{left},{right} does not fit a {G.resolution} px image: give top,bottom,left,right inside it")
    return top, bottom, left, right


def _fingerprint(cfg: SynthConfig, G, preset, layers, views: int, crop, vp_digest: str | None, per_shard: int) -> dict[str, Any]:
    return {
        "class": preset.name,
        "generator": G.describe(),
        "views": views,
        "samples": cfg.samples,
        "seed": cfg.seed,
        "truncation_psi": cfg.truncation,
        "truncation_cutoff": cfg.truncation_cutoff,
        "viewpoint_layers": list(layers),
        "viewpoints": vp_digest or ({RANDOM: True} if cfg.viewpoints == RANDOM else {"proposed": True, "candidates": cfg.candidates}),
        **({} if G.batch_invariant else {"batch_size": cfg.batch_size}),  # only where the bytes depend on it
        "samples_per_shard": per_shard,
        "crop": list(crop) if crop else None,
        **({"lights": cfg.lights} if cfg.lights > 1 else {}),
        **({"between": cfg.between} if cfg.between else {}),
    }


def _to_uint8(images: torch.Tensor, crop) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, h, w, 3] (cropped), the on-disk image format."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if crop is not None:
        top, bottom, left, right = crop
        x = x[:, :, top:bottom, left:right]
    return x.permute(0, 2, 3, 1).cpu().numpy()


def _encode_batch(cols: dict[str, Any], images: np.ndarray, masks: np.ndarray | None) -> dict[str, Any]:
    """Add the PNG image and mask columns (and mask stats) to one batch of rows (runs in an encoder thread).

    ``images`` uint8 [N, H, W, 3]; ``masks`` uint8 [N, H, W] label maps: 255 the object, other
    non-zero values other instances (distractors), 0 background.
    """
    t0 = time.perf_counter()
    stems = [f"{s:07d}_{v:03d}" for s, v in zip(cols["sample_id"].tolist(), cols["view_id"].tolist())]
    cols["image"] = [image_struct(encode_png(im), f"{st}.png") for im, st in zip(images, stems)]
    if masks is not None:
        cols["mask"] = [image_struct(encode_png(m), f"{st}_mask.png") for m, st in zip(masks, stems)]
        stats = [mask_stats(m == 255) for m in masks]
        cols["mask_area"] = [a for a, _ in stats]
        cols["bbox"] = [b for _, b in stats]
    cols["_encode_s"] = time.perf_counter() - t0
    return cols


def _columns_table(cols: dict[str, Any], schema):
    """A pyarrow Table in ``schema`` from a batch's columns (numpy arrays, or lists); missing columns are null."""
    import pyarrow as pa

    n = len(cols["sample_id"])
    arrays = []
    for f in schema:
        v = cols.get(f.name)
        if v is None:
            arrays.append(pa.nulls(n, f.type))
        elif isinstance(v, np.ndarray) and pa.types.is_fixed_size_list(f.type):  # [N, k] -> one flat buffer
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1), type=f.type.value_type), f.type.list_size))
        else:
            arrays.append(pa.array(v, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class _ShardSink:
    """Writes rows of one shard at a time to ``images/.part-k.parquet...`` and renames when whole."""

    def __init__(self, folder: Path, schema) -> None:
        self.folder = folder
        self.schema = schema
        self.writer = None
        self.path: Path | None = None
        self.tmp: Path | None = None
        self.write_s = 0.0
        self.encode_s = 0.0

    def begin(self, shard: int) -> None:
        import pyarrow.parquet as pq

        self.path = self.folder / dsf.IMAGES / dsf.shard_name(shard)
        self.tmp = dsio.tmp_path_for(self.path)
        self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="none", write_statistics=["sample_id", "view_id"])

    def rows(self, cols: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        self.encode_s += cols.pop("_encode_s", 0.0)
        self.writer.write_table(_columns_table(cols, self.schema))
        self.write_s += time.perf_counter() - t0

    def end(self) -> None:
        t0 = time.perf_counter()
        self.writer.close()
        self.writer = None
        dsio.commit(self.tmp, self.path)
        dsio.record_checksum(self.path)
        self.write_s += time.perf_counter() - t0

    def abort(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


class _Pipeline:
    """Encoder pool + writer thread; ``submit`` blocks when too much work is queued (bounded memory)."""

    def __init__(self, sink: _ShardSink, workers: int, depth: int = 4) -> None:
        self.sink = sink
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="g3d-encode")
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="g3d-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                kind, payload = item
                if self.error is not None:
                    continue
                if kind == "begin":
                    self.sink.begin(payload)
                elif kind == "rows":
                    self.sink.rows(payload.result())
                elif kind == "end":
                    self.sink.end()
            except BaseException as exc:  # surfaced to the generating thread
                self.error = exc
            finally:
                self.queue.task_done()

    def _put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def begin(self, shard: int) -> None:
        self._put(("begin", shard))

    def rows(self, cols, images, masks) -> None:
        fut: Future = self.pool.submit(_encode_batch, cols, images, masks)
        self._put(("rows", fut))

    def end(self) -> None:
        self._put(("end", None))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.pool.shutdown(wait=True)
        if self.error is not None:
            raise self.error


class _Serial:
    """Same interface as :class:`_Pipeline`, doing everything inline (baseline for the benchmark)."""

    def __init__(self, sink: _ShardSink) -> None:
        self.sink = sink

    def begin(self, shard: int) -> None:
        self.sink.begin(shard)

    def rows(self, cols, images, masks) -> None:
        self.sink.rows(_encode_batch(cols, images, masks))

    def end(self) -> None:
        self.sink.end()

    def close(self) -> None:
        pass


def _truth_columns(truth, extra_names: list[str]) -> dict[str, np.ndarray]:
    """Ground-truth columns of a batch, as numpy arrays (see :func:`g3d.datasets.schema.image_rows_schema`)."""
    N = truth.K.shape[0]
    return {
        "K": truth.K.reshape(N, -1),
        "R": truth.R.reshape(N, -1),
        "t": truth.t.reshape(N, -1),
        "azimuth_deg": truth.azimuth_deg,
        "elevation_deg": truth.elevation_deg,
        "distance": truth.distance,
        "keypoints_2d": truth.keypoints_2d.reshape(N, -1),
        "keypoints_visible": truth.keypoints_visible.reshape(N, -1),
        "keypoints_3d": truth.keypoints_3d.reshape(N, -1),
        **{f"gt_{n}": truth.extra[n] for n in extra_names},
    }


def _samples_table_writer(path: Path, cfg: SynthConfig, z_dim: int) -> None:
    """``samples.parquet``: sample_id, seed, z; streamed in row groups so memory stays flat."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("sample_id", pa.int64()), ("seed", pa.int64()), ("z", pa.list_(pa.float32(), z_dim))])
    tmp = dsio.tmp_path_for(path)
    try:
        with pq.ParquetWriter(tmp, schema) as w:
            for lo in range(0, cfg.samples, 4096):
                ids = list(range(lo, min(cfg.samples, lo + 4096)))
                seeds = [item_seed(cfg.seed, i) for i in ids]
                zs = [seeded_z(cfg.seed, i, z_dim).numpy() for i in ids]
                w.write_table(pa.table({"sample_id": ids, "seed": seeds, "z": zs}, schema=schema))
        dsio.commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_options(cfg: SynthConfig) -> None:
    """The ranges of the options that need no generator (g3d synth and g3d pipeline, before any stage runs)."""
    if cfg.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {cfg.samples}")
    if not 0 <= cfg.seed < 2**63:
        raise UsageError(f"--seed {cfg.seed}: give a whole number from 0 to 2**63 - 1")
    if cfg.samples_per_shard is not None and cfg.samples_per_shard < 1:
        raise UsageError(f"--samples-per-shard {cfg.samples_per_shard}: give at least 1, or leave it out for about 1024 rows per shard")
    from g3d.devices import check_device

    check_device(cfg.device)
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if not 0.0 <= cfg.truncation <= 1.0:
        raise UsageError(f"--truncation {cfg.truncation} is outside 0..1 (1 = none, 0.7 is usual)")
    if cfg.lights < 1:
        raise UsageError(f"--lights {cfg.lights}: give at least 1 (each car under that many lights)")
    if cfg.between < 0:
        raise UsageError(f"--between {cfg.between}: give 0 or more extra images per object")
    if cfg.between and cfg.viewpoints == RANDOM:
        raise UsageError("--between interpolates between frozen viewpoints, and --viewpoints random has none: drop one of them")
    if cfg.lights > 1 and cfg.generator != "builtin":
        raise UsageError("--lights needs the built-in generator (it knows which latent rows hold the light): drop --lights")


def run_synth(cfg: SynthConfig, progress: ProgressFactory | None = None, log: Callable[[str], None] | None = None) -> SynthReport:
    """Generate (or resume) the dataset folder ``cfg.out``. See the module docstring."""
    t_start = time.perf_counter()
    log = log or (lambda msg: None)
    preset = get_preset(cfg.class_name)
    check_options(cfg)
    shard_index, shard_count = dsf.parse_shard(cfg.shard, dict(os.environ))
    G = _load_generator(cfg)
    layers = tuple(cfg.viewpoint_layers) if cfg.viewpoint_layers is not None else preset.viewpoint_layers
    if max(layers) >= G.num_ws or min(layers) < 0:
        raise UsageError(f"viewpoint layers {list(layers)} do not fit a generator with {G.num_ws} ws rows: choose rows 0..{G.num_ws - 1}")
    crop = _resolve_crop(cfg, G, preset)

    vp_file: Viewpoints | None = None
    random_views = cfg.viewpoints == RANDOM  # every image its own viewpoint code, drawn like the proposal's candidates
    if cfg.viewpoints is not None and not random_views:
        vp_file = load_viewpoints(cfg.viewpoints, G.w_dim, layers)
        if cfg.views is not None and cfg.views != vp_file.views:
            raise UsageError(f"--views {cfg.views} but --viewpoints {cfg.viewpoints} holds {vp_file.views} views: drop --views")
    views = vp_file.views if vp_file is not None else (cfg.views if cfg.views is not None else preset.views)
    if random_views and views < 1:
        raise UsageError(f"--views must be at least 1, got {views}")
    if vp_file is None and not random_views:
        check_views(views, cfg.candidates)
    frozen, views = views, views + cfg.between  # views: images per sample, the frozen ones first
    if cfg.between and frozen < 2:
        raise UsageError(f"--between needs at least 2 frozen views to interpolate between, got --views {frozen}")
    per_shard = cfg.samples_per_shard if cfg.samples_per_shard is not None else dsf.default_samples_per_shard(views)
    plan = ShardPlan(cfg.samples, views, per_shard)
    out = Path(cfg.out)
    fp = _fingerprint(cfg, G, preset, layers, views, crop, vp_file.digest() if vp_file else None, per_shard)
    lock = dsf.WriterLock(out, f"synth-{shard_index}of{shard_count}", "g3d synth", exclusive=cfg.overwrite, log=log)
    with lock:  # one writer per folder and shard set; --overwrite waits for no other writer
        resumed = dsf.prepare_output(out, fp, cfg.overwrite, log)
        (out / dsf.IMAGES).mkdir(exist_ok=True)
        dsio.remove_stale_temporaries(out)
        dsio.remove_stale_temporaries(out / dsf.IMAGES)

        truth_extra: list[str] = list(getattr(G, "truth_extra_names", []))
        with_truth = G.has_ground_truth
        h = (crop[1] - crop[0]) if crop else G.resolution
        w = (crop[3] - crop[2]) if crop else G.resolution
        manifest = Manifest(
            schema_version=SCHEMA_VERSION, g3d_version=__version__, class_name=preset.name, generator=GeneratorRecord(G.describe()),
            height=h, width=w, views=views, samples=cfg.samples, rows=cfg.samples * views, viewpoint_layers=tuple(layers),
            viewpoints_source=RANDOM if random_views else "proposed" if vp_file is None else vp_file.source, truncation_psi=cfg.truncation,
            truncation_cutoff=cfg.truncation_cutoff, seed=cfg.seed, num_shards=plan.num_shards, samples_per_shard=per_shard,
            keypoints=tuple(preset.keypoints) if with_truth else (), ground_truth=with_truth, fingerprint=fp,
            # A viewpoint per image: its truth camera is per image too (g3d.datasets.cameras reads it so).
            extra={**({"cameras": "per_image"} if (random_views or cfg.between) and with_truth else {}),
                   **({"frozen_views": frozen, "between_views": cfg.between} if cfg.between else {}),
                   **({"lights_per_car": cfg.lights} if cfg.lights > 1 else {})},
        )
        # Workers started together agree on the run here, before any of them writes anything else.
        claimed = dsf.claim_manifest(out, manifest)

        # Viewpoint codes: the run's own when its manifest was there already; otherwise load or propose.
        t_prop = time.perf_counter()
        vp: Viewpoints | None = None
        if random_views:
            pass  # no shared codes: each image's is drawn in the loop below (viewpoints.random_codes)
        elif not claimed and (out / dsf.VIEWPOINTS).is_file():
            vp = load_viewpoints(str(out / dsf.VIEWPOINTS), G.w_dim, layers)
            vp.source = manifest.viewpoints_source
        elif vp_file is not None:
            vp = vp_file
        else:
            adv = progress("proposing viewpoints", check_views(views, cfg.candidates)) if progress else None
            vp = propose(G, frozen, layers, seed=cfg.seed, truncation_psi=cfg.truncation, candidates=cfg.candidates,
                         batch_size=cfg.batch_size, progress=adv)
        codes = torch.as_tensor(vp.codes, device=G.device) if vp is not None else None
        proposal_s = time.perf_counter() - t_prop

        # A run killed after claiming its manifest finishes these on resume.
        if vp is not None and (claimed or not (out / dsf.VIEWPOINTS).is_file()):
            vtruth = G.viewpoint_truth(codes, layers) if hasattr(G, "viewpoint_truth") else None
            dsio.write_table(out / dsf.VIEWPOINTS, viewpoints_table(vp, vtruth))
        # --between: each frozen view's most alike others (as the proposal sees them), and each extra image's pair and weight.
        neighbours = code_neighbours(G, vp.codes, layers, cfg.seed, cfg.truncation) if cfg.between else None
        if cfg.between and (claimed or not (out / dsf.BETWEEN).is_file()):
            import pyarrow as pa

            table = between_views(neighbours, cfg.seed, car_ids(range(cfg.samples), cfg.lights), cfg.between)
            table["sample_id"] = np.arange(cfg.samples, dtype=np.int64).repeat(cfg.between)  # (one car's lights share their views)
            dsio.write_table(out / dsf.BETWEEN, pa.table(table))
        if claimed or not (out / dsf.SAMPLES).is_file():
            _samples_table_writer(out / dsf.SAMPLES, cfg, G.z_dim)
        if claimed or not (out / dsf.CARD).is_file():
            from g3d.datasets.card import write_card

            write_card(out, manifest if claimed else read_manifest(out))

        run = run_id(fp)
        done = dsf.completed_shards(out, plan, run, legacy=False)
        mine = plan.mine(shard_index, shard_count)
        todo = [k for k in mine if not done[k]]
        skipped = [k for k in mine if done[k]]
        if skipped:
            log(f"resuming: {len(skipped)} of {len(mine)} shards already complete")

        schema = image_rows_schema(len(preset.keypoints), truth_extra, with_truth)
        schema = schema.with_metadata({**(schema.metadata or {}), dsf.RUN_KEY: run.encode()})  # the shard names its run
        sink = _ShardSink(out, schema)
        pipe = _Pipeline(sink, cfg.encode_workers) if cfg.pipelined else _Serial(sink)
        total_rows = sum(plan.rows(k) for k in todo)
        advance = progress(f"synthesising {preset.name} x {views} {'random ' if random_views else ''}views", total_rows) if progress else None
        gen_s = 0.0
        written = 0
        try:
            for k in todo:
                ids = list(plan.sample_range(k))
                z = torch.stack([seeded_z(cfg.seed, i, G.z_dim) for i in ids]).to(G.device)
                seeds = [item_seed(cfg.seed, i) for i in ids]
                pipe.begin(k)
                t0 = time.perf_counter()
                n_rows = len(ids) * views
                cars = car_ids(ids, cfg.lights).tolist()  # --lights: each sample's car is its group's first latent
                with torch.no_grad():
                    content = G.mapping(z, truncation_psi=cfg.truncation, truncation_cutoff=cfg.truncation_cutoff)
                    if cfg.lights > 1:
                        from g3d.synth.builtin import LIGHT_ROWS

                        z_car = torch.stack([seeded_z(cfg.seed, c, G.z_dim) for c in cars]).to(G.device)
                        own = content
                        content = G.mapping(z_car, truncation_psi=cfg.truncation, truncation_cutoff=cfg.truncation_cutoff)
                        content[:, list(LIGHT_ROWS)] = own[:, list(LIGHT_ROWS)]
                    # Random viewpoints: every row's own code, mapped once per shard like the content (so the
                    # bytes do not depend on --batch-size); one car's samples under several lights share theirs.
                    shard_codes = None if codes is not None else random_codes(
                        G, cfg.seed, np.repeat(cars, views), np.tile(np.arange(views), len(ids)), layers, cfg.truncation)
                    if cfg.between:  # frozen codes, then each sample's own codes between two neighbouring ones
                        bw = between_views(neighbours, cfg.seed, cars, cfg.between)
                        shard_codes = codes[np.tile(np.arange(views) % frozen, len(ids))].clone()
                        at = (np.arange(len(ids))[:, None] * views + frozen + np.arange(cfg.between)[None]).reshape(-1)
                        shard_codes[at] = blend_codes(codes, bw["view_a"], bw["view_b"], bw["t"])
                gen_s += time.perf_counter() - t0
                for lo in range(0, n_rows, cfg.batch_size):
                    hi = min(n_rows, lo + cfg.batch_size)
                    rows_idx = np.arange(lo, hi)
                    s_local, v_ids = rows_idx // views, rows_idx % views
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        ws = content[s_local].clone()
                        if shard_codes is not None:  # random viewpoints (or --between): this image's own code
                            ws[:, list(layers)] = shard_codes[lo:hi]
                        else:
                            ws[:, list(layers)] = codes[v_ids]
                        if with_truth:
                            images, truth = G.synthesis_with_truth(ws, noise_mode="const")
                        else:
                            images, truth = G.synthesis(ws, noise_mode="const"), None
                        imgs = _to_uint8(images, crop)
                    gen_s += time.perf_counter() - t0
                    masks = None
                    if truth is not None:
                        masks = truth.labels if truth.labels is not None else truth.masks.astype(np.uint8) * 255
                    if masks is not None and crop is not None:
                        masks = masks[:, crop[0]:crop[1], crop[2]:crop[3]]
                    n = hi - lo
                    cols: dict[str, Any] = {
                        "sample_id": np.asarray(ids, dtype=np.int64)[s_local],
                        "view_id": v_ids.astype(np.int32),
                        "seed": np.asarray(seeds, dtype=np.int64)[s_local],
                        "height": np.full(n, imgs.shape[1], np.int32),
                        "width": np.full(n, imgs.shape[2], np.int32),
                        "keep": np.ones(n, bool),
                    }
                    if truth is not None:
                        cols.update(_truth_columns(truth, truth_extra))
                    pipe.rows(cols, imgs, masks)
                    written += hi - lo
                    if advance:
                        advance(hi - lo)
                pipe.end()
            pipe.close()
        except BaseException:
            try:
                pipe.close()
            except BaseException:
                pass
            sink.abort()
            raise

        sheet = None
        if 0 in mine or not (out / dsf.PREVIEWS / "contact_sheet.png").is_file():
            from g3d.datasets.previews import write_contact_sheet

            if (out / dsf.IMAGES / dsf.shard_name(0)).is_file():
                sheet = write_contact_sheet(out, max_samples=cfg.preview_samples)
        elif (out / dsf.PREVIEWS / "contact_sheet.png").is_file():
            sheet = out / dsf.PREVIEWS / "contact_sheet.png"
        return SynthReport(
            out=out,
            rows_written=written,
            shards_written=todo,
            shards_skipped=skipped,
            resumed=resumed,
            views=views,
            samples=cfg.samples,
            contact_sheet=sheet,
            seconds=time.perf_counter() - t_start,
            timings={"proposal": proposal_s, "generation": gen_s, "encoding": sink.encode_s, "writing": sink.write_s},
        )
