"""Self-supervised pre-training as tasks of the one :class:`~vitkit.train.Trainer`: no labels read.

Three objectives, each a ``method`` of :class:`PretrainConfig`:

- ``mpp`` — the ViT paper's *masked patch prediction* (Dosovitskiy et al., ICLR 2021, §4.6 and App.
  B.1.2): 50% of the patch embeddings are corrupted — of those 80% replaced by a learnable [mask]
  embedding, 10% by a random other patch embedding, 10% kept as they are — and the encoder's output
  token of every corrupted patch predicts (``mpp_target``) ``color``: the patch's mean colour in 3 bits
  per channel (512 classes, cross-entropy; the paper's choice), ``color_4x4``: the 3-bit colours of a
  4×4 downsized patch (16 predictions of 512 classes), or ``pixels``: the full patch by L2 regression
  (the three variants the appendix reports).
- ``mae`` — masked autoencoders (He et al., CVPR 2022, §3): a random 75% of the patches of each
  image are removed, the encoder runs on the visible 25% only (no compute on the masked ones), a light
  Transformer decoder (``decoder_depth`` × ``decoder_dim``, its own fixed 2-D sin-cos position
  embeddings) fills in mask tokens, and the loss is the mean squared error on per-patch normalised
  pixels (``norm_pix_loss``) of the masked patches only.
- ``simmim`` — SimMIM (Xie et al., CVPR 2022, §3): masked patches replaced by a learnable mask token
  right after the patch embedding (random masking of ``mask_patch_size``-pixel squares, ratio 0.6), a
  one-layer linear head predicts the raw pixels, L1 loss on the masked pixels. The standard for Swin
  (hierarchical, windowed: it cannot drop tokens as MAE does); works for ViT too.

What is optimised is :class:`MaskedImageModel`: the encoder (a vitkit ViT or Swin, built without a
classifier) under ``encoder.*`` and the method's parts (mask token, decoder, prediction head) under
``pretrain.*``. Its checkpoints (``checkpoint-last.pt``, ``checkpoint-best.pt``) record the encoder's
model name, constructor arguments and preprocessing, so ``vitkit train weights=RUN/checkpoint-last.pt``,
``vitkit fewshot --weights RUN/checkpoint-last.pt`` and :func:`vitkit.load_weights` take them as they
are: the vitkit format maps ``encoder.*`` to the model's names and drops ``pretrain.*`` (listed in the
load report's ``dropped``, with the reason). Resume, interrupts, DDP/FSDP, the run folder and its
curves are the Trainer's.

Masks are drawn from the torch RNG of the batch's device (restored on resume, so a resumed run is
bit-identical); evaluation uses fixed masks (seed 0) so that validation losses compare across epochs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from .config import TrainConfig

log = logging.getLogger("vitkit.train")

METHODS = ("mpp", "mae", "simmim")
MPP_TARGETS = ("color", "color_4x4", "pixels")
ENCODER_PREFIX, PRETRAIN_PREFIX = "encoder.", "pretrain."  # the vitkit weights format knows both


# ---------------------------------------------------------------------------------- the config
@dataclass
class PretrainConfig(TrainConfig):
    """A :class:`TrainConfig` plus the pre-training objective. Zero values take the method's default
    (``mask_ratio``: MPP 0.5, MAE 0.75, SimMIM 0.6)."""

    method: str = "mae"
    mask_ratio: float = 0.0            # fraction of patches masked / corrupted (0: the method's default)
    # MPP (ViT App. B.1.2)
    mpp_target: str = "color"          # color | color_4x4 | pixels
    mpp_bits: int = 3                  # bits per colour channel of the targets (3: 512 colours)
    mpp_replace: tuple[float, float, float] = (0.8, 0.1, 0.1)  # [mask] token / random patch / kept
    # MAE (He et al. 2022)
    decoder_dim: int = 0               # 0: half the encoder width (at least 32)
    decoder_depth: int = 2
    decoder_heads: int = 0             # 0: decoder_dim // 32 (at least 1)
    norm_pix_loss: bool = True         # per-patch normalised pixel targets (MAE §3, Table 1e)
    # SimMIM (Xie et al. 2022)
    mask_patch_size: int = 0           # side in pixels of the masked squares (0: the model's token stride)
    # evaluation
    val_examples: int = 0              # >0: score the validation loss on this many images (evenly spaced)
    # defaults that differ from classification's
    model: str = "vit_micro_patch4_32"
    data: str = "cifar10"
    augment: str = "cifar"
    eval_split: str = "test"

    def validate(self) -> "PretrainConfig":
        super().validate()

        def need(ok: bool, field: str, msg: str) -> None:
            if not ok:
                raise ValueError(f"{field}={getattr(self, field)!r}: {msg}")

        need(self.method in METHODS, "method", f"choose one of {', '.join(METHODS)}")
        need(0 <= self.mask_ratio < 1, "mask_ratio", "must be in (0, 1), or 0 for the method's default")
        need(self.mpp_target in MPP_TARGETS, "mpp_target", f"choose one of {', '.join(MPP_TARGETS)}")
        need(1 <= self.mpp_bits <= 4, "mpp_bits", "must be 1-4 (3 bits: 512 colours, the paper's)")
        need(all(p >= 0 for p in self.mpp_replace) and abs(sum(self.mpp_replace) - 1) < 1e-6, "mpp_replace",
             "three fractions (mask token, random patch, kept) that sum to 1, e.g. 0.8,0.1,0.1")
        need(self.decoder_depth >= 1, "decoder_depth", "must be at least 1")
        need(self.decoder_dim >= 0 and self.decoder_heads >= 0, "decoder_dim", "must be >= 0 (0: the default)")
        need(self.mask_patch_size >= 0, "mask_patch_size", "must be >= 0 (0: the model's token stride)")
        need(self.val_examples >= 0, "val_examples", "must be >= 0 (0: the whole validation split)")
        need(self.mixup == 0 and self.cutmix == 0 and self.label_smoothing == 0, "mixup",
             "pre-training reads no labels: Mixup, CutMix and label smoothing do not apply")
        return self

    @property
    def ratio(self) -> float:
        return self.mask_ratio or {"mpp": 0.5, "mae": 0.75, "simmim": 0.6}[self.method]


def load_pretrain_config(out_dir: str | Path) -> tuple[PretrainConfig, str]:
    """The config and recipe name saved in a pre-training run folder's config.json (or, when that is
    missing, empty or damaged, in checkpoint-last.pt: :func:`vitkit.train.loop.read_run_config`)."""
    from .loop import read_run_config

    path = Path(out_dir) / "config.json"
    doc = read_run_config(out_dir)
    recipe = doc.pop("recipe", "")
    if "method" not in doc:
        raise ValueError(f"{path} is not a pre-training run (no 'method'); resume it with vitkit train --resume")
    return PretrainConfig.from_dict(doc), recipe


# ------------------------------------------------------------------------------ targets, masks
def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) → (B, N, p·p·C): patches in row-major grid order, pixels (row, column, channel)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)


def color_bins(pixels: torch.Tensor, bits: int = 3) -> torch.Tensor:
    """Colours in [0, 1] (…, C) → class ids: each channel quantised to ``bits`` bits (2^bits equal
    bins; 1.0 falls in the top bin), the first channel most significant (3 bits, RGB: 8·8·8 = 512)."""
    levels = 2**bits
    q = (pixels.clamp(0, 1) * levels).floor().clamp(max=levels - 1).long()
    ids = torch.zeros(q.shape[:-1], dtype=torch.long, device=q.device)
    for c in range(q.shape[-1]):
        ids = ids * levels + q[..., c]
    return ids


def mpp_targets(pixels: torch.Tensor, p: int, target: str = "color", bits: int = 3) -> torch.Tensor:
    """MPP targets of every patch of ``pixels`` (B, C, H, W) in [0, 1] (ViT App. B.1.2): ``color``
    (B, N) mean-colour ids; ``color_4x4`` (B, N, 16) ids of a 4×4 downsized patch (area averages;
    patches under 4 pixels wide are kept at their own size); ``pixels`` (B, N, p·p·C) the patch."""
    if target == "color":
        B, C, H, W = pixels.shape
        mean = F.avg_pool2d(pixels, p)  # (B, C, H/p, W/p)
        return color_bins(mean.flatten(2).transpose(1, 2), bits)
    if target == "color_4x4":
        k = min(4, p)
        small = F.adaptive_avg_pool2d(pixels, (pixels.shape[2] // p * k, pixels.shape[3] // p * k))
        B, C = small.shape[:2]
        return color_bins(patchify(small, k).reshape(B, -1, k * k, C), bits)
    if target == "pixels":
        return patchify(pixels, p)
    raise ValueError(f"mpp_target={target!r}: choose one of {', '.join(MPP_TARGETS)}")


def _rand(shape: Sequence[int], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.rand(*shape, device=device)
    return torch.rand(*shape, generator=generator).to(device)


def random_masking(batch: int, n: int, ratio: float, device: torch.device,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-image random masking (He et al. 2022 §3): ``(keep, restore, mask)`` — the indices of
    the round(n·(1 − ratio)) visible patches (B, K), the permutation that undoes the shuffle (B, n) and
    the binary mask (B, n; 1 = removed)."""
    k = max(1, round(n * (1 - ratio)))
    noise = _rand((batch, n), device, generator)
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    mask = torch.ones(batch, n, device=device)
    mask[:, :k] = 0
    return shuffle[:, :k], restore, mask.gather(1, restore)


def mpp_corruption(batch: int, n: int, ratio: float = 0.5, split: Sequence[float] = (0.8, 0.1, 0.1),
                   device: torch.device | str = "cpu", generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """ViT App. B.1.2's corruption: ``(corrupt, action)``, both (B, n). round(n·ratio) patches of each
    image are corrupted (``corrupt`` True); ``action`` is 0 for [mask], 1 for a random other patch, 2
    for kept, drawn independently per corrupted patch with the probabilities ``split`` (−1 elsewhere)."""
    device = torch.device(device)
    k = round(n * ratio)
    order = _rand((batch, n), device, generator).argsort(dim=1)
    corrupt = torch.zeros(batch, n, dtype=torch.bool, device=device)
    corrupt.scatter_(1, order[:, :k], True)
    u = _rand((batch, n), device, generator)
    action = torch.full((batch, n), 2, dtype=torch.long, device=device)
    action[u < split[0] + split[1]] = 1
    action[u < split[0]] = 0
    return corrupt, torch.where(corrupt, action, torch.full_like(action, -1))


def block_mask(batch: int, grid: tuple[int, int], unit: int, ratio: float, device: torch.device,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """SimMIM's random masking (Xie et al. 2022 §3.1): squares of ``unit``×``unit`` tokens, round(ratio ·
    number of squares) of them masked per image; returns a (B, Gh, Gw) float mask (1 = masked)."""
    gh, gw = -(-grid[0] // unit), -(-grid[1] // unit)
    n = gh * gw
    k = max(1, round(n * ratio))
    order = _rand((batch, n), device, generator).argsort(dim=1)
    m = torch.zeros(batch, n, device=device)
    m.scatter_(1, order[:, :k], 1.0)
    m = m.reshape(batch, 1, gh, gw)
    m = m.repeat_interleave(unit, 2).repeat_interleave(unit, 3)[:, 0, :grid[0], :grid[1]]
    return m


def sincos_2d(dim: int, grid: tuple[int, int], prefix: int = 0) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings (MAE's decoder; Vaswani et al.'s frequencies per
    axis, half the channels each): (1, prefix + Gh·Gw, dim), zeros for the prefix tokens."""
    if dim % 4:
        raise ValueError(f"decoder_dim={dim} must be divisible by 4 for 2-D sin-cos position embeddings")
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ys, xs = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64), torch.arange(grid[1], dtype=torch.float64),
                            indexing="ij")
    parts = []
    for pos in (ys.flatten(), xs.flatten()):
        out = pos[:, None] * omega[None]
        parts += [out.sin(), out.cos()]
    emb = torch.cat(parts, dim=1).float()
    return torch.cat([torch.zeros(prefix, dim), emb])[None]


# -------------------------------------------------------------------------------- the modules
class MPPHead(nn.Module):
    """ViT App. B.1.2: the learnable [mask] embedding and a linear prediction head per output token."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(dim, out)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)


class MAEDecoder(nn.Module):
    """MAE's decoder (He et al. 2022 §3): linear projection of the encoded visible tokens, a shared
    learned mask token in the removed places, fixed 2-D sin-cos positions, ``depth`` Transformer
    blocks, a linear map to the p·p·C pixels of each patch."""

    def __init__(self, enc_dim: int, dim: int, depth: int, heads: int, grid: tuple[int, int], prefix: int,
                 patch_pixels: int) -> None:
        super().__init__()
        from ..models.vit import Block

        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("pos_embed", sincos_2d(dim, grid, prefix), persistent=False)
        self.blocks = nn.ModuleList([Block(dim, heads, 4 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch_pixels)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)  # as MAE's official initialisation
                nn.init.zeros_(m.bias)
        self.prefix = prefix

    def forward(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        x = self.embed(latent)
        B, n = restore.shape
        P = self.prefix
        fill = self.mask_token.expand(B, n + P - x.shape[1], -1)
        body = torch.cat([x[:, P:], fill], dim=1)
        body = body.gather(1, restore[..., None].expand(-1, -1, x.shape[-1]))  # back to grid order
        x = torch.cat([x[:, :P], body], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))[:, P:]


class SimMIMHead(nn.Module):
    """SimMIM (Xie et al. 2022 §3.2, 3.3): the learnable mask token and a one-layer linear prediction
    head (a 1×1 convolution to stride²·C values per token, rearranged to pixels)."""

    def __init__(self, dim: int, token_dim: int, stride: int, in_chans: int) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, token_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Conv2d(dim, stride * stride * in_chans, 1)
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, h, w, D) → (B, C, h·stride, w·stride) pixels."""
        return self.shuffle(self.head(fmap.permute(0, 3, 1, 2)))


def _pixel_patch(encoder: nn.Module) -> int:
    """The side of the pixel patch behind each token (the model's own answer; a hybrid has none)."""
    try:
        proj = encoder.pixel_patch_projection()
    except ValueError:
        raise ValueError("masked pre-training needs a model whose tokens are patches of pixels (a plain ViT or a "
                         "Swin); a hybrid's tokens are ResNet features") from None
    return int(proj.kernel_size[0])


class MaskedImageModel(nn.Module):
    """The encoder (``encoder.*``) and the method's parts (``pretrain.*``); ``forward(x)`` returns the
    loss and what it was computed on. It describes itself as its encoder (``model_name``,
    ``init_kwargs``, ``pretrained_cfg``), so that checkpoints record the encoder."""

    def __init__(self, encoder: nn.Module, cfg: PretrainConfig) -> None:
        super().__init__()
        self.method, self.ratio = cfg.method, cfg.ratio
        self.p = _pixel_patch(encoder)
        # what the encoder offers (models/vit.py, models/swin.py): embed, position and encode any subset of
        # tokens (ViT: MPP, MAE, SimMIM), or only the mask-token substitution after the patch embedding (Swin)
        self.token_subsets = callable(getattr(encoder, "forward_tokens", None))
        if not self.token_subsets and (self.method != "simmim" or not callable(
                getattr(encoder, "forward_features_masked", None))):
            raise ValueError(f"method={self.method} needs a model that can encode a subset of its tokens (ViT); for "
                             f"{type(encoder).__name__} use method=simmim (the masked image modelling of hierarchical, "
                             "windowed models: Xie et al. 2022)")
        if self.method == "mae" and getattr(encoder, "pos_embed_kind", None) in ("relative", "rope_2d"):
            raise ValueError(f"method=mae runs the encoder on the visible patches only, but pos_embed="
                             f"{encoder.pos_embed_kind!r} places tokens inside attention on the whole grid: "
                             "pre-train it with method=mpp or simmim, or build it with pos_embed=learned_1d, "
                             "learned_2d, sincos_2d or none")
        self.encoder = encoder
        self.cfg = dataclasses.replace(cfg)
        mean, std = encoder.pretrained_cfg.mean, encoder.pretrained_cfg.std
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        C = encoder.init_kwargs.get("in_chans", 3)
        p, D = self.p, encoder.num_features
        self.unit = max(1, (cfg.mask_patch_size or p) // p)
        if self.method == "mpp":
            levels = 2 ** cfg.mpp_bits
            out = {"color": levels**C, "color_4x4": min(4, p) ** 2 * levels**C, "pixels": p * p * C}[cfg.mpp_target]
            self.pretrain = MPPHead(D, out)
        elif self.method == "mae":
            dd = cfg.decoder_dim or max(32, (D // 2) // 4 * 4)
            heads = cfg.decoder_heads or max(1, dd // 32)
            if dd % heads:
                raise ValueError(f"decoder_dim={dd} must be divisible by decoder_heads={heads}")
            H, W = encoder.pretrained_cfg.input_size[1:]
            self.pretrain = MAEDecoder(D, dd, cfg.decoder_depth, heads, (H // p, W // p), encoder.num_prefix_tokens,
                                       p * p * C)
        elif self.token_subsets:
            self.pretrain = SimMIMHead(D, D, p, C)
        else:
            stride = int(encoder.feature_info[-1]["reduction"])  # pixels per token of the last stage
            if any(n % stride for n in encoder.pretrained_cfg.input_size[1:]):
                raise ValueError(f"SimMIM on {type(encoder).__name__} needs an input size divisible by {stride} (the "
                                 f"last stage's stride); got {tuple(encoder.pretrained_cfg.input_size[1:])}")
            self.pretrain = SimMIMHead(D, encoder.pixel_patch_projection().out_channels, stride, C)

    # ---- what the model says about itself (the Trainer and checkpoints read these)
    @property
    def model_name(self) -> str:
        return self.encoder.model_name

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return self.encoder.init_kwargs

    @property
    def pretrained_cfg(self) -> Any:
        return self.encoder.pretrained_cfg

    def transformer_blocks(self) -> list[nn.Module]:
        blocks = list(self.encoder.transformer_blocks())
        return blocks + list(getattr(self.pretrain, "blocks", []))

    def no_weight_decay(self) -> set[str]:
        return set(self.encoder.no_weight_decay()) | {"mask_token"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.encoder.set_grad_checkpointing(enable)

    # ---- forward
    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """The model input back in [0, 1] (the MPP colour targets are colours of the image)."""
        return x * self.std + self.mean

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return {"mpp": self._mpp, "mae": self._mae, "simmim": self._simmim}[self.method](x, generator)

    def _mpp(self, x: torch.Tensor, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        enc, cfg = self.encoder, self.cfg
        grid = enc.patch_tokens(x)  # (B, Gh, Gw, D): patch embeddings before positions
        B, Gh, Gw, D = grid.shape
        tokens = grid.reshape(B, Gh * Gw, D)
        n = Gh * Gw
        corrupt, action = mpp_corruption(B, n, self.ratio, cfg.mpp_replace, x.device, generator)
        flat = tokens.reshape(B * n, D)
        pick = (_rand((B, n), x.device, generator) * (B * n)).long().clamp(max=B * n - 1)
        other = flat[pick.flatten()].reshape(B, n, D)  # a random patch embedding of the batch
        tokens = torch.where((action == 0)[..., None], self.pretrain.mask_token.to(tokens.dtype), tokens)
        tokens = torch.where((action == 1)[..., None], other, tokens)
        out = enc.forward_tokens(enc.add_positions(tokens.reshape(B, Gh, Gw, D)), grid=(Gh, Gw))[:, enc.num_prefix_tokens:]
        pred = self.pretrain.head(out[corrupt])  # (M, out)
        target = mpp_targets(self.pixels(x), self.p, cfg.mpp_target, cfg.mpp_bits)[corrupt]
        if cfg.mpp_target == "pixels":
            loss = F.mse_loss(pred.float(), target.float())
            return {"loss": loss, "masked": corrupt.float().mean()}
        logits = pred.float().reshape(*target.shape, -1)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        acc = (logits.argmax(-1) == target).float().mean()
        return {"loss": loss, "acc": acc, "masked": corrupt.float().mean()}

    def encode_visible(self, x: torch.Tensor, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MAE's encoder pass: ``(latent, restore, mask)``; ``latent`` (B, prefix + K, D) is the
        encoder's output on the visible tokens only (the masked ones never enter a block)."""
        enc = self.encoder
        tokens = enc.add_positions(enc.patch_tokens(x))  # (B, prefix + n, D)
        P = enc.num_prefix_tokens
        B, n = tokens.shape[0], tokens.shape[1] - P
        keep, restore, mask = random_masking(B, n, self.ratio, x.device, generator)
        visible = tokens[:, P:].gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        return enc.forward_tokens(torch.cat([tokens[:, :P], visible], dim=1)), restore, mask

    def _mae(self, x: torch.Tensor, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        latent, restore, mask = self.encode_visible(x, generator)
        pred = self.pretrain(latent, restore).float()  # (B, n, p·p·C)
        target = patchify(x, self.p).float()
        if self.cfg.norm_pix_loss:
            mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mu) / (var + 1e-6) ** 0.5
        per_patch = ((pred - target) ** 2).mean(-1)
        loss = (per_patch * mask).sum() / mask.sum()
        return {"loss": loss, "masked": mask.mean()}

    def _simmim(self, x: torch.Tensor, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        enc = self.encoder
        B = x.shape[0]
        if self.token_subsets:
            grid = enc.patch_tokens(x)
            mask = block_mask(B, grid.shape[1:3], self.unit, self.ratio, x.device, generator)
            w = mask[..., None].to(grid.dtype)
            grid = grid * (1 - w) + self.pretrain.mask_token.to(grid.dtype) * w
            out = enc.forward_tokens(enc.add_positions(grid), grid=(grid.shape[1], grid.shape[2]))[:, enc.num_prefix_tokens:]
            fmap = out.reshape(B, grid.shape[1], grid.shape[2], -1)
        else:
            g = (-(-x.shape[2] // self.p), -(-x.shape[3] // self.p))
            mask = block_mask(B, g, self.unit, self.ratio, x.device, generator)
            fmap = enc.forward_features_masked(x, mask, self.pretrain.mask_token)
        rec = self.pretrain(fmap).float()[:, :, :x.shape[2], :x.shape[3]]
        px = mask.repeat_interleave(self.p, 1).repeat_interleave(self.p, 2)[:, None, :x.shape[2], :x.shape[3]]
        loss = ((x.float() - rec).abs() * px).sum() / (px.sum() + 1e-5) / x.shape[1]
        return {"loss": loss, "masked": mask.mean()}


# ---------------------------------------------------------------------------------- the task
class PretrainTask:
    """Pre-training as a :class:`~vitkit.train.Trainer` task: opens the images (labels unread),
    builds the encoder without a classifier and wraps it in :class:`MaskedImageModel`; the loss of
    ``cfg.method``; validation reports ``val_loss`` (and ``val_mpp_acc`` for MPP's colour targets) on
    fixed masks, and ``val_neg_loss`` (higher is better) decides checkpoint-best.pt."""

    name = "pretrain"
    main_metric = "val_neg_loss"

    def __init__(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg.validate()
        self.data_name = cfg.data
        self.num_classes = 0
        self.class_names: list[str] = []
        self.encoder_class = ""

    @property
    def curve_keys(self) -> tuple[str, ...] | None:
        return ("val_mpp_acc",) if self.cfg.method == "mpp" and self.cfg.mpp_target != "pixels" else None

    # ---- setup
    def build_encoder(self) -> nn.Module:
        from ..build import create_model
        from ..weights import load_weights

        cfg = self.cfg
        kwargs: dict[str, Any] = {"num_classes": 0}
        if cfg.img_size:
            kwargs["img_size"] = cfg.img_size
        if cfg.drop_path:
            kwargs["drop_path_rate"] = cfg.drop_path
        enc = create_model(cfg.model, **kwargs)
        if cfg.weights:
            log.info("initial encoder weights from %s: %s", cfg.weights, load_weights(enc, cfg.weights))
        return enc

    def build(self, dist: Any, *, model: nn.Module | None = None, train_set: Dataset | None = None,
              val_set: Dataset | None = None) -> tuple[Dataset, Dataset, nn.Module]:
        from ..data import build_dataset, eval_transform, resolve_data, train_transform
        from . import distributed as D
        from .loop import _random_subset

        cfg = self.cfg
        if model is None:
            model = MaskedImageModel(self.build_encoder(), cfg)
        elif not isinstance(model, MaskedImageModel):
            model = MaskedImageModel(model, cfg)
        enc = model.encoder
        self.encoder_class = f"{type(enc).__module__}.{type(enc).__qualname__}"
        pcfg = enc.pretrained_cfg
        size, chans = int(pcfg.input_size[-1]), int(pcfg.input_size[0])
        if train_set is None or val_set is None:
            if not dist.is_main:
                D.barrier()
            src = resolve_data(cfg.data, data_root=cfg.data_root or None, download=cfg.data_download)
            if dist.is_main:
                D.barrier()
            mode = "L" if chans == 1 else "RGB"
            if train_set is None:
                train_set = build_dataset(src, "train", train_transform(
                    size, mean=pcfg.mean, std=pcfg.std, preset=cfg.augment, interpolation=pcfg.interpolation,
                    scale=cfg.scale, hflip=cfg.hflip), mode=mode, val_fraction=cfg.val_fraction)
                if cfg.train_examples:
                    train_set = _random_subset(train_set, cfg.train_examples, cfg.seed)
            if val_set is None:
                val_set = build_dataset(src, cfg.eval_split, eval_transform(
                    size, mean=pcfg.mean, std=pcfg.std, interpolation=pcfg.interpolation, crop_pct=pcfg.crop_pct),
                    mode=mode, val_fraction=cfg.val_fraction)
        if cfg.val_examples and cfg.val_examples < len(val_set):
            n = len(val_set)
            val_set = Subset(val_set, [i * n // cfg.val_examples for i in range(cfg.val_examples)])
        if cfg.grad_checkpointing:
            model.set_grad_checkpointing(True)
        return train_set, val_set, model

    def describe(self, trainer: Any) -> str:
        from .distributed import unwrap_model

        m = unwrap_model(trainer.model)
        n_enc = sum(p.numel() for p in m.encoder.parameters())
        n_pre = sum(p.numel() for p in m.pretrain.parameters())
        return (f"pre-training {self.cfg.model} with {self.cfg.method} (mask ratio {self.cfg.ratio:g}): encoder "
                f"{n_enc / 1e6:.2f} M + {self.cfg.method} parts {n_pre / 1e6:.2f} M parameters, "
                f"{len(trainer.train_set)} unlabelled train / {len(trainer.val_set)} val images")

    # ---- the Task protocol
    def to_device(self, batch: Any, device: torch.device, channels_last: bool = False) -> dict[str, Any]:
        return {**batch, "image": batch["image"].to(device, non_blocking=True),
                "target": batch["target"].to(device, non_blocking=True)}

    def training_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        x = batch["image"]
        return model(x)["loss"], len(x)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, device: torch.device,
                 autocast: Callable[[], Any] = contextlib.nullcontext, channels_last: bool = False) -> dict[str, float]:
        from .distributed import all_reduce_sum, unwrap_model

        m = unwrap_model(model)
        was_training = m.training
        m.eval()
        g = torch.Generator().manual_seed(0)  # the same masks every evaluation; the global RNG untouched
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss·n, acc·n, n
        try:
            for batch in loader:
                x = batch["image"].to(device)
                if not len(x):
                    continue
                with autocast():
                    out = m(x, generator=g)
                n = len(x)
                sums += torch.tensor([float(out["loss"]) * n, float(out.get("acc", torch.tensor(0.0))) * n, n],
                                     dtype=torch.float64, device=device)
        finally:
            m.train(was_training)
        all_reduce_sum(sums)
        n = max(sums[2].item(), 1.0)
        row = {"val_loss": sums[0].item() / n, "val_neg_loss": -sums[0].item() / n}
        if self.cfg.method == "mpp" and self.cfg.mpp_target != "pixels":
            row["val_mpp_acc"] = sums[1].item() / n
        return row

    # ---- what the run folder keeps
    def checkpoint_meta(self) -> dict[str, Any]:
        """The encoder's class (the checkpoint rebuilds the encoder, not the wrapper) and where its
        tensors are: ``encoder.*`` the model's, ``pretrain.*`` the method's (dropped when loading)."""
        return {"task": self.name, "model_class": self.encoder_class, "pretrain_method": self.cfg.method,
                "encoder_prefix": ENCODER_PREFIX, "pretrain_prefix": PRETRAIN_PREFIX}


def pretrain(cfg: PretrainConfig, out_dir: str | Path, *, resume: bool = False, recipe: str = "",
             **kwargs: Any) -> Any:
    """Pre-train per ``cfg`` into ``out_dir`` on the Trainer (``kwargs``: its ``model``,
    ``train_set``, ``val_set``, ``callbacks``); ``resume`` continues from checkpoint-last.pt exactly."""
    from .loop import Trainer

    if resume and not (Path(out_dir) / "checkpoint-last.pt").is_file():
        raise FileNotFoundError(f"nothing to resume: {Path(out_dir) / 'checkpoint-last.pt'} does not exist")
    return Trainer(cfg, out_dir, resume=resume, recipe=recipe, task=PretrainTask(cfg), **kwargs).fit()

