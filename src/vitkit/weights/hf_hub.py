"""Model repositories on the Hugging Face Hub (``hf-hub:org/name[@revision]``) and local folders laid
out the same way (``local-dir:PATH``): what a repo's ``config.json`` says of the architecture, the
preprocessing and the labels, and its weights file, fetched through ``huggingface_hub``.

Three kinds of repo are read (:func:`read_repo`):

- **timm** (``config.json`` with ``architecture``, ``num_classes``, ``model_args``, ``pretrained_cfg``,
  maybe ``label_names``; ``model.safetensors`` or ``pytorch_model.bin`` in timm's key names), as
  timm's ``push_to_hf_hub`` writes them (``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k`` …);
- **transformers** (``config.json`` with ``model_type`` ``vit`` or ``swin`` and ``id2label``,
  ``preprocessor_config.json``; ``google/vit-base-patch16-224``, ``microsoft/swin-tiny-patch4-window7-224`` …);
- **vitkit** (what :func:`vitkit.save_pretrained` writes: a timm repo whose ``config.json`` also holds a
  ``vitkit`` record, the model name and its complete constructor arguments).

The repo becomes a :class:`~vitkit.weights.pretrained.PretrainedTag` (the architecture arguments, the
preprocessing, the label names, its Hub id as the tag's name) and its weights file a path; the one
build path (:func:`vitkit.build.build`) does the rest, converting the file with the format tables of
:mod:`vitkit.weights.formats` like any other file.

The cache is the standard Hugging Face one, read at each call: ``HF_HUB_CACHE``, else
``HUGGINGFACE_HUB_CACHE``, else ``HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``
(``~/.cache/huggingface/hub``). ``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1`` or ``VITKIT_OFFLINE=1``:
only the cache is read, and a miss names the repo, the revision, the files looked for and the folder.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .formats.hub_config import Unsupported, img_size_arg, timm_to_vitkit, transformers_to_vitkit
from .hub import TRUE

log = logging.getLogger(__name__)
HUB_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # transformers' ``resample`` (PIL codes)


def is_repo_id(name: str) -> bool:
    """Whether ``name`` names a repo (``hf-hub:…`` or ``local-dir:…``) rather than a registered model."""
    return name.startswith((HUB_PREFIX, LOCAL_PREFIX))


def split_repo_id(name: str) -> tuple[str, str | None]:
    """``"hf-hub:org/name@rev"`` → ``("org/name", "rev")``; the revision is None when not given."""
    repo = name[len(HUB_PREFIX):] if name.startswith(HUB_PREFIX) else name
    repo, _, rev = repo.partition("@")
    if repo.count("/") > 1 or not repo.strip("/"):
        raise ValueError(f"{name!r} is not a Hub repo id; write hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION")
    return repo, rev or None


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache folder, from the environment as it is now (module docstring)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "huggingface" / "hub"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` or ``VITKIT_OFFLINE`` set to 1 / true / yes / on."""
    return any(os.environ.get(v, "").lower() in TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VITKIT_OFFLINE"))


def repo_cache_folder(repo_id: str) -> Path:
    """Where huggingface_hub keeps ``repo_id``'s files (``models--org--name``)."""
    return hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"


def _offline_miss(repo_id: str, revision: str | None, names: tuple[str, ...]) -> FileNotFoundError:
    folder = repo_cache_folder(repo_id)
    rev = revision or "main"
    return FileNotFoundError(
        f"hf-hub:{repo_id} (revision {rev}): {' / '.join(names)} is not in the Hugging Face cache {folder} and "
        "offline mode is on (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or VITKIT_OFFLINE). On a machine with network "
        f"run `hf download {repo_id}{' --revision ' + rev if revision else ''}` (or load the model once), copy "
        f"{folder} to the same place here, or point HF_HUB_CACHE / HF_HOME at a cache that holds it"
    )


def hub_file(repo_id: str, filename: str, revision: str | None = None, *, required: bool = True) -> Path | None:
    """The local path of ``filename`` in ``repo_id`` at ``revision``, downloaded into the Hub cache if
    needed (offline: the cache only). None when the repo has no such file and it is not ``required``."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    from .. import __version__

    offline = hub_offline()
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=hub_cache_dir(),
                                    local_files_only=offline, library_name="vitkit", library_version=__version__))
    except LocalEntryNotFoundError as e:
        if not required:
            return None
        if offline:
            raise _offline_miss(repo_id, revision, (filename,)) from e
        raise FileNotFoundError(f"hf-hub:{repo_id}: could not fetch {filename} and it is not in the cache "
                                f"{repo_cache_folder(repo_id)} ({e}). Check the network, or set HF_HUB_OFFLINE=1 "
                                "with a cache that holds the repo") from e
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(f"hf-hub:{repo_id} does not exist on the Hub (or is private: log in with "
                                "`hf auth login`); check the spelling ORG/NAME") from e
    except RevisionNotFoundError as e:
        raise FileNotFoundError(f"hf-hub:{repo_id} has no revision {revision!r}; give a branch, tag or commit "
                                "that exists (hf-hub:ORG/NAME@REVISION)") from e
    except EntryNotFoundError as e:
        if not required:
            return None
        raise FileNotFoundError(f"hf-hub:{repo_id} (revision {revision or 'main'}) has no file {filename}") from e


@dataclass
class Repo:
    """A model repo read: its ``config.json``, the folder holding it, and which kind it is."""

    id: str  # "org/name" (Hub) or the folder (local)
    revision: str | None
    config: dict[str, Any]
    kind: str  # "timm" | "transformers" | "vitkit"
    folder: Path | None = None  # a local folder; None: the Hub
    preprocessor: dict[str, Any] = field(default_factory=dict)  # transformers' preprocessor_config.json

    @property
    def name(self) -> str:
        """How the model's ``pretrained_cfg`` names its source (timm's spelling)."""
        if self.folder is not None:
            return f"{LOCAL_PREFIX}{self.folder}"
        return f"{HUB_PREFIX}{self.id}" + (f"@{self.revision}" if self.revision else "")

    @property
    def url(self) -> str:
        if self.folder is not None:
            return str(self.folder)
        return f"https://huggingface.co/{self.id}" + (f"/tree/{self.revision}" if self.revision else "")

    def file(self, filename: str, required: bool = True) -> Path | None:
        if self.folder is not None:
            path = self.folder / filename
            if path.is_file():
                return path
            if required:
                raise FileNotFoundError(f"{self.folder} has no {filename}")
            return None
        return hub_file(self.id, filename, self.revision, required=required)

    def weights_file(self) -> Path:
        """``model.safetensors``, else ``pytorch_model.bin``; a Hub file checked against its LFS SHA-256."""
        for name in WEIGHT_FILES:
            path = self.file(name, required=False)
            if path is not None:
                if self.folder is None:
                    check_lfs_blob(path, self.name)
                return path
        if self.folder is None and hub_offline():
            raise _offline_miss(self.id, self.revision, WEIGHT_FILES)
        raise FileNotFoundError(f"{self.name} has no weights file ({' or '.join(WEIGHT_FILES)}); sharded or "
                                "other formats are not read")


def check_lfs_blob(path: Path, repo: str) -> None:
    """A cached Hub file stored by content (LFS: its blob is named by its SHA-256) is checked against that
    name once (a marker in ``$VITKIT_CACHE/hub-verified/`` saves re-hashing); a damaged one is named
    with the fix."""
    from .hub import cache_dir, sha256_of

    blob = path.resolve()
    sha = blob.name
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        return  # a small git-stored file (named by its git hash), or not a huggingface_hub cache
    marker = cache_dir().parent / "hub-verified" / sha
    if marker.is_file() and marker.read_text().strip() == str(blob.stat().st_size):
        return
    if sha256_of(blob) != sha:
        raise ValueError(f"{repo}: the cached {path.name} is damaged (its content does not match its LFS SHA-256 "
                         f"{sha}); delete {blob} and {path} (or the whole folder {blob.parent.parent}) and run again "
                         "to fetch it anew")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{blob.stat().st_size}\n")


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable JSON file ({e}); delete it to fetch it again") from e


def read_repo(name: str) -> Repo:
    """The repo ``name`` names (``hf-hub:org/name[@rev]`` or ``local-dir:PATH``; a bare folder path works
    too), its config read and its kind told."""
    if name.startswith(HUB_PREFIX):
        repo_id, revision = split_repo_id(name)
        folder = None
    else:
        folder = Path(name[len(LOCAL_PREFIX):] if name.startswith(LOCAL_PREFIX) else name).expanduser()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} holds no config.json; give a folder that save_pretrained, timm's "
                                    "save_for_hf or transformers' save_pretrained wrote")
        repo_id, revision = str(folder), None
    repo = Repo(repo_id, revision, {}, "", folder)
    repo.config = _json(repo.file("config.json"))
    cfg = repo.config
    if isinstance(cfg.get("vitkit"), Mapping):
        repo.kind = "vitkit"
    elif "architecture" in cfg:
        repo.kind = "timm"
    elif "model_type" in cfg:
        repo.kind = "transformers"
        pre = repo.file("preprocessor_config.json", required=False)
        repo.preprocessor = _json(pre) if pre is not None else {}
    else:
        raise ValueError(f"{repo.name}: config.json has neither 'architecture' (timm) nor 'model_type' "
                         "(transformers); vitkit reads timm, transformers and vitkit repos")
    return repo


# --------------------------------------------------------------------------- config → vitkit
def _labels(names: Any, num_classes: int) -> tuple[str, ...] | None:
    """Label names in class order from a list or an ``{index: name}`` mapping; None for transformers'
    placeholders (``LABEL_0`` …) or a count that is not the head's."""
    if isinstance(names, Mapping):
        try:
            items = sorted((int(k), str(v)) for k, v in names.items())
        except ValueError:
            return None
        if [i for i, _ in items] != list(range(len(items))):
            return None
        names = [v for _, v in items]
    if not isinstance(names, (list, tuple)) or len(names) != num_classes or not names:
        return None
    names = tuple(str(n) for n in names)
    return None if all(n == f"LABEL_{i}" for i, n in enumerate(names)) else names


def _refuse(repo: Repo, what: str) -> ValueError:
    return ValueError(f"{repo.name}: {what}; vitkit cannot build this architecture exactly (load it with timm "
                      "or transformers, or convert a supported variant)")


def _timm_spec(repo: Repo) -> tuple[str, dict[str, Any], dict[str, Any], Any]:
    from ..registry import is_registered

    cfg = repo.config
    arch = str(cfg["architecture"])
    if not is_registered(arch):
        raise _refuse(repo, f"the timm architecture {arch!r} is not one of vitkit's models (vitkit.list_models())")
    pcfg = dict(cfg.get("pretrained_cfg") or {})
    kwargs = _supported(repo, timm_to_vitkit, arch, cfg.get("model_args") or {})
    classes = int(cfg.get("num_classes", pcfg.get("num_classes", kwargs.get("num_classes", 1000))))
    kwargs["num_classes"] = classes
    labels = cfg.get("label_names", pcfg.get("label_names"))
    return arch, kwargs, pcfg, labels


def _transformers_spec(repo: Repo) -> tuple[str, dict[str, Any], dict[str, Any], Any]:
    arch, kwargs = _supported(repo, transformers_to_vitkit, repo.config)
    return _registered_name(arch, kwargs), kwargs, _transformers_preprocessing(repo, kwargs), repo.config.get("id2label")


def _supported(repo: Repo, fn, *args):
    try:
        return fn(*args)
    except Unsupported as e:
        raise _refuse(repo, str(e)) from None


def _registered_name(default: str, kwargs: Mapping[str, Any]) -> str:
    """The registered row with exactly these sizes (for the model's name), else ``default``."""
    from ..registry import get_entry, list_models

    family = get_entry(default).family
    keys = ("embed_dim", "depth", "num_heads", "patch_size", "img_size", "depths", "window_size")
    for name in list_models():
        row = get_entry(name)
        if row.family == family and all(row.kwargs.get(k) == kwargs[k] for k in keys if k in kwargs):
            return name
    return default


def _transformers_preprocessing(repo: Repo, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    pre = repo.preprocessor
    out: dict[str, Any] = {}
    if "image_mean" in pre:
        out["mean"], out["std"] = tuple(pre["image_mean"]), tuple(pre["image_std"])
    if pre.get("resample") in PIL_RESAMPLE:
        out["interpolation"] = PIL_RESAMPLE[pre["resample"]]
    size = pre.get("size")
    crop = pre.get("crop_size") if pre.get("do_center_crop") else None
    if isinstance(size, Mapping) and isinstance(crop, Mapping) and size.get("shortest_edge") and crop.get("height"):
        out["crop_pct"] = float(crop["height"]) / float(size["shortest_edge"])
    else:
        out["crop_pct"] = 1.0  # a resize straight to the input size: no crop
    return out


def repo_tag(repo: Repo):
    """The :class:`~vitkit.weights.pretrained.PretrainedTag` a repo amounts to: the vitkit model name,
    its constructor arguments, preprocessing (the row's where the repo says nothing) and labels, named
    by the repo's id."""
    from ..registry import get_entry, is_registered
    from .pretrained import PretrainedTag

    if repo.kind == "transformers":
        arch, kwargs, pcfg, labels = _transformers_spec(repo)
    else:
        arch, kwargs, pcfg, labels = _timm_spec(repo)
    if repo.kind == "vitkit":  # vitkit's own record: its model name (when registered) and every argument
        own = repo.config["vitkit"]
        arch = str(own["model"]) if is_registered(str(own.get("model"))) else arch
        kwargs = {**kwargs, **{k: tuple(v) if isinstance(v, list) else v for k, v in (own.get("model_kwargs") or {}).items()}}
    row = get_entry(arch).pretrained_cfg
    pcfg = {**{k: row[k] for k in ("mean", "std", "crop_pct", "interpolation") if k in row}, **pcfg}
    size = pcfg.get("input_size")
    res = img_size_arg(size[1:]) if size else kwargs.get("img_size", row.get("input_size", (3, 224, 224))[1])
    classes = int(kwargs.get("num_classes", 0))
    return PretrainedTag(arch, repo.name, repo.url, classes, res if isinstance(res, int) else res[0],
                         float(pcfg.get("crop_pct", 1.0)), tuple(pcfg.get("mean", (0.5, 0.5, 0.5))),
                         tuple(pcfg.get("std", (0.5, 0.5, 0.5))), str(pcfg.get("interpolation", "bicubic")),
                         labels=None, model_kwargs={k: v for k, v in kwargs.items() if k != "num_classes"},
                         label_names=_labels(labels, classes), license=pcfg.get("license"))


# ------------------------------------------------------------------- published tags' files
def tag_file(tag) -> Path:
    """The local file of a published tag: the vitkit cache's copy of its URL when there is one; else
    timm's Hub copy (``tag.hub_id``: the HF cache, then the Hub); else the URL, downloaded (locked,
    verified: :func:`vitkit.weights.hub.download`). Offline, a miss names both places."""
    from .hub import cache_dir, download

    local = cache_dir() / tag.filename
    if tag.hub_id is None or local.is_file():
        return download(tag.url, tag.filename, sha256=tag.sha256)
    hub_error: Exception | None = None
    try:
        return Repo(tag.hub_id, None, {}, "timm").weights_file()
    except (FileNotFoundError, OSError) as e:  # not cached offline, not reachable, or gone from the Hub
        hub_error = e
        log.info("the Hub copy hf-hub:%s is not available (%s); fetching %s", tag.hub_id, e, tag.url)
    try:
        return download(tag.url, tag.filename, sha256=tag.sha256)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}. The same weights are also read from timm's Hub copy hf-hub:{tag.hub_id} "
                                f"(model.safetensors) in the Hugging Face cache {repo_cache_folder(tag.hub_id)}, "
                                f"which failed too ({hub_error})") from e
