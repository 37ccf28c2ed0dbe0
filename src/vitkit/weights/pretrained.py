"""Pretrained tags: published files, their preprocessing and their labels.

``create_model(name, pretrained=True | "tag")`` (:mod:`vitkit.build`) resolves the tag here, fetches
the file through the cache (:mod:`.hub`), builds the model the file needs (classes, pre-logits
layer, GELU form) unless the caller asked for another head, loads it strictly and records the
preprocessing and labels (:func:`labels_for`) in ``model.pretrained_cfg``. Files are the authors'
own: Google's ``.npz`` (ViT, official JAX code, tanh GELU) and Microsoft's ``.pth`` (Swin). SHA-256
sums are given where published (none are, for these files; downloads are checked for size and, from
Google's bucket, its MD5, and files load strictly).

Accuracy notes are the ImageNet top-1 that the official index lists for that exact file: the
google-research/vision_transformer README (its AugReg table) and the microsoft/Swin-Transformer
README (its ImageNet table); a tag whose file is not listed there has no figure. The original
ImageNet-21k ViT files carry a classifier their authors zeroed (for fine-tuning only): their tags
build the model headless (``num_classes=0``, features), as timm does.

Where timm keeps a copy of the same file on the Hugging Face Hub (``timm/<model>.<tag>``, converted to
its key names: the AugReg and Swin tags), the copy is read first (the HF cache, then the Hub), and the
original URL is the fallback (:func:`vitkit.weights.hf_hub.tag_file`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

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
    file_classes: int | None = None  # the published file's head size when the model is built otherwise (headless)
    label_names: tuple[str, ...] | None = None  # a repo's own class names (config.json), in class order
    license: str | None = None
    hub_id: str | None = None  # the Hub repo with the same weights (timm's copy of ``url``), tried before it

    @property
    def filename(self) -> str:
        """Cache file name: the URL's own name; the original ViT files repeat names across the
        bucket's folders (``imagenet21k/ViT-B_16.npz``, ``imagenet21k+imagenet2012/ViT-B_16.npz``),
        so those keep their folder as a prefix."""
        path = self.url.rsplit("/", 2) if self.url.startswith(VIT_NPZ) else ["", "", self.url.rsplit("/", 1)[-1]]
        name = path[-1] if path[-2] in ("", "augreg") else f"{path[-2]}_{path[-1]}"
        return name.replace("%2B", "+")

    @property
    def published_classes(self) -> int:
        """The class count of the published file's head (a headless tag's file still has one)."""
        return self.file_classes if self.file_classes is not None else self.num_classes

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


VIT_INDEX = "google-research/vision_transformer README"
SWIN_INDEX = "microsoft/Swin-Transformer README"
# ImageNet top-1 of fine-tuned files as the official indexes list them, by file name (module docstring).
OFFICIAL_TOP1 = {
    "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz":
        ("78.22", VIT_INDEX),
    "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz":
        ("83.73", VIT_INDEX),
    "swin_tiny_patch4_window7_224.pth": ("81.2", SWIN_INDEX),
    "swin_small_patch4_window7_224.pth": ("83.2", SWIN_INDEX),
    "swin_base_patch4_window7_224.pth": ("83.5", SWIN_INDEX),
    "swin_base_patch4_window12_384.pth": ("84.5", SWIN_INDEX),
    "swin_base_patch4_window7_224_22kto1k.pth": ("85.2", SWIN_INDEX),
    "swin_base_patch4_window12_384_22kto1k.pth": ("86.4", SWIN_INDEX),
    "swin_large_patch4_window7_224_22kto1k.pth": ("86.3", SWIN_INDEX),
    "swin_large_patch4_window12_384_22kto1k.pth": ("87.3", SWIN_INDEX),
}


def _note(url: str) -> str:
    top1 = OFFICIAL_TOP1.get(url.rsplit("/", 1)[-1])
    return f"ImageNet top-1 {top1[0]} ({top1[1]})" if top1 else ""


def _augreg(model: str, stem: str, res: int, ft: bool) -> PretrainedTag:
    lr = "0.01" if stem.startswith(("B_16", "L_16")) else "0.03"  # the fine-tuning run's learning rate
    suffix = f"--imagenet2012-steps_20k-lr_{lr}-res_{res}" if ft else ""
    url = f"{VIT_NPZ}augreg/{stem}{suffix}.npz"
    tag = "augreg_in21k_ft_in1k" if ft else "augreg_in21k"
    return PretrainedTag(model, tag, url, 1000 if ft else 21843, res,
                         1.0 if res == 384 else 0.9, HALF, HALF, labels="imagenet1k" if ft else "imagenet21k",
                         model_kwargs=dict(act="gelu_tanh"), note=_note(url), hub_id=f"timm/{model}.{tag}")


def _orig(model: str, path: str, res: int, classes: int) -> PretrainedTag:
    ft = classes == 1000
    kwargs: dict[str, Any] = dict(act="gelu_tanh")
    if "_r50_" in model:
        kwargs["stem_numerics"] = "jax"  # the official StdConv/GroupNorm epsilons (models.resnet_stem)
    if ft:
        return PretrainedTag(model, "orig_in21k_ft_in1k", f"{VIT_NPZ}{path}", classes, res, 1.0 if res == 384 else 0.9,
                             HALF, HALF, labels="imagenet1k", model_kwargs=kwargs, note=_note(path))
    # the 21k head is zeroed in these files ("for fine-tuning"): features only, as timm builds them
    return PretrainedTag(model, "orig_in21k", f"{VIT_NPZ}{path}", 0, res, 0.9, HALF, HALF, labels=None,
                         model_kwargs=kwargs, file_classes=classes,
                         note="features only (num_classes=0): the authors zeroed the 21k head, for fine-tuning")


def _swin(model: str, file: str, release: str, classes: int, res: int) -> PretrainedTag:
    tag = {1000: "ms_in1k", 21841: "ms_in22k"}[classes]
    if "22kto1k" in file:
        tag = "ms_in22k_ft_in1k"
    url = f"{SWIN_PTH}{release}/{file}.pth"
    return PretrainedTag(model, tag, url, classes, res, 1.0 if res == 384 else 0.875,
                         IMAGENET_MEAN, IMAGENET_STD, labels="imagenet1k" if classes == 1000 else None, note=_note(url),
                         hub_id=f"timm/{model}.{tag}")


# AugReg file stems (Steiner et al., "How to train your ViT"): the ImageNet-21k run of each size.
_AUGREG_STEMS = {
    "tiny_patch16": "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0",
    "small_patch16": "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0",
    "small_patch32": "S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0",
    "base_patch16": "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0",
    "base_patch32": "B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0",
    "large_patch16": "L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1",
}


def _table() -> list[PretrainedTag]:
    rows: list[PretrainedTag] = []
    for size, stem in _AUGREG_STEMS.items():  # fine-tuned on ImageNet-1k at 224 and 384 (first = default)
        for res in (224, 384):
            s = stem
            if size == "base_patch32" and res == 384:  # the 384 B/32 fine-tune starts from another run
                s = "B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0"
            rows.append(_augreg(f"vit_{size}_{res}", s, res, ft=True))
        rows.append(_augreg(f"vit_{size}_224", stem, 224, ft=False))
    rows += [  # the paper's original ImageNet-21k files: tanh pre-logits layer + a zeroed 21,843-class head
        _orig("vit_base_patch16_224", "imagenet21k/ViT-B_16.npz", 224, 21843),
        _orig("vit_large_patch16_224", "imagenet21k/ViT-L_16.npz", 224, 21843),
        _orig("vit_base_r50_s16_224", "imagenet21k/R50%2BViT-B_16.npz", 224, 21843),
        _orig("vit_base_patch16_384", "imagenet21k%2Bimagenet2012/ViT-B_16.npz", 384, 1000),
        _orig("vit_base_patch16_224", "imagenet21k%2Bimagenet2012/ViT-B_16-224.npz", 224, 1000),
        _orig("vit_large_patch16_384", "imagenet21k%2Bimagenet2012/ViT-L_16.npz", 384, 1000),
        _orig("vit_large_patch16_224", "imagenet21k%2Bimagenet2012/ViT-L_16-224.npz", 224, 1000),
        _orig("vit_base_r50_s16_384", "imagenet21k%2Bimagenet2012/R50%2BViT-B_16.npz", 384, 1000),
    ]
    rows += [  # Swin: official releases (Swin paper Table 1)
        _swin("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224", "v1.0.0", 1000, 224),
        _swin("swin_small_patch4_window7_224", "swin_small_patch4_window7_224", "v1.0.0", 1000, 224),
        _swin("swin_base_patch4_window7_224", "swin_base_patch4_window7_224", "v1.0.0", 1000, 224),
        _swin("swin_base_patch4_window12_384", "swin_base_patch4_window12_384", "v1.0.0", 1000, 384),
        _swin("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224_22k", "v1.0.8", 21841, 224),
        _swin("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224_22kto1k_finetune", "v1.0.8", 1000, 224),
        _swin("swin_small_patch4_window7_224", "swin_small_patch4_window7_224_22k", "v1.0.8", 21841, 224),
        _swin("swin_small_patch4_window7_224", "swin_small_patch4_window7_224_22kto1k_finetune", "v1.0.8", 1000, 224),
        _swin("swin_base_patch4_window7_224", "swin_base_patch4_window7_224_22k", "v1.0.0", 21841, 224),
        _swin("swin_base_patch4_window7_224", "swin_base_patch4_window7_224_22kto1k", "v1.0.0", 1000, 224),
        _swin("swin_base_patch4_window12_384", "swin_base_patch4_window12_384_22k", "v1.0.0", 21841, 384),
        _swin("swin_base_patch4_window12_384", "swin_base_patch4_window12_384_22kto1k", "v1.0.0", 1000, 384),
        _swin("swin_large_patch4_window7_224", "swin_large_patch4_window7_224_22kto1k", "v1.0.0", 1000, 224),
        _swin("swin_large_patch4_window7_224", "swin_large_patch4_window7_224_22k", "v1.0.0", 21841, 224),
        _swin("swin_large_patch4_window12_384", "swin_large_patch4_window12_384_22kto1k", "v1.0.0", 1000, 384),
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


def find_tag_by_filename(filename: str, info: Mapping[str, Any] | None = None) -> PretrainedTag | None:
    """The tag whose published file a local copy is (to recover its preprocessing and labels).

    Names repeat across the official bucket's folders (``imagenet21k/ViT-B_16.npz`` is the 21k file,
    ``imagenet21k+imagenet2012/ViT-B_16.npz`` the 1k file at 384, and ``wget`` keeps only the name), so
    the file's contents decide: ``info`` (:func:`vitkit.weights.inspect.infer_architecture`'s reading:
    head size, position-embedding grid, width) must fit the tag. An ambiguous name without ``info``,
    or contents that fit no candidate, give None."""
    base = Path(filename).name
    named = [t for t in TAGS if base in (t.filename, t.url.rsplit("/", 1)[-1].replace("%2B", "+"))]
    if info is not None:
        named = [t for t in named if _fits(t, info)]
    return named[0] if len(named) == 1 else None


def _fits(tag: PretrainedTag, info: Mapping[str, Any]) -> bool:
    """Whether a file ``info`` describes can be ``tag``'s: its head size, width and (when seen) grid."""
    from ..registry import get_entry

    if info.get("num_classes") != tag.published_classes:
        return False
    row = get_entry(tag.model).kwargs
    kw = info.get("kwargs") or {}
    if kw.get("embed_dim") not in (None, row.get("embed_dim")):
        return False
    grid = info.get("grid")
    stride = row.get("patch_size", 16) * (16 if row.get("stem_depths") else 1)
    return grid is None or grid * stride == tag.input_size


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
