"""StyleGAN2 generator in pure PyTorch (no custom CUDA ops, nothing to compile).

The maths follows the published StyleGAN2 generator ("config-f" family, 'skip' ToRGB
architecture) as implemented by NVlabs/stylegan2-ada-pytorch and rosinality/stylegan2-pytorch;
this file is an independent implementation checked against conformance fixtures made with both
(``shared/fixtures/stylegan2``, to 1e-4).

Building blocks, one module each, in data-flow order::

    FullyConnectedLayer -> MappingNetwork                      z [N, z_dim] -> w [N, w_dim]
    SynthesisLayer, ToRGBLayer -> SynthesisBlock -> SynthesisNetwork   ws -> img [N, 3, H, W]
    StyleGAN2Generator (the g3d :class:`~g3d.synth.generator.Generator`)

The parameter layout (state-dict key names) is NVlabs's: ``mapping.fc{i}.weight``,
``mapping.w_avg``, ``synthesis.b{res}.const``, ``synthesis.b{res}.conv{0,1}.{weight, bias,
noise_strength, noise_const, affine.weight, affine.bias}``, ``synthesis.b{res}.torgb.*``.
Every other checkpoint layout is converted into it by :mod:`g3d.synth.checkpoints`. The FIR
resample filter is rebuilt from ``StyleGAN2Config.resample_filter`` (a non-persistent buffer).

Stored weights follow the equalized-learning-rate convention: the runtime weight is the stored
one times ``lr_multiplier / sqrt(fan_in)`` (fully connected) and demodulation removes the gain of
the 3x3 convolutions; ToRGB is modulated but not demodulated, with styles scaled by
``1 / sqrt(in_channels)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from g3d.errors import UsageError
from g3d.synth.generator import Generator

NOISE_MODES = ("const", "random", "none")
LOWP_DTYPES = (torch.float16, torch.bfloat16)
_SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class StyleGAN2Config:
    """Architecture of a StyleGAN2 generator; everything needed to build it before loading weights.

    Loaders fill it from checkpoint tensor shapes and constructor kwargs, never from assumptions.
    """

    z_dim: int  # size of the input latent z
    w_dim: int  # size of one row of ws (intermediate latent)
    resolution: int  # output side in pixels, a power of two >= 4
    channels: dict[int, int]  # block resolution (4, 8, ..., resolution) -> feature channels
    mapping_layers: int = 8  # fully connected layers in the mapping network
    mapping_hidden: int | None = None  # width of the hidden mapping layers; None = w_dim
    mapping_lr_multiplier: float = 0.01  # equalized-lr multiplier of the mapping layers
    img_channels: int = 3  # output image channels (g3d needs RGB: 3)
    c_dim: int = 0  # conditioning label size; only 0 (unconditional) is supported
    conv_clamp: float | None = None  # clamp of conv/ToRGB outputs; None = no clamping
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)  # 1-D FIR taps (outer product, normalised)
    use_noise: bool = True  # per-layer noise inputs (noise_strength, noise_const)
    architecture: str = "skip"  # ToRGB architecture; only 'skip' is supported
    extra: dict[str, Any] = field(default_factory=dict)  # provenance notes, not used by the maths

    @property
    def block_resolutions(self) -> list[int]:
        """[4, 8, ..., resolution]."""
        return [2**i for i in range(2, int(round(math.log2(self.resolution))) + 1)]

    @property
    def num_ws(self) -> int:
        """Rows of ws: one per conv layer, plus the last ToRGB (2 * log2(resolution) - 2)."""
        return 2 * len(self.block_resolutions)

    def validate(self) -> "StyleGAN2Config":
        """Raise :class:`UsageError` (one line) if the configuration cannot describe a StyleGAN2 net."""
        res = self.resolution
        if not isinstance(res, int) or res < 4 or res & (res - 1):
            raise UsageError(f"StyleGAN2 resolution {res!r} is not a power of two >= 4")
        missing = [r for r in self.block_resolutions if r not in self.channels]
        if missing:
            raise UsageError(f"StyleGAN2 config has no channel width for resolution(s) {missing}")
        extra_res = sorted(set(self.channels) - set(self.block_resolutions))
        if extra_res:
            raise UsageError(f"StyleGAN2 config has channel widths for unused resolution(s) {extra_res}")
        for name in ("z_dim", "w_dim", "mapping_layers"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"StyleGAN2 config {name}={getattr(self, name)!r} must be >= 1")
        if any(int(c) < 1 for c in self.channels.values()):
            raise UsageError(f"StyleGAN2 channel widths must be >= 1, got {self.channels}")
        if self.c_dim != 0:
            raise UsageError(
                f"conditional StyleGAN2 networks (c_dim={self.c_dim}) are not supported: "
                "use an unconditional checkpoint (c_dim=0)"
            )
        if self.img_channels != 3:
            raise UsageError(f"StyleGAN2 network makes {self.img_channels}-channel images; g3d needs RGB (3)")
        if self.architecture != "skip":
            raise UsageError(
                f"StyleGAN2 architecture {self.architecture!r} is not supported: only 'skip' "
                "(the config-e/f generator) is implemented"
            )
        taps = list(self.resample_filter)
        if len(taps) < 2 or len(taps) % 2 or sum(taps) == 0:
            raise UsageError(
                f"StyleGAN2 resample filter {taps} must have an even number (>= 2) of taps summing to non-zero"
            )
        if self.conv_clamp is not None and not self.conv_clamp > 0:
            raise UsageError(f"StyleGAN2 conv_clamp={self.conv_clamp!r} must be positive or None")
        if not self.mapping_lr_multiplier > 0:
            raise UsageError(
                f"StyleGAN2 mapping lr multiplier {self.mapping_lr_multiplier!r} must be positive"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (channel keys become strings)."""
        d = asdict(self)
        d["channels"] = {str(k): int(v) for k, v in sorted(self.channels.items())}
        d["resample_filter"] = [float(t) for t in self.resample_filter]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StyleGAN2Config":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`UsageError`."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"StyleGAN2 config has unknown field(s) {unknown}")
        d = dict(d)
        try:
            d["channels"] = {int(k): int(v) for k, v in dict(d["channels"]).items()}
            d["resample_filter"] = tuple(float(t) for t in d.get("resample_filter", (1, 3, 3, 1)))
            if d.get("conv_clamp") is not None:
                d["conv_clamp"] = float(d["conv_clamp"])
            return cls(**d)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"StyleGAN2 config is malformed ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------------------
# Primitive operations


def _bias_act(
    x: torch.Tensor,  # [N, C, ...] or [N, C]
    b: torch.Tensor | None,  # [C]
    act: str,  # "linear" | "lrelu" (slope 0.2)
    gain: float,  # multiplied after the activation
    clamp: float | None,  # symmetric clamp after the gain; None = none
) -> torch.Tensor:
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _filter_1d(taps: tuple[float, ...]) -> torch.Tensor:
    """Normalised 1-D FIR taps float32 [k]; the 2-D filter is their outer product (sums to 1)."""
    f = torch.tensor(taps, dtype=torch.float32)
    return f / f.sum()


def _fir_depthwise(
    x: torch.Tensor,  # [N, C, H, W]
    f: torch.Tensor,  # [k] normalised 1-D taps
    pad: int,  # zero padding on every side
    gain: float,  # total gain of the 2-D filter
) -> torch.Tensor:  # [N, C, H + 2 * pad - k + 1, W + 2 * pad - k + 1]
    """Separable FIR filter (true convolution with outer(f, f) * gain), one filter per channel."""
    c = x.shape[1]
    k = f.numel()
    g = f.flip(0).to(x.dtype) * math.sqrt(gain)
    x = F.pad(x, [pad, pad, pad, pad])
    x = F.conv2d(x, g.reshape(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    x = F.conv2d(x, g.reshape(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return x


def upsample2d(
    x: torch.Tensor,  # [N, C, H, W]
    f: torch.Tensor,  # [k] normalised 1-D taps, k even (4 for [1,3,3,1])
) -> torch.Tensor:  # [N, C, 2H, 2W]
    """2x upsampling: zero insertion then the FIR filter with gain 4 (NVlabs ``upsample2d``).

    Written as a strided transposed depthwise convolution, which skips the inserted zeros.
    """
    c = x.shape[1]
    k = f.numel()
    g = f.to(x.dtype) * 2.0  # gain 2 per axis
    # Zero-insert + pad ((k+1)//2, (k-2)//2) + convolve == transposed conv cropped by (k-2)//2.
    crop = (k - 2) // 2
    x = F.conv_transpose2d(
        x, g.reshape(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, 2), padding=(0, crop), groups=c
    )
    x = F.conv_transpose2d(
        x, g.reshape(1, 1, k, 1).expand(c, 1, k, 1), stride=(2, 1), padding=(crop, 0), groups=c
    )
    return x


def modulated_conv2d(
    x: torch.Tensor,  # [N, I, H, W] activations (float32 or a low-precision dtype)
    weight: torch.Tensor,  # [O, I, k, k] stored (unscaled) conv weight
    styles: torch.Tensor,  # float32 [N, I] per-sample input-channel scales
    demodulate: bool = True,  # normalise each output filter to unit norm (not for ToRGB)
    up: bool = False,  # 2x upsampling conv (transposed conv stride 2, then FIR)
    resample_filter: torch.Tensor | None = None,  # [k] taps, needed when up
    fused: bool = True,  # one grouped conv with per-sample weights; else scale activations
) -> torch.Tensor:  # [N, O, H', W'] with H' = 2H if up else H
    """StyleGAN2 modulated convolution (weight demodulation), same numerics as the references.

    ``fused=True`` is the references' inference path (grouped conv, groups = N); ``fused=False``
    scales the activations before and after one shared conv (the references' training path),
    which is faster for large batches on some devices. Both agree to ~1e-5.
    """
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    weight = weight.float()
    styles = styles.float()
    if x.dtype == torch.float16 and demodulate:  # keep fp16 intermediate values in range
        weight = weight * (1 / math.sqrt(i * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)

    w = None
    dcoefs = None
    if demodulate or fused:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, i, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]

    if fused:
        if dcoefs is not None:
            w = w * dcoefs.reshape(n, o, 1, 1, 1)
        h, wd = x.shape[2:]
        x = x.reshape(1, n * i, h, wd)
        if up:
            wt = w.transpose(1, 2).reshape(n * i, o, kh, kw)  # [N*I, O, k, k]
            x = F.conv_transpose2d(x, wt.to(x.dtype), stride=2, groups=n)
            x = _fir_depthwise(x, resample_filter, pad=resample_filter.numel() // 2 - 1, gain=4.0)
        else:
            x = F.conv2d(x, w.reshape(n * o, i, kh, kw).to(x.dtype), padding=kh // 2, groups=n)
        return x.reshape(n, o, *x.shape[2:])

    x = x * styles.to(x.dtype).reshape(n, i, 1, 1)
    if up:
        x = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2)
        x = _fir_depthwise(x, resample_filter, pad=resample_filter.numel() // 2 - 1, gain=4.0)
    else:
        x = F.conv2d(x, weight.to(x.dtype), padding=kh // 2)
    if dcoefs is not None:
        x = x * dcoefs.to(x.dtype).reshape(n, o, 1, 1)
    return x


# --------------------------------------------------------------------------------------------
# Layers


class FullyConnectedLayer(torch.nn.Module):
    """Equalized-learning-rate linear layer: y = act(x @ (W * lr/sqrt(in)).T + b * lr)."""

    def __init__(
        self,
        in_features: int,  # input width
        out_features: int,  # output width
        activation: str = "linear",  # "linear" | "lrelu" (slope 0.2, gain sqrt(2))
        lr_multiplier: float = 1.0,  # equalized-lr multiplier of weight and bias
        bias_init: float = 0.0,  # initial bias (1 for the style affines)
    ):
        super().__init__()
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out], float32
        w = self.weight.float() * self.weight_gain
        b = self.bias.float()
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return _bias_act(x.matmul(w.t()), b, "lrelu", _SQRT2, None)


class MappingNetwork(torch.nn.Module):
    """z float32 [N, z_dim] -> w float32 [N, w_dim]: pixel norm, then lrelu FC layers. Holds ``w_avg``."""

    def __init__(
        self,
        z_dim: int,  # input latent size
        w_dim: int,  # output latent size
        num_layers: int = 8,  # fully connected layers
        hidden: int | None = None,  # width of the hidden layers; None = w_dim
        lr_multiplier: float = 0.01,  # equalized-lr multiplier
    ):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_layers = num_layers
        hidden = w_dim if hidden is None else hidden
        features = [z_dim] + [hidden] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], "lrelu", lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [N, z_dim] -> [N, w_dim]
        x = z.float()
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()  # normalize 2nd moment
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + noise + bias + lrelu (gain sqrt 2) + clamp."""

    def __init__(
        self,
        in_channels: int,  # I
        out_channels: int,  # O
        w_dim: int,  # size of the ws row feeding the style affine
        resolution: int,  # output side
        up: bool = False,  # upsample 2x (the first conv of blocks 8 px and up)
        use_noise: bool = True,  # add noise_const / random noise times noise_strength
        conv_clamp: float | None = None,  # clamp after the activation; None = none
        kernel_size: int = 3,  # conv kernel side
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))

    def forward(
        self,
        x: torch.Tensor,  # [N, I, R/2 or R, ...]
        w: torch.Tensor,  # float32 [N, w_dim]
        resample_filter: torch.Tensor,  # [k] taps
        noise_mode: str = "const",  # "const" | "random" | "none"
        fused: bool = True,  # fused modconv (see modulated_conv2d)
        generator: torch.Generator | None = None,  # RNG for noise_mode="random"
    ) -> torch.Tensor:  # [N, O, R, R]
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, True, self.up, resample_filter, fused)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                noise = torch.randn(
                    [x.shape[0], 1, self.resolution, self.resolution],
                    generator=generator,
                    device=x.device,
                    dtype=torch.float32,
                )
                noise = noise * self.noise_strength.float()
            else:
                noise = self.noise_const.float() * self.noise_strength.float()
            x = x + noise.to(x.dtype)
        return _bias_act(x, self.bias, "lrelu", _SQRT2, self.conv_clamp)


class ToRGBLayer(torch.nn.Module):
    """Modulated (not demodulated) 1x1 conv to RGB, styles scaled by 1/sqrt(in_channels), + bias + clamp."""

    def __init__(
        self,
        in_channels: int,  # I
        out_channels: int,  # image channels (3)
        w_dim: int,  # size of the ws row feeding the style affine
        conv_clamp: float | None = None,  # clamp of the output; None = none
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(
        self,
        x: torch.Tensor,  # [N, I, R, R]
        w: torch.Tensor,  # float32 [N, w_dim]
        fused: bool = True,
    ) -> torch.Tensor:  # float32 [N, 3, R, R]
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return _bias_act(x.float(), self.bias, "linear", 1.0, self.conv_clamp)


class SynthesisBlock(torch.nn.Module):
    """One resolution: (const | upsampling conv0), conv1, ToRGB added to the upsampled skip image."""

    def __init__(
        self,
        in_channels: int,  # channels of the previous block; 0 = first block (constant input)
        out_channels: int,  # channels of this block
        w_dim: int,  # size of a ws row
        resolution: int,  # side of this block's output
        img_channels: int = 3,  # image channels of ToRGB
        use_noise: bool = True,  # noise inputs in the convs
        conv_clamp: float | None = None,  # clamp of conv and ToRGB outputs
    ):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim,
                resolution,
                up=True,
                use_noise=use_noise,
                conv_clamp=conv_clamp,
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, use_noise=use_noise, conv_clamp=conv_clamp
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)

    def forward(
        self,
        x: torch.Tensor | None,  # [N, I, R/2, R/2] or None for the first block
        img: torch.Tensor | None,  # float32 [N, 3, R/2, R/2] or None for the first block
        ws: torch.Tensor,  # float32 [N, num_conv + 1, w_dim]
        resample_filter: torch.Tensor,  # [k] taps
        noise_mode: str,
        fused: bool,
        dtype: torch.dtype,  # compute dtype of this block's activations
        channels_last: bool,  # use channels_last memory format for the activations
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # x [N, O, R, R], img float32 [N, 3, R, R]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=fmt)
        else:
            x = x.to(dtype=dtype).contiguous(memory_format=fmt)
            x = self.conv0(x, next(w_iter), resample_filter, noise_mode, fused, generator)
        x = self.conv1(x, next(w_iter), resample_filter, noise_mode, fused, generator)
        if img is not None:
            img = upsample2d(img, resample_filter)
        y = self.torgb(x, next(w_iter), fused).contiguous()
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(torch.nn.Module):
    """ws float32 [N, num_ws, w_dim] -> img float32 [N, 3, R, R], blocks b4 ... b{R}."""

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.block_resolutions = config.block_resolutions
        self.num_ws = config.num_ws
        self.w_dim = config.w_dim
        self.register_buffer("resample_filter", _filter_1d(tuple(config.resample_filter)), persistent=False)
        prev = 0
        for res in self.block_resolutions:
            ch = config.channels[res]
            block = SynthesisBlock(
                prev, ch, config.w_dim, res, config.img_channels, config.use_noise, config.conv_clamp
            )
            setattr(self, f"b{res}", block)
            prev = ch

    def forward(
        self,
        ws: torch.Tensor,  # float32 [N, num_ws, w_dim]
        noise_mode: str = "const",
        fused: bool = True,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,  # channels_last memory format for the activations
        lowp_from_res: int | None = None,  # blocks with res >= this use ``dtype``; others float32
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # float32 [N, 3, R, R]
        ws = ws.float()
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block: SynthesisBlock = getattr(self, f"b{res}")
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            lowp = dtype != torch.float32 and (lowp_from_res is None or res >= lowp_from_res)
            x, img = block(
                x,
                img,
                cur_ws,
                self.resample_filter,
                noise_mode,
                fused,
                dtype if lowp else torch.float32,
                channels_last,
                generator,
            )
        return img


# --------------------------------------------------------------------------------------------
# The g3d generator


class StyleGAN2Generator(Generator):
    """A StyleGAN2 generator (unconditional, 'skip' architecture) behind the g3d interface.

    Build it from a :class:`StyleGAN2Config` and load a state dict in the NVlabs layout, or use
    :func:`g3d.synth.checkpoints.load_generator`, which reads every supported checkpoint format.

    The sub-networks are registered under the NVlabs names ``mapping`` and ``synthesis`` (so the
    state-dict keys are NVlabs's); as attributes those names are the g3d methods, and the modules
    are reached as :attr:`mapping_network` and :attr:`synthesis_network`.
    """

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        config.validate()
        self.config = config
        self.z_dim = config.z_dim
        self.w_dim = config.w_dim
        self.c_dim = config.c_dim
        self.num_ws = config.num_ws
        self.resolution = config.resolution
        self.img_channels = config.img_channels
        # Registered straight into _modules: the attribute names are taken by the methods below.
        self._modules["mapping"] = MappingNetwork(
            config.z_dim,
            config.w_dim,
            config.mapping_layers,
            config.mapping_hidden,
            config.mapping_lr_multiplier,
        )
        self._modules["synthesis"] = SynthesisNetwork(config)
        self.source_info: dict[str, Any] = {}  # filled by the checkpoint loader (format, path, sha256)
        self.compute_dtype: torch.dtype = torch.float32
        self.channels_last = False
        self.lowp_from_res: int | None = None
        self.fused_modconv: bool | None = None  # None = automatic (see synthesis)

    @property
    def mapping_network(self) -> MappingNetwork:
        return self._modules["mapping"]  # type: ignore[return-value]

    @property
    def synthesis_network(self) -> SynthesisNetwork:
        return self._modules["synthesis"]  # type: ignore[return-value]

    @property
    def w_avg(self) -> torch.Tensor:  # float32 [w_dim], the truncation centre
        return self.mapping_network.w_avg

    def set_precision(
        self,
        dtype: torch.dtype = torch.float32,  # float32 | float16 | bfloat16 for synthesis activations
        channels_last: bool = False,  # channels_last activations (pays off with fused_modconv=False)
        num_lowp_res: int | None = None,  # highest-resolution blocks run in ``dtype``; None = all
    ) -> "StyleGAN2Generator":
        """Choose the synthesis compute precision; parameters stay float32, mapping stays float32.

        float16 is meant for CUDA (half convolutions are slow or missing on CPU); bfloat16 works on
        both. NVlabs trains with float16 in the 4 highest-resolution blocks (``num_lowp_res=4``).
        Returns ``self``.
        """
        if dtype not in (torch.float32,) + LOWP_DTYPES:
            raise UsageError(
                f"StyleGAN2 compute dtype {dtype} is not supported: use float32, float16 or bfloat16"
            )
        if num_lowp_res is not None and num_lowp_res < 0:
            raise UsageError(f"num_lowp_res={num_lowp_res} must be >= 0 or None")
        self.compute_dtype = dtype
        self.channels_last = bool(channels_last)
        blocks = self.config.block_resolutions
        if num_lowp_res is None:
            self.lowp_from_res = None
        elif num_lowp_res == 0:
            self.lowp_from_res = self.resolution * 2  # no block qualifies
        else:
            self.lowp_from_res = blocks[max(len(blocks) - num_lowp_res, 0)]
        return self

    def mapping(
        self,
        z: torch.Tensor,  # float32 [N, z_dim]
        truncation_psi: float = 1.0,  # 1 = no truncation; 0 = every sample is w_avg
        truncation_cutoff: int | None = None,  # truncate only rows < cutoff; None = all rows
    ) -> torch.Tensor:  # float32 [N, num_ws, w_dim]
        """Map z to per-layer latents ws, lerped towards ``w_avg`` by ``truncation_psi``."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise UsageError(
                f"z has shape {list(z.shape)}, expected [N, {self.z_dim}] (N latents of size z_dim)"
            )
        if truncation_cutoff is not None and (
            int(truncation_cutoff) != truncation_cutoff or truncation_cutoff < 0
        ):
            raise UsageError(f"truncation_cutoff={truncation_cutoff!r} must be a non-negative int or None")
        w = self.mapping_network(z)  # [N, w_dim]
        ws = w.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            w_avg = self.w_avg.float()
            if truncation_cutoff is None:
                ws = w_avg.lerp(ws, float(truncation_psi))
            else:
                k = min(int(truncation_cutoff), self.num_ws)
                ws[:, :k] = w_avg.lerp(ws[:, :k], float(truncation_psi))
        return ws

    def synthesis(
        self,
        ws: torch.Tensor,  # float32 [N, num_ws, w_dim]
        noise_mode: str = "const",  # "const" (stored noise) | "random" | "none"
        generator: torch.Generator | None = None,  # RNG for noise_mode="random" (on ws's device)
        fused_modconv: bool | None = None,  # None = self.fused_modconv, or automatic
    ) -> torch.Tensor:  # float32 [N, 3, resolution, resolution], nominally in [-1, 1]
        """Draw images from per-layer latents.

        Automatic modconv choice: the fused grouped conv (the references' inference path) for a
        single image and for float32 batches on CUDA (NVlabs's rule); the scaled-activation path
        for low-precision CUDA batches and for every CPU batch (about 2x cheaper per image at
        batch 32 on CPU). Both match the reference outputs to ~1e-5.
        """
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise UsageError(
                f"ws has shape {list(ws.shape)}, expected [N, {self.num_ws}, {self.w_dim}] (N, num_ws, w_dim)"
            )
        if noise_mode not in NOISE_MODES:
            raise UsageError(f"noise_mode {noise_mode!r} is not one of {list(NOISE_MODES)}")
        fused = fused_modconv if fused_modconv is not None else self.fused_modconv
        if fused is None:
            if ws.shape[0] == 1:
                fused = True
            elif ws.device.type == "cuda":
                fused = self.compute_dtype == torch.float32
            else:
                fused = False
        img = self.synthesis_network(
            ws,
            noise_mode=noise_mode,
            fused=bool(fused),
            dtype=self.compute_dtype,
            channels_last=self.channels_last,
            lowp_from_res=self.lowp_from_res,
            generator=generator,
        )
        return img.float().contiguous()

    def forward(
        self,
        z: torch.Tensor,  # float32 [N, z_dim]
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # float32 [N, 3, resolution, resolution]
        """``synthesis(mapping(z, ...), ...)``."""
        ws = self.mapping(z, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, generator=generator)

    def describe(self) -> dict[str, Any]:
        """Format, source path, sha256 and architecture summary, for dataset manifests."""
        c = self.config
        info: dict[str, Any] = {"format": "stylegan2"}
        info.update(self.source_info)
        info["architecture"] = {
            "resolution": c.resolution,
            "z_dim": c.z_dim,
            "w_dim": c.w_dim,
            "c_dim": c.c_dim,
            "num_ws": c.num_ws,
            "mapping_layers": c.mapping_layers,
            "mapping_hidden": c.mapping_hidden if c.mapping_hidden is not None else c.w_dim,
            "mapping_lr_multiplier": c.mapping_lr_multiplier,
            "channels": {str(k): v for k, v in sorted(c.channels.items())},
            "conv_clamp": c.conv_clamp,
            "resample_filter": list(c.resample_filter),
            "use_noise": c.use_noise,
            "architecture": c.architecture,
            "parameters": int(sum(p.numel() for p in self.parameters())),
        }
        if c.extra:
            info["notes"] = dict(c.extra)
        return info


def compute_w_avg(
    generator: StyleGAN2Generator,
    num_samples: int = 4096,  # z drawn from a standard normal
    seed: int = 2,  # seed of a CPU torch.Generator
    batch: int = 1024,
) -> torch.Tensor:  # float32 [w_dim]
    """Mean of the mapping network over ``num_samples`` z (for checkpoints that store no centre)."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn([num_samples, generator.z_dim], generator=rng)
    net = generator.mapping_network
    with torch.no_grad():
        ws = [net(z[i : i + batch].to(generator.device)).cpu() for i in range(0, num_samples, batch)]
    return torch.cat(ws).mean(dim=0).float()
