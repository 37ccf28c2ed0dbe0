"""list_models(pretrained=True) and `vitkit models --pretrained` (both a TypeError / usage error before)."""
from __future__ import annotations

import vitkit
from vitkit.cli import main
from vitkit.weights.pretrained import TAGS


def test_list_models_pretrained_gives_the_tagged_names():
    names = vitkit.list_models(pretrained=True)
    assert names == sorted(t.name for t in TAGS) and len(names) == len(TAGS)
    assert "vit_base_patch16_224.augreg_in21k_ft_in1k" in names
    swin = vitkit.list_models("swin_tiny_*", pretrained=True)
    assert swin and all(n.startswith("swin_tiny_patch4_window7_224.") for n in swin)
    assert vitkit.list_models("*.orig_in21k", pretrained=True) == [
        "vit_base_patch16_224.orig_in21k", "vit_base_r50_s16_224.orig_in21k", "vit_large_patch16_224.orig_in21k"]
    assert "vit_micro_patch4_32" in vitkit.list_models() and not vitkit.list_models("vit_micro_*", pretrained=True)


def test_models_command_lists_pretrained_tags(capsys):
    assert main(["models", "--pretrained", "vit_base_patch16_384"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("vit_base_patch16_384.augreg_in21k_ft_in1k") for line in out)
    assert any(line.startswith("vit_base_patch16_384.orig_in21k_ft_in1k") for line in out)
    assert main(["models", "--pretrained", "vit_micro_*"]) == 2
    assert "no pretrained weights match 'vit_micro_*'" in capsys.readouterr().err
