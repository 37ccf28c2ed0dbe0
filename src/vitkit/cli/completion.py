"""``vitkit completion bash|zsh``: a shell completion script for the commands and their options,
generated from the parser itself (so it never falls behind), with no extra package needed."""
from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from . import add_command

    p = add_command(sub, "completion", help="print a shell completion script (bash or zsh)",
                    description="Print a completion script for bash (zsh through its bashcompinit) that "
                    "completes vitkit's commands, their actions and their options. Load it in the current "
                    "shell, or add the eval line to ~/.bashrc.",
                    examples=['eval "$(vitkit completion bash)"        # this shell',
                              "vitkit completion bash > ~/.local/share/bash-completion/completions/vitkit"])
    p.add_argument("shell", nargs="?", default="bash", choices=("bash", "zsh"))
    p.set_defaults(func=run)


def _words(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, argparse.ArgumentParser]]:
    opts = [s for a in parser._actions for s in a.option_strings]
    subs: dict[str, argparse.ArgumentParser] = {}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            subs.update(a.choices)
    return opts, subs


def script(parser: argparse.ArgumentParser) -> str:
    """The bash script: one case per command path ("train", "detect train", …)."""
    cases = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        opts, subs = _words(p)
        cases.append(f'        "{path}") words="{" ".join(sorted(subs) + opts)}" ;;')
        for name, sp in subs.items():
            walk(sp, f"{path} {name}".strip())

    walk(parser, "")
    return "\n".join([
        "# vitkit completion (vitkit completion bash); zsh: autoload -U bashcompinit && bashcompinit first",
        "_vitkit() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" path="" i w words',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        w="${COMP_WORDS[i]}"',
        '        case "$w" in -*) continue ;; esac',
        '        case " $(_vitkit_words "$path") " in *" $w "*) path="${path:+$path }$w" ;; esac',
        "    done",
        '    words="$(_vitkit_words "$path")"',
        '    if [[ "$cur" != -* ]]; then words="$(printf "%s\\n" $words | grep -v "^-")"; fi',
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        '    [[ ${#COMPREPLY[@]} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))',
        "}",
        "_vitkit_words() {",
        "    local words",
        '    case "$1" in',
        *cases,
        "    esac",
        '    echo "$words"',
        "}",
        "complete -o filenames -F _vitkit vitkit",
        "",
    ])


def run(args: argparse.Namespace) -> int:
    from . import build_parser

    text = script(build_parser())
    if args.shell == "zsh":
        text = "autoload -U +X bashcompinit && bashcompinit\n" + text
    print(text, end="")
    return 0
