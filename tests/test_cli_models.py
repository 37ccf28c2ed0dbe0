"""`vitkit models` and the CLI's error handling."""
from __future__ import annotations

from vitkit.cli import main


def test_models_lists_and_counts(capsys):
    assert main(["models", "swin_tiny_*", "--params"]) == 0
    out = capsys.readouterr().out
    assert "swin_tiny_patch4_window7_224" in out and "28.29 M" in out


def test_models_unknown_pattern_is_a_clear_error(capsys):
    assert main(["models", "resnet*"]) == 2
    assert "no model matches 'resnet*'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: vitkit" in capsys.readouterr().out
