"""Pretrained tags: published files, their preprocessing and their labels.

``create_model(name, pretrained=True | "tag")`` (:mod:`vitkit.build`) resolves the tag here, fetches
the file through the cache (:mod:`.hub`), builds the model the file needs (classes, pre-logits
layer, GELU form) unless the caller asked for another head, loads it strictly and records the
preprocessing and labels (:func:`labels_for`) in ``model.pretrained_cfg``. Files are the authors'
own: Google's ``.npz`` (ViT, official JAX code, tanh GELU) and Microsoft's ``.pth`` (Swin). SHA-256
sums are given where published (none are, for these files, so they are verified only by their
loading strictly).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

VIT_NPZ = "https://storage.googleapis.com/vit_models/"
SWIN_PTH = "https://github.com/SwinTransformer/storage/releases/download/"
HALF = (0.5, 0.5, 0.5)  # ViT: inputs scaled to [-1, 1]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedTag:
    """One published checkpoint for one registered model name."""

    model: str
    tag: str
    url: str
    num_classes: int
    input_size: int
    crop_pct: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    labels: str | None = None  # "imagenet1k" or "imagenet21k" (both shipped) or None (indices only)
    sha256: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    label_names: tuple[str, ...] | None = None  # a repo's own class names (config.json), in class order
    license: str | None = None
    hub_id: str | None = None  # the Hub repo holding the same file (timm's copy), tried before ``url``

    @property
    def filename(self) -> str:
        """Cache file name: the URL's own name; the original ViT files repeat names across the
        bucket's folders (``imagenet21k/ViT-B_16.npz``, ``imagenet21k+imagenet2012/ViT-B_16.npz``),
        so those keep their folder as a prefix."""
        path = self.url.rsplit("/", 2) if self.url.startswith(VIT_NPZ) else ["", "", self.url.rsplit("/", 1)[-1]]
        name = path[-1] if path[-2] in ("", "augreg") else f"{path[-2]}_{path[-1]}"
        return name.replace("%2B", "+")

    @property
    def name(self) -> str:
        """``model.tag``; a repo's tag is its id already (``hf-hub:org/name``, ``local-dir:PATH``)."""
        return self.tag if ":" in self.tag else f"{self.model}.{self.tag}"

    def cfg(self) -> dict[str, Any]:
        out = dict(mean=self.mean, std=self.std, input_size=(len(self.mean), self.input_size, self.input_size),
                   crop_pct=self.crop_pct, interpolation=self.interpolation, tag=self.name, url=self.url,
                   num_classes=self.num_classes, label_set=self.labels)
        if self.label_names is not None:
            out["labels"] = list(self.label_names)
        if self.license is not None:
            out["license"] = self.license
        return out


def _augreg(model: str, stem: str, res: int, ft: bool, note: str = "") -> PretrainedTag:
    lr = "0.01" if stem.startswith(("B_16", "L_16")) else "0.03"  # the fine-tuning run's learning rate
    suffix = f"--imagenet2012-steps_20k-lr_{lr}-res_{res}" if ft else ""
    return PretrainedTag(model, "augreg_in21k_ft_in1k" if ft else "augreg_in21k",
                         f"{VIT_NPZ}augreg/{stem}{suffix}.npz", 1000 if ft else 21843, res,
                         1.0 if res == 384 else 0.9, HALF, HALF, labels="imagenet1k" if ft else "imagenet21k",
                         model_kwargs=dict(act="gelu_tanh"), note=note)


def _orig(model: str, path: str, res: int, classes: int, note: str = "") -> PretrainedTag:
    ft = classes == 1000
    kwargs: dict[str, Any] = dict(act="gelu_tanh")
    if "_r50_" in model:
        kwargs["stem_numerics"] = "jax"  # the official StdConv/GroupNorm epsilons (models.resnet_stem)
    return PretrainedTag(model, "orig_in21k_ft_in1k" if ft else "orig_in21k", f"{VIT_NPZ}{path}", classes, res,
                         1.0 if res == 384 else 0.9, HALF, HALF, labels="imagenet1k" if ft else "imagenet21k",
                         model_kwargs=kwargs, note=note)


def _swin(model: str, file: str, release: str, classes: int, res: int, note: str = "") -> PretrainedTag:
    tag = {1000: "ms_in1k", 21841: "ms_in22k"}[classes]
    if "22kto1k" in file:
        tag = "ms_in22k_ft_in1k"
    return PretrainedTag(model, tag, f"{SWIN_PTH}{release}/{file}.pth", classes, res, 1.0 if res == 384 else 0.875,
                         IMAGENET_MEAN, IMAGENET_STD, labels="imagenet1k" if classes == 1000 else None, note=note)


# AugReg file stems (Steiner et al., "How to train your ViT"): the ImageNet-21k run of each size.
_AUGREG_STEMS = {
    "tiny_patch16": "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0",
    "small_patch16": "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0",
    "small_patch32": "S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0",
    "base_patch16": "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0",
    "base_patch32": "B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0",
    "large_patch16": "L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1",
}
_AUGREG_TOP1_384 = {"tiny_patch16": "78.22", "small_patch16": "83.73", "base_patch16": "85.49",
                    "large_patch16": "85.59", "base_patch32": "83.59"}


def _table() -> list[PretrainedTag]:
    rows: list[PretrainedTag] = []
    for size, stem in _AUGREG_STEMS.items():  # fine-tuned on ImageNet-1k at 224 and 384 (first = default)
        for res in (224, 384):
            s = stem
            if size == "base_patch32" and res == 384:  # the 384 B/32 fine-tune starts from another run
                s = "B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0"
            top1 = _AUGREG_TOP1_384.get(size) if res == 384 else None
            rows.append(_augreg(f"vit_{size}_{res}", s, res, ft=True,
                                note=f"ImageNet top-1 {top1} (REFERENCE.md)" if top1 else ""))
        rows.append(_augreg(f"vit_{size}_224", stem, 224, ft=False))
    rows += [  # the paper's original ImageNet-21k files: tanh pre-logits layer + 21,843-class head
        _orig("vit_base_patch16_224", "imagenet21k/ViT-B_16.npz", 224, 21843),
        _orig("vit_large_patch16_224", "imagenet21k/ViT-L_16.npz", 224, 21843),
        _orig("vit_base_r50_s16_224", "imagenet21k/R50%2BViT-B_16.npz", 224, 21843),
        _orig("vit_base_patch16_384", "imagenet21k%2Bimagenet2012/ViT-B_16.npz", 384, 1000,
              note="ImageNet top-1 84.53 (official repo)"),
        _orig("vit_base_patch16_224", "imagenet21k%2Bimagenet2012/ViT-B_16-224.npz", 224, 1000),
        _orig("vit_large_patch16_384", "imagenet21k%2Bimagenet2012/ViT-L_16.npz", 384, 1000),
        _orig("vit_large_patch16_224", "imagenet21k%2Bimagenet2012/ViT-L_16-224.npz", 224, 1000),
        _orig("vit_base_r50_s16_384", "imagenet21k%2Bimagenet2012/R50%2BViT-B_16.npz", 384, 1000),
    ]
    rows += [  # Swin: official releases (Swin paper Table 1)
        _swin("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224", "v1.0.0", 1000, 224, "paper top-1 81.3"),
        _swin("swin_small_patch4_window7_224", "swin_small_patch4_window7_224", "v1.0.0", 1000, 224, "paper top-1 83.0"),
        _swin("swin_base_patch4_window7_224", "swin_base_patch4_window7_224", "v1.0.0", 1000, 224, "paper top-1 83.5"),
        _swin("swin_base_patch4_window12_384", "swin_base_patch4_window12_384", "v1.0.0", 1000, 384, "paper top-1 84.5"),
        _swin("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224_22k", "v1.0.8", 21841, 224),
        _swin("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224_22kto1k_finetune", "v1.0.8", 1000, 224),
        _swin("swin_small_patch4_window7_224", "swin_small_patch4_window7_224_22k", "v1.0.8", 21841, 224),
        _swin("swin_small_patch4_window7_224", "swin_small_patch4_window7_224_22kto1k_finetune", "v1.0.8", 1000, 224),
        _swin("swin_base_patch4_window7_224", "swin_base_patch4_window7_224_22k", "v1.0.0", 21841, 224),
        _swin("swin_base_patch4_window7_224", "swin_base_patch4_window7_224_22kto1k", "v1.0.0", 1000, 224),
        _swin("swin_base_patch4_window12_384", "swin_base_patch4_window12_384_22k", "v1.0.0", 21841, 384),
        _swin("swin_base_patch4_window12_384", "swin_base_patch4_window12_384_22kto1k", "v1.0.0", 1000, 384, "paper top-1 86.4"),
        _swin("swin_large_patch4_window7_224", "swin_large_patch4_window7_224_22kto1k", "v1.0.0", 1000, 224, "paper top-1 86.3"),
        _swin("swin_large_patch4_window7_224", "swin_large_patch4_window7_224_22k", "v1.0.0", 21841, 224),
        _swin("swin_large_patch4_window12_384", "swin_large_patch4_window12_384_22kto1k", "v1.0.0", 1000, 384, "paper top-1 87.3"),
        _swin("swin_large_patch4_window12_384", "swin_large_patch4_window12_384_22k", "v1.0.0", 21841, 384),
    ]
    return rows


TAGS: list[PretrainedTag] = _table()


def list_pretrained(pattern: str = "*") -> list[str]:
    """``model.tag`` names of every published checkpoint whose model name matches ``pattern``."""
    import fnmatch

    return [t.name for t in TAGS if fnmatch.fnmatch(t.model, pattern)]


def get_pretrained(model: str, tag: bool | str = True) -> PretrainedTag:
    """The tag row for ``model``: ``True`` gives its default (the first listed)."""
    rows = [t for t in TAGS if t.model == model]
    if not rows:
        have = sorted({t.model for t in TAGS})
        raise ValueError(f"no pretrained weights are registered for {model!r}; models with weights: "
                         f"{', '.join(have)}. Or load a file with vitkit.load_weights(model, PATH)")
    if tag is True:
        return rows[0]
    for t in rows:
        if t.tag == tag or t.name == tag:
            return t
    raise ValueError(f"{model!r} has no pretrained tag {tag!r}; choose one of {', '.join(t.tag for t in rows)}")


def find_tag_by_filename(filename: str) -> PretrainedTag | None:
    """The tag whose published file has this name (to recover preprocessing for a local copy)."""
    base = Path(filename).name
    for t in TAGS:
        if base in (t.filename, t.url.rsplit("/", 1)[-1].replace("%2B", "+")):
            return t
    return None


@functools.lru_cache(maxsize=1)
def imagenet1k_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, in class-index order (shipped in ``vitkit/assets``)."""
    text = resources.files("vitkit").joinpath("assets/imagenet1k_labels.txt").read_text(encoding="utf-8")
    labels = tuple(line for line in text.splitlines() if line)
    if len(labels) != 1000:
        raise RuntimeError(f"vitkit/assets/imagenet1k_labels.txt has {len(labels)} names, expected 1000; reinstall vitkit")
    return labels


@functools.lru_cache(maxsize=1)
def imagenet21k_synsets() -> tuple[tuple[str, str], ...]:
    """The 21,843 classes of the ImageNet-21k release the ViT paper pre-trained on (fall 2011), in the
    class-index order of the official ViT checkpoints (WordNet ids sorted): ``(wnid, lemmas)`` pairs,
    e.g. ``("n00004475", "organism, being")``. Shipped in ``vitkit/assets``.

    The Swin ImageNet-22k checkpoints (21,841 classes) use another list and order, not shipped:
    their predictions are class indices."""
    import gzip

    raw = resources.files("vitkit").joinpath("assets/imagenet21k_labels.tsv.gz").read_bytes()
    rows = tuple(tuple(line.split("\t", 1)) for line in gzip.decompress(raw).decode("utf-8").splitlines() if line)
    if len(rows) != 21843:
        raise RuntimeError(f"vitkit/assets/imagenet21k_labels.tsv.gz has {len(rows)} classes, expected 21843; "
                           "reinstall vitkit")
    return rows  # type: ignore[return-value]


def labels_for(kind: str | None, num_classes: int) -> list[str] | None:
    """Class names for a label set (``"imagenet1k"``: 1,000; ``"imagenet21k"``: 21,843), or None
    when ``num_classes`` is not that set's size."""
    if kind == "imagenet1k" and num_classes == 1000:
        return list(imagenet1k_labels())
    if kind == "imagenet21k" and num_classes == 21843:
        return [lemmas for _, lemmas in imagenet21k_synsets()]
    return None
