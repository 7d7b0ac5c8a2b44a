"""Benchmark: batched StyleGAN2 sampling against the reference one-image-per-call loop.

Prints images per second for (a) the 64 px conformance fixture network and (b) a random-init
network the size of NVIDIA's car config-f (512 px, 30 M parameters), at several batch sizes, and
the same-run ratio against a loop that calls mapping + synthesis once per image (what the
reference ``generate.py`` does, minus PNG writing). On CUDA it also runs float16 / bfloat16 with
channels_last. Timings are the best of a few repetitions after a warm-up call.

    python bench/stylegan.py            # full run (CPU: about 2-3 minutes on 2 cores)
    python bench/stylegan.py --quick    # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from g3d.synth.stylegan2 import StyleGAN2Config, StyleGAN2Generator  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "stylegan2" / "nvlabs_small.safetensors"
CAR_CONFIG_F = StyleGAN2Config(
    z_dim=512,
    w_dim=512,
    resolution=512,
    channels={4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64},
    mapping_layers=8,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def _fixture_network() -> StyleGAN2Generator:
    from g3d.synth.checkpoints import load_generator

    if FIXTURE.is_file():
        return load_generator(FIXTURE)  # type: ignore[return-value]
    print(f"(fixture {FIXTURE} not found: using a random-init network of the same shape)")
    cfg = StyleGAN2Config(
        z_dim=128, w_dim=128, resolution=64, channels={4: 64, 8: 64, 16: 64, 32: 32, 64: 16}
    )
    return StyleGAN2Generator(cfg).eval().requires_grad_(False)


def bench_network(
    name: str,
    gen: StyleGAN2Generator,
    device: torch.device,
    batches: list[int],
    loop_images: int,  # images in the one-per-call baseline loop
    reps: int,  # repetitions per measurement (the best is kept)
    variants: list[tuple[str, torch.dtype, bool, bool | None]],  # (label, dtype, channels_last, fused)
) -> list[tuple]:
    """Time the per-image loop and every (variant, batch), interleaved rep by rep.

    Interleaving makes the ratios robust to load from other processes: each repetition measures
    the baseline and the batched runs under the same conditions, and the best of each is kept.
    """
    gen = gen.to(device)
    rng = torch.Generator().manual_seed(0)
    z = torch.randn([max(batches + [loop_images]), gen.z_dim], generator=rng).to(device)
    psi = 0.7

    def loop() -> None:  # the reference: one image per call, mapping + synthesis each time
        gen.set_precision(torch.float32)
        gen.fused_modconv = None
        for i in range(loop_images):
            gen.synthesis(gen.mapping(z[i : i + 1], truncation_psi=psi), noise_mode="const")

    def batched(variant: tuple, b: int) -> None:
        _, dtype, channels_last, fused = variant
        lowp = 4 if dtype != torch.float32 else None
        gen.set_precision(dtype, channels_last=channels_last, num_lowp_res=lowp)
        gen.fused_modconv = fused
        gen.synthesis(gen.mapping(z[:b], truncation_psi=psi), noise_mode="const")

    cheap = device.type == "cuda" or gen.resolution <= 128
    wall: dict[object, float] = {}
    cpu: dict[object, float] = {}

    def record(key: object, fn: Callable[[], object]) -> None:
        w, c = _measure(fn, device)
        wall[key] = min(wall.get(key, math.inf), w)
        cpu[key] = min(cpu.get(key, math.inf), c)

    with torch.inference_mode():
        gen.synthesis(gen.mapping(z[:1]))  # warm-up
        if cheap:  # warm-up at every shape (skipped for the big CPU network to save minutes)
            for v in variants:
                for b in batches:
                    batched(v, b)
        for _ in range(reps):
            record("loop", loop)
            for v in variants:
                for b in batches:
                    record((v[0], b), lambda: batched(v, b))
        gen.set_precision(torch.float32)
        gen.fused_modconv = None
    per_image = loop_images / wall["loop"]
    loop_cpu_ms = 1000 * cpu["loop"] / loop_images
    rows = []
    for v in variants:
        for b in batches:
            ips = b / wall[(v[0], b)]
            cpu_ms = 1000 * cpu[(v[0], b)] / b
            rows.append((name, device.type, v[0], b, ips, per_image, ips / per_image, cpu_ms, loop_cpu_ms))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few, small batches")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"

    if on_cuda:
        variants = [
            ("fp32 fused", torch.float32, False, True),
            ("fp16+channels_last", torch.float16, True, None),
            ("bf16+channels_last", torch.bfloat16, True, None),
        ]
    else:
        variants = [
            ("fp32 fused", torch.float32, False, True),
            ("fp32 non-fused", torch.float32, False, False),
        ]

    if args.quick:
        small = dict(batches=[1, 8], loop_images=8, reps=2)
        big = dict(batches=[2], loop_images=1, reps=1)
    elif on_cuda:
        small = dict(batches=[1, 8, 32], loop_images=32, reps=3)
        big = dict(batches=[1, 8, 32], loop_images=16, reps=3)
    else:
        small = dict(batches=[1, 8, 32], loop_images=32, reps=3)
        big = dict(batches=[1, 4], loop_images=2, reps=2)

    print(
        f"torch {torch.__version__}, device {device}"
        + (
            f" ({torch.cuda.get_device_name(device)})"
            if on_cuda
            else f", {torch.get_num_threads()} CPU threads"
        )
    )
    t0 = time.perf_counter()
    rows = bench_network("fixture 64px", _fixture_network(), device, variants=variants, **small)
    big_gen = StyleGAN2Generator(CAR_CONFIG_F).eval().requires_grad_(False)
    big_variants = variants if on_cuda else [("fp32 auto", torch.float32, False, None)]  # saves CPU minutes
    rows += bench_network("config-f 512px", big_gen, device, variants=big_variants, **big)
    total = time.perf_counter() - t0

    head = (
        f"{'network':<16} {'device':<6} {'variant':<20} {'batch':>5} {'batched img/s':>14} "
        f"{'per-image img/s':>16} {'ratio':>6} {'CPU ms/img (batched | per-image)':>34}"
    )
    print(head)
    print("-" * len(head))
    for name, dev, label, b, ips, per, ratio, cpu_ms, loop_ms in rows:
        print(
            f"{name:<16} {dev:<6} {label:<20} {b:>5} {ips:>14.2f} {per:>16.2f} {ratio:>5.2f}x "
            f"{cpu_ms:>16.1f} | {loop_ms:<15.1f}"
        )
    print("-" * len(head))
    print(
        "per-image = one mapping+synthesis call per image, float32 (the reference generate.py loop); ratio = batched / per-image;"
    )
    print(
        "fused = grouped conv with per-sample weights (reference inference path); non-fused = modulate activations, shared conv;"
    )
    print("auto = the generator's default (CPU: fused for batch 1, non-fused for larger batches).")
    print(
        "CPU ms/img = this process's CPU time per image (all threads): less sensitive to other load than img/s."
    )
    if not on_cuda and not args.quick:
        print(
            "CPU: the 512 px network runs batches 1 and 4 only (batch 8/32 would take minutes on 2 cores); float16 is CUDA-only."
        )
    elif args.quick:
        print("--quick: reduced batches and a single repetition; figures are rough.")
    if hasattr(os, "getloadavg") and not on_cuda:
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1):
            print(
                f"note: 1-min load average {load:.1f} on {os.cpu_count()} cores: other processes competed for the CPU"
            )
    print(f"total bench time {total:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
