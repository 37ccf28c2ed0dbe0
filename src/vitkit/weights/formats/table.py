"""Key tables: how one checkpoint layout maps onto vitkit's names, in both directions.

A format is a list of :class:`Rule` rows ``(source pattern, vitkit pattern, transform)`` plus a list
of source patterns it drops on purpose (each with the reason). Patterns are key names with integer
placeholders: ``{i}`` matches a number and ``{s+1}`` means "this number is s + 1", so
``"layers.{s}.downsample.norm.weight" → "stages.{s+1}.downsample.norm.weight"`` moves Swin's patch
merging from the end of a stage (official layout) to the start of the next (vitkit layout).

Tensors that vitkit fuses but a source keeps apart (q, k, v) map to ``"name#q"``, ``"name#k"``,
``"name#v"`` and are concatenated along dim 0 in that order after renaming; writing splits them.
Transforms are named pairs of pure functions (to vitkit, from vitkit).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

Tensor = torch.Tensor
PART_ORDER = ("q", "k", "v")  # fused qkv layout (ViT Eq. 5–7): rows [q; k; v]


@dataclass(frozen=True)
class Transform:
    """A named layout change: ``fwd`` maps the source tensor to vitkit's, ``inv`` maps back.
    ``inv`` receives ``ctx`` (e.g. ``num_heads``) for layouts that need a size vitkit's tensor lost."""

    name: str
    fwd: Callable[[Tensor], Tensor]
    inv: Callable[[Tensor, Mapping[str, Any]], Tensor]


IDENTITY = Transform("identity", lambda t: t, lambda t, ctx: t)


_PLACEHOLDER = re.compile(r"\{([a-z]+)([+-]\d+)?\}")


class Pattern:
    """A key name with integer placeholders, usable for matching and for formatting."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.slots: list[tuple[str, int]] = []
        parts, last = [], 0
        for m in _PLACEHOLDER.finditer(text):
            parts.append(re.escape(text[last:m.start()]))
            parts.append(r"(\d+)")
            self.slots.append((m.group(1), int(m.group(2) or 0)))
            last = m.end()
        parts.append(re.escape(text[last:]))
        self.regex = re.compile("".join(parts) + r"\Z")

    def match(self, key: str) -> dict[str, int] | None:
        m = self.regex.match(key)
        if m is None:
            return None
        values: dict[str, int] = {}
        for (name, offset), g in zip(self.slots, m.groups()):
            v = int(g) - offset
            if v < 0 or values.setdefault(name, v) != v:
                return None
        return values

    def format(self, values: Mapping[str, int]) -> str:
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)] + int(m.group(2) or 0)), self.text)


@dataclass(frozen=True)
class Rule:
    """One row of a key table: ``src`` (the format's name) ↔ ``dst`` (vitkit's name)."""

    src: str
    dst: str
    transform: Transform = IDENTITY

    @property
    def src_pattern(self) -> Pattern:
        return _compiled(self.src)

    @property
    def dst_pattern(self) -> Pattern:
        return _compiled(self.dst)


_CACHE: dict[str, Pattern] = {}


def _compiled(text: str) -> Pattern:
    if text not in _CACHE:
        _CACHE[text] = Pattern(text)
    return _CACHE[text]


@dataclass
class Converted:
    """Result of applying a key table: vitkit-named tensors, what was dropped on purpose (with the
    reason), and the source keys no rule knows."""

    state: dict[str, Tensor] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def to_vitkit(state: Mapping[str, Tensor], rules: list[Rule], ignore: Mapping[str, str]) -> Converted:
    """Rename and re-lay ``state`` with ``rules``; source keys matching ``ignore`` (pattern → reason)
    are dropped on purpose."""
    out = Converted()
    parts: dict[str, dict[str, Tensor]] = {}
    sources: dict[str, str] = {}  # vitkit name → the source key it came from
    ignore_patterns = [(_compiled(p), why) for p, why in ignore.items()]
    for key, value in state.items():
        for rule in rules:
            values = rule.src_pattern.match(key)
            if values is not None:
                name = rule.dst_pattern.format(values)
                if name in out.state or name in sources:
                    raise ValueError(f"checkpoint keys {sources.get(name)!r} and {key!r} both map to {name!r}; "
                                     "the file mixes two layouts")
                sources[name] = key
                tensor = rule.transform.fwd(value)
                if "#" in name:
                    base, part = name.split("#")
                    parts.setdefault(base, {})[part] = tensor
                else:
                    out.state[name] = tensor
                break
        else:
            why = next((w for p, w in ignore_patterns if p.match(key) is not None), None)
            if why is not None:
                out.dropped[key] = why
            else:
                out.unknown.append(key)
    for base, pieces in parts.items():
        if set(pieces) != set(PART_ORDER):
            raise ValueError(f"checkpoint has only the {sorted(pieces)} parts of {base!r}; q, k and v are all needed")
        out.state[base] = torch.cat([pieces[p] for p in PART_ORDER], dim=0)
    return out


def from_vitkit(state: Mapping[str, Tensor], rules: list[Rule], ctx: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
    """The inverse of :func:`to_vitkit`: vitkit names → the format's names and layouts. ``ctx``
    carries the sizes some layouts need (``num_heads``). Raises if a vitkit tensor has no row."""
    ctx = dict(ctx or {})
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        written: set[str] = set()  # parts of a fused tensor already written (first matching row wins)
        for rule in rules:
            base_text, _, part = rule.dst.partition("#")
            values = _compiled(base_text).match(key)
            if values is None or part in written:
                continue
            tensor = value.chunk(len(PART_ORDER), dim=0)[PART_ORDER.index(part)] if part else value
            out[rule.src_pattern.format(values)] = rule.transform.inv(tensor, ctx)
            written.add(part)
            if not part:
                break
        if not written:
            raise ValueError(f"vitkit tensor {key!r} has no place in this format; it cannot be written")
    return out


def wb(src: str, dst: str, weight: Transform = IDENTITY, bias: Transform = IDENTITY,
       names: tuple[str, str] = ("weight", "bias")) -> list[Rule]:
    """Rows for a layer's weight and bias: ``src.weight → dst.weight``, ``src.bias → dst.bias``
    (``names`` gives the source's own words, e.g. ``("kernel", "bias")`` or ``("scale", "bias")``)."""
    sep = "/" if "/" in src or names[0] in ("kernel", "scale") else "."  # Flax paths use "/"
    return [Rule(f"{src}{sep}{names[0]}", f"{dst}.weight", weight), Rule(f"{src}{sep}{names[1]}", f"{dst}.bias", bias)]
