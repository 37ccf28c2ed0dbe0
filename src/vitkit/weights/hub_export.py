"""A vitkit model as a timm-format Hugging Face repo: :func:`save_pretrained` (a folder) and
:func:`push_to_hub` (a Hub repo), so that ``timm.create_model("hf-hub:org/name", pretrained=True)``
builds the same network with the same logits, and vitkit reads it back (``create_model("hf-hub:…")``).

The folder holds what timm's own ``push_to_hf_hub`` writes:

- ``config.json``: ``architecture`` (a timm model name), ``num_classes``, ``num_features``,
  ``global_pool``, ``model_args`` (every architectural argument, so timm builds exactly this network),
  ``pretrained_cfg`` (mean, std, input size, crop, interpolation, ``label_names``) and ``label_names``;
  plus a ``vitkit`` record (model name and complete ``init_kwargs``) that timm ignores and vitkit uses
  to rebuild its own model exactly (tanh GELU, norm epsilon, …);
- ``model.safetensors``: the weights in timm's key names (written with the timm format's key table,
  :mod:`vitkit.weights.formats.timm`);
- ``README.md``: a model card with the architecture, the preprocessing, the training config and the
  measured metrics of the run folder when one is given.

What timm cannot build exactly (a ViT with the original tanh ``pre_logits`` layer, a hybrid with the
official JAX stem numerics or another stem, a Swin with the absolute position embedding) is refused
with the reason.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from .formats.hub_config import TIMM_CLASSIFIER, family_of, timm_architecture, timm_state_dict, vitkit_to_timm

log = logging.getLogger(__name__)
TIMM_NAMES = {  # vitkit rows that exist in timm under the same name (the rest: the family's base name + model_args)
    *(f"vit_{s}_patch{p}_{r}" for s in ("tiny", "small", "base") for p in (16, 32) for r in (224, 384)),
    "vit_base_patch8_224", "vit_small_patch8_224", "vit_large_patch16_224", "vit_large_patch16_384",
    "vit_large_patch14_224", "vit_huge_patch14_224",
    "swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "swin_base_patch4_window7_224",
    "swin_base_patch4_window12_384", "swin_large_patch4_window7_224", "swin_large_patch4_window12_384",
    "vit_base_r50_s16_224", "vit_base_r50_s16_384",
}
MAIN_METRICS = ("val_acc1", "val_miou", "val_map")  # the tasks' main_metric keys in metrics.jsonl
CFG_FIELDS = ("mean", "std", "input_size", "crop_pct", "interpolation", "license")


def _labels(model: nn.Module) -> list[str] | None:
    labels = model.pretrained_cfg.get("labels")
    return list(labels) if labels and len(labels) == model.num_classes else None


def hub_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` of :func:`save_pretrained` (module docstring)."""
    from .. import __version__

    family = family_of(model)
    args = vitkit_to_timm(model)
    name = getattr(model, "model_name", "")
    cfg = model.pretrained_cfg
    pcfg: dict[str, Any] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()
                            if k in CFG_FIELDS and v is not None}
    pcfg.update(crop_mode="center", num_classes=model.num_classes, fixed_input_size=True,
                first_conv="patch_embed.proj", classifier=TIMM_CLASSIFIER[family])
    labels = _labels(model)
    if labels:
        pcfg["label_names"] = labels
    out: dict[str, Any] = {
        "architecture": timm_architecture(model, TIMM_NAMES),
        "num_classes": model.num_classes,
        "num_features": int(model.num_features),
        "global_pool": args["global_pool"],
        "model_args": args,
        "pretrained_cfg": pcfg,
    }
    if labels:
        out["label_names"] = labels
    out["vitkit"] = {"model": name, "model_kwargs": json.loads(json.dumps(model.init_kwargs, default=list)),
                     "version": __version__}
    return out


def _write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_pretrained(model: nn.Module, folder: str | Path, *, run_dir: str | Path | None = None,
                    metrics: Mapping[str, Any] | None = None, repo_id: str | None = None) -> Path:
    """Write ``model`` into ``folder`` as a timm-format repo (module docstring); ``run_dir`` (a vitkit
    training run folder) adds its config and measured metrics to the model card, ``metrics`` any others;
    ``repo_id`` is the Hub id the card's snippets load. Each file is written atomically. Returns the folder."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = hub_config(model)  # refuses what timm cannot build before anything is written
    state = timm_state_dict(model)
    _write(folder / "model.safetensors", save(state, metadata={"format": "pt"}))
    _write(folder / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    _write(folder / "README.md", model_card(model, config, run_dir, metrics, repo_id).encode())
    return folder


# ------------------------------------------------------------------------------- the model card
def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """What a run folder says of its training: ``config`` (config.json), ``best`` and ``last`` metrics
    rows (metrics.jsonl), ``eval`` (eval.json, when ``vitkit eval --out`` wrote one there)."""
    run = Path(run_dir)
    out: dict[str, Any] = {}
    if (run / "config.json").is_file():
        out["config"] = json.loads((run / "config.json").read_text())
    rows = []
    if (run / "metrics.jsonl").is_file():
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if rows:
        out["last"] = rows[-1]
        key = next((k for k in MAIN_METRICS if any(k in r for r in rows)), None)
        if key is not None:  # the row checkpoint-best.pt was written at (higher is better)
            out["best"] = max((r for r in rows if isinstance(r.get(key), (int, float))), key=lambda r: r[key])
    if (run / "eval.json").is_file():
        out["eval"] = json.loads((run / "eval.json").read_text())
    return out


def _table(row: Mapping[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    for k, v in row.items():
        if isinstance(v, float):
            v = f"{v:.4f}"
        if isinstance(v, (int, float, str)):
            lines.append(f"| {k} | {v} |")
    return "\n".join(lines)


def model_card(model: nn.Module, config: Mapping[str, Any], run_dir: str | Path | None = None,
               metrics: Mapping[str, Any] | None = None, repo_id: str | None = None) -> str:
    """README.md: front matter the Hub reads, what the model is, how to load it, how it was trained."""
    pcfg = config["pretrained_cfg"]
    lic = pcfg.get("license")
    front = ["---", "library_name: timm", "tags:", "- image-classification", "- timm", "- vitkit"]
    if lic:
        front.append(f"license: {lic}")
    front.append("---")
    name = config["vitkit"]["model"]
    body = [
        f"# {name} (vitkit)", "",
        f"A {'Swin Transformer' if config['pretrained_cfg']['classifier'] == 'head.fc' else 'Vision Transformer'} "
        f"image classifier with {config['num_classes']} classes, written by vitkit's `save_pretrained` in timm's "
        "repo format: timm and vitkit both build it from this folder.", "",
        "## Use", "", "```python",
        "import timm", f'model = timm.create_model("hf-hub:{repo_id or "ORG/NAME"}", pretrained=True)  # this repo', "",
        "import vitkit", f'model = vitkit.create_model("hf-hub:{repo_id or "ORG/NAME"}", pretrained=True)', "```", "",
        "## Architecture", "",
        f"vitkit model `{name}` with `{json.dumps(config['vitkit']['model_kwargs'], sort_keys=True)}`; timm "
        f"architecture `{config['architecture']}` with model_args `{json.dumps(config['model_args'], sort_keys=True)}`.", "",
        "## Preprocessing (evaluation)", "",
        f"Resize the shorter side to input / crop_pct ({pcfg.get('interpolation')}), centre-crop to "
        f"{tuple(pcfg.get('input_size', ()))[1:]}, scale to [0, 1], normalise with mean {pcfg.get('mean')} and "
        f"std {pcfg.get('std')} (crop_pct {pcfg.get('crop_pct')}).",
    ]
    labels = config.get("label_names")
    if labels:
        shown = ", ".join(labels[:10]) + (f", … ({len(labels)} in all)" if len(labels) > 10 else "")
        body += ["", f"Classes, in index order: {shown}."]
    if getattr(model.pretrained_cfg, "source", None):
        body += ["", f"Weights started from: `{model.pretrained_cfg.source}`."]
    summary = run_summary(run_dir) if run_dir is not None else {}
    if "config" in summary:
        cfg = {k: v for k, v in summary["config"].items() if k != "resolved"}
        body += ["", "## Training config", "", "The run's `config.json` (vitkit train):", "", "```json",
                 json.dumps(cfg, indent=2, sort_keys=True), "```"]
    rows = [("Best validation row", summary.get("best")), ("Last row", summary.get("last"))]
    measured = [(t, r) for t, r in rows if r]
    if measured or metrics or "eval" in summary:
        body += ["", "## Measured metrics", ""]
        for title, row in measured:
            body += [f"{title} of the run's `metrics.jsonl`:", "", _table(row), ""]
        if metrics:
            body += ["Given to save_pretrained:", "", _table(metrics), ""]
        if "eval" in summary:
            body += ["`vitkit eval` (eval.json):", "", "```json", json.dumps(summary["eval"], indent=2)[:4000], "```"]
    return "\n".join(front + [""] + body).rstrip() + "\n"


# ---------------------------------------------------------------------------------- the Hub
def push_to_hub(model: nn.Module, repo_id: str, *, run_dir: str | Path | None = None,
                metrics: Mapping[str, Any] | None = None, private: bool | None = None, token: str | None = None,
                revision: str | None = None, commit_message: str = "Upload model (vitkit save_pretrained)") -> str:
    """:func:`save_pretrained` into a temporary folder and upload it to ``repo_id`` (created if needed).
    Returns the commit's URL. Needs the network and a token (``hf auth login`` or ``HF_TOKEN``)."""
    from huggingface_hub import HfApi

    from .hf_hub import hub_offline, split_repo_id

    repo, rev = split_repo_id(repo_id)
    revision = revision or rev
    if hub_offline():
        raise ValueError(f"cannot push to {repo}: offline mode is on (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or "
                         "VITKIT_OFFLINE); write a folder with save_pretrained and upload it later "
                         "(`hf upload ORG/NAME FOLDER`)")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="vitkit-push-") as tmp:
        save_pretrained(model, tmp, run_dir=run_dir, metrics=metrics, repo_id=repo)
        api.create_repo(repo, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo, folder_path=tmp, revision=revision, commit_message=commit_message)
    url = getattr(info, "commit_url", None) or str(info)
    log.info("pushed %s to %s", getattr(model, "model_name", "the model"), url)
    return url


def run_model(run_dir: str | Path, checkpoint: str = "best", ema: bool = False) -> nn.Module:
    """The model of a finished run folder: ``checkpoint-best.pt`` (or ``last``, or a file path)."""
    from ..build import build_from_checkpoint
    from ..train.checkpoint import load_checkpoint

    run = Path(run_dir)
    path = Path(checkpoint) if checkpoint not in ("best", "last") else run / f"checkpoint-{checkpoint}.pt"
    if not path.is_file():
        have = sorted(p.name for p in run.glob("checkpoint-*.pt")) if run.is_dir() else []
        raise FileNotFoundError(f"{path} does not exist" + (f"; the run folder has {', '.join(have)}" if have else
                                "; give the --out folder of a finished vitkit train run"))
    return build_from_checkpoint(load_checkpoint(path), ema=ema).eval()


def export_run(run_dir: str | Path, *, repo_id: str | None = None, folder: str | Path | None = None,
               checkpoint: str = "best", ema: bool = False, private: bool | None = None) -> str:
    """A finished run as a timm-format repo: into ``folder`` and/or pushed to ``repo_id``; the model card
    carries the run's config and metrics. Returns where it went."""
    if not (repo_id or folder):
        raise ValueError("say where to export: a folder (--folder F) or a Hub repo (--repo ORG/NAME)")
    model = run_model(run_dir, checkpoint, ema)
    done = []
    if folder:
        done.append(str(save_pretrained(model, folder, run_dir=run_dir)))
    if repo_id:
        done.append(push_to_hub(model, repo_id, run_dir=run_dir, private=private))
    return ", ".join(done)


def push_run(run_dir: str | Path, repo_id: str) -> str:
    """The end of ``vitkit train … push_to_hub=ORG/NAME``: checkpoint-best.pt (else checkpoint-last.pt)
    pushed as a timm-format repo; a failure says the run is safe and how to push it later."""
    run = Path(run_dir)
    which = "best" if (run / "checkpoint-best.pt").is_file() else "last"
    try:
        return export_run(run, repo_id=repo_id, checkpoint=which)
    except (OSError, ValueError) as e:
        raise ValueError(f"the run in {run} finished and is saved, but pushing it to {repo_id} failed ({e}); push it "
                         f"later with: vitkit hub-export {run} --repo {repo_id}") from e
