"""The peers a benchmark compares vitkit with — timm, torchvision, transformers — built from a vitkit
model's configuration and loaded with *its* weights, so every implementation computes the same
function on the same inputs.

Peers are test-time references, never runtime dependencies: each is imported here, lazily, and a
missing one raises an error naming the package. Weights travel through vitkit's own importers
(:mod:`vitkit.weights.formats`) run backwards: the importer is applied to a state dict of element
*indices* of the peer's tensors, which tells where each vitkit element lives in the peer (renames,
q/k/v concatenation and transposes all move elements without changing them). The benchmark then
checks the peer's output against vitkit's.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..models.swin import SwinTransformer
from ..models.vit import VisionTransformer

IMPLS = ("vitkit", "timm", "torchvision", "transformers")


class PeerUnsupported(ValueError):
    """The peer has no equivalent of this vitkit configuration (e.g. hybrid ViT in torchvision)."""


def _import(impl: str) -> Any:
    from ..extras import require

    return require(impl, f"benchmarking against {impl}")  # names vitkit[bench] when it is missing


def _vit_config(m: VisionTransformer) -> dict[str, Any]:
    if m.stem is not None:
        raise PeerUnsupported("hybrid (ResNet stem) ViTs are benchmarked against vitkit only")
    blk = m.blocks[0]
    return dict(img_size=m.img_size, patch=m.patch_size, in_chans=m.patch_embed.proj.in_channels,
                dim=m.embed_dim, depth=len(m.blocks), heads=blk.attn.num_heads, mlp=blk.mlp.fc1.out_features,
                classes=m.num_classes, eps=blk.norm1.eps, token=m.global_pool == "token",
                gelu_tanh=getattr(blk.mlp.act, "approximate", "none") == "tanh",
                plain=m.pre_logits.__class__ is nn.Identity and isinstance(blk.ls1, nn.Identity))


def _swin_config(m: SwinTransformer) -> dict[str, Any]:
    if m.absolute_pos_embed is not None:
        raise PeerUnsupported("Swin with an absolute position embedding is benchmarked against vitkit only")
    return dict(img_size=m.img_size, patch=m.patch_size, in_chans=m.patch_embed.proj.in_channels,
                dim=m.stages[0].blocks[0].norm1.normalized_shape[0], depths=[len(s.blocks) for s in m.stages],
                heads=[s.blocks[0].attn.num_heads for s in m.stages], window=m.window_size,
                mlp_ratio=m.stages[0].blocks[0].mlp.fc1.out_features / m.stages[0].blocks[0].norm1.normalized_shape[0],
                classes=m.num_classes)


class _Logits(nn.Module):
    """transformers models take ``pixel_values`` and return an output object: unwrap to logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def _build_vit(impl: str, c: dict[str, Any]) -> nn.Module:
    if not c["plain"] or c["gelu_tanh"]:
        raise PeerUnsupported("only plain ViTs (no pre-logits layer, LayerScale or tanh-GELU) have peers here")
    if impl == "timm":
        _import("timm")
        from timm.models.vision_transformer import VisionTransformer as TimmViT

        return TimmViT(img_size=c["img_size"], patch_size=c["patch"], in_chans=c["in_chans"], num_classes=c["classes"],
                       global_pool="token" if c["token"] else "avg", class_token=c["token"], embed_dim=c["dim"],
                       depth=c["depth"], num_heads=c["heads"], mlp_ratio=c["mlp"] / c["dim"], qkv_bias=True)
    if impl == "torchvision":
        from torchvision.models.vision_transformer import VisionTransformer as TvViT

        if c["img_size"][0] != c["img_size"][1] or not c["token"] or c["in_chans"] != 3:
            raise PeerUnsupported("torchvision's ViT is square, 3-channel and class-token only")
        return TvViT(image_size=c["img_size"][0], patch_size=c["patch"], num_layers=c["depth"], num_heads=c["heads"],
                     hidden_dim=c["dim"], mlp_dim=c["mlp"], num_classes=c["classes"])
    tf = _import("transformers")
    if not c["token"]:
        raise PeerUnsupported("transformers' ViT classifier reads the class token only")
    cfg = tf.ViTConfig(hidden_size=c["dim"], num_hidden_layers=c["depth"], num_attention_heads=c["heads"],
                       intermediate_size=c["mlp"], image_size=c["img_size"][0], patch_size=c["patch"],
                       num_channels=c["in_chans"], layer_norm_eps=c["eps"], num_labels=c["classes"], qkv_bias=True,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return _Logits(tf.ViTForImageClassification(cfg))


def _build_swin(impl: str, c: dict[str, Any]) -> nn.Module:
    if impl == "timm":
        _import("timm")
        from timm.models.swin_transformer import SwinTransformer as TimmSwin

        return TimmSwin(img_size=c["img_size"], patch_size=c["patch"], in_chans=c["in_chans"], num_classes=c["classes"],
                        embed_dim=c["dim"], depths=c["depths"], num_heads=c["heads"], window_size=c["window"],
                        mlp_ratio=c["mlp_ratio"])
    if impl == "torchvision":
        from torchvision.models.swin_transformer import SwinTransformer as TvSwin

        if c["in_chans"] != 3:
            raise PeerUnsupported("torchvision's Swin takes 3-channel images only")
        return TvSwin(patch_size=[c["patch"]] * 2, embed_dim=c["dim"], depths=c["depths"], num_heads=c["heads"],
                      window_size=[c["window"]] * 2, mlp_ratio=c["mlp_ratio"], stochastic_depth_prob=0.0,
                      num_classes=c["classes"])
    tf = _import("transformers")
    cfg = tf.SwinConfig(image_size=c["img_size"][0], patch_size=c["patch"], num_channels=c["in_chans"],
                        embed_dim=c["dim"], depths=c["depths"], num_heads=c["heads"], window_size=c["window"],
                        mlp_ratio=c["mlp_ratio"], drop_path_rate=0.0, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=c["classes"])
    return _Logits(tf.SwinForImageClassification(cfg))


def _format_name(impl: str) -> str:
    return {"timm": "timm", "torchvision": "torchvision", "transformers": "transformers"}[impl]


def copy_weights_into_peer(peer: nn.Module, vitkit_state: dict[str, torch.Tensor], fmt_name: str) -> None:
    """Write vitkit's tensors into ``peer`` through vitkit's importer of ``fmt_name``, run on index
    tensors (see the module docstring). Raises if a peer parameter would stay unwritten."""
    from ..weights.formats import get_format

    target = peer.model if isinstance(peer, _Logits) else peer
    state = target.state_dict()
    index: dict[str, torch.Tensor] = {}
    offset = 0
    for key, t in state.items():
        if t.is_floating_point():
            index[key] = torch.arange(offset, offset + t.numel()).view(t.shape)
            offset += t.numel()
    converted = get_format(fmt_name).convert(index)
    flat = torch.zeros(offset)
    written = torch.zeros(offset, dtype=torch.bool)
    for key, where in converted.state.items():
        if key not in vitkit_state:
            raise ValueError(f"{fmt_name} importer produced {key!r}, which the vitkit model does not have")
        value = vitkit_state[key]
        if tuple(where.shape) != tuple(value.shape):
            raise ValueError(f"{key}: peer layout gives shape {tuple(where.shape)}, vitkit has {tuple(value.shape)}")
        flat[where.reshape(-1)] = value.detach().reshape(-1).float().cpu()
        written[where.reshape(-1)] = True
    params = {n for n, _ in target.named_parameters()}
    with torch.no_grad():
        for key, where in index.items():
            done = written[where.reshape(-1)]
            if done.all():
                state[key].copy_(flat[where.reshape(-1)].view(where.shape))
            elif key in params:
                raise ValueError(f"{fmt_name}: peer parameter {key!r} has no vitkit counterpart; weights would differ")


# One row per vitkit architecture: (read its configuration, build the peer's equivalent).
PEER_ADAPTERS: dict[type, tuple[Callable, Callable]] = {VisionTransformer: (_vit_config, _build_vit),
                                                       SwinTransformer: (_swin_config, _build_swin)}


def build_peer(impl: str, model: nn.Module) -> nn.Module:
    """``impl``'s equivalent of the vitkit ``model``, holding the same weights (eval mode)."""
    if impl == "vitkit":
        return model
    if impl not in IMPLS:
        raise ValueError(f"unknown implementation {impl!r}; choose from {', '.join(IMPLS)}")
    _import(impl)
    adapter = PEER_ADAPTERS.get(type(model))  # how each peer library spells this architecture
    if adapter is None:
        raise PeerUnsupported(f"no peers for {type(model).__name__}")
    config, build = adapter
    peer = build(impl, config(model))
    copy_weights_into_peer(peer, model.state_dict(), _format_name(impl))
    return peer.eval()
