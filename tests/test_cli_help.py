"""Every ``vitkit`` help is fast (no torch at start-up) and says what the command does, with examples."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from vitkit.cli import COMMANDS, build_parser


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "vitkit"):
    """(name, parser) for every command and nested action (``vitkit detect train``, …)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _subparsers(sub, f"{prefix} {name}")


def _leaves():
    return [(n, p) for n, p in _subparsers(build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]


def test_building_the_parser_imports_no_torch():
    code = ("import sys, vitkit, vitkit.cli; vitkit.cli.build_parser(); "
            "bad = sorted(m for m in ('torch', 'torchvision', 'numpy', 'matplotlib') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, f"imported at start-up: {r.stdout}{r.stderr}"


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_module_adds_commands_the_help_tests_see(module):
    import importlib

    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(f"vitkit.cli.{module}").add_parsers(sub)
    seen = {n.split()[1] for n, _ in _subparsers(build_parser())}
    assert sub.choices and set(sub.choices) <= seen, (module, sorted(sub.choices))


@pytest.mark.parametrize("name,parser", _leaves(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_has_a_description_and_examples(name, parser):
    text = parser.format_help()
    assert parser.description and len(parser.description) > 20, f"{name}: no description"
    assert parser.epilog and "examples:" in parser.epilog, f"{name}: no examples"
    examples = [ln.strip() for ln in parser.epilog.splitlines() if ln.strip().startswith(("vitkit", "torchrun", "python"))]
    assert 1 <= len(examples) <= 3, f"{name}: {len(examples)} example command lines (1-3 wanted)"
    assert "``" not in text and ":mod:" not in text and "::" not in text, f"{name}: raw reST in help"


def test_help_runs_without_torch_and_exits_zero():
    code = ("import sys, runpy; sys.argv = ['vitkit', 'train', '--help']\n"
            "try:\n    import vitkit.cli; vitkit.cli.main(['train', '--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "usage: vitkit train" in r.stdout


def test_public_api_is_lazy_but_complete():
    code = ("import sys, vitkit\nassert 'torch' not in sys.modules\n"
            "for n in vitkit.__all__: getattr(vitkit, n)\n"
            "m = vitkit.create_model('vit_micro_patch4_28'); assert vitkit.list_models('swin_*')\n"
            "import vitkit.registry; assert vitkit.registry.list_models('vit_*')\n"
            "print(type(m).__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "VisionTransformer"


def test_registry_lookups_register_the_architectures_first():
    code = "import vitkit.registry as r; print(len(r.list_models()) > 10, r.is_registered('vit_base_patch16_224'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.split() == ["True", "True"], r.stderr


def test_python_dash_m_vitkit():
    r = subprocess.run([sys.executable, "-m", "vitkit", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("vitkit "), r.stderr


def test_recipe_listings_are_whole_sentences_without_markup(capsys):
    from vitkit.cli import main

    for cmd in (["segment", "recipes"], ["detect", "recipes"]):
        assert main(cmd) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines and all(line.rstrip().endswith((".", ")")) for line in lines), lines
    assert main(["train", "--list-recipes"]) == 0
    assert "``" not in capsys.readouterr().out


def test_bench_choices_match_the_runner():
    from vitkit.benchmark.peers import IMPLS
    from vitkit.benchmark.runner import DTYPES, MODES
    from vitkit.cli import bench

    from vitkit.benchmark.onnx import ORT_IMPLS

    assert (bench.MODES, bench.DTYPES, bench.IMPLS, bench.ORT_IMPLS) == (MODES, tuple(DTYPES), IMPLS, ORT_IMPLS)


def test_bash_completion_completes_commands_actions_and_options(tmp_path):
    import shutil

    if not shutil.which("bash"):
        pytest.skip("no bash")
    r = subprocess.run([sys.executable, "-m", "vitkit", "completion", "bash"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (tmp_path / "c.sh").write_text(r.stdout)
    probe = ('source c.sh; for line in "vitkit tr" "vitkit detect " "vitkit detect train --re" "vitkit train --ep"; '
             'do read -ra COMP_WORDS <<< "$line"; [[ "$line" == *" " ]] && COMP_WORDS+=(""); '
             'COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _vitkit; echo "${COMPREPLY[*]}"; done')
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, cwd=tmp_path).stdout.splitlines()
    assert out == ["train", "eval predict recipes train", "--recipe --resume", "--epochs"], out


def test_the_cli_logs_vitkit_at_info_and_other_libraries_from_warning():
    """`vitkit export` printed ~220 INFO lines of onnxscript's optimiser: the CLI shows vitkit's
    INFO messages and other libraries' warnings only."""
    code = ("import logging, vitkit.cli; vitkit.cli.main(['models', 'vit_micro_patch4_28']); "
            "logging.getLogger('onnx_ir.passes').info('NOISE'); logging.getLogger('onnx_ir').warning('WARNED'); "
            "logging.getLogger('vitkit.train').info('SHOWN')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "vit_micro_patch4_28" in out and "SHOWN" in out and "WARNED" in out and "NOISE" not in out, out
