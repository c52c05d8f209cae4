"""`k3c completion bash|zsh`: shell completion generated from the parser itself.

Why generated: the scripts list every command and flag by walking the argparse tree, so they can never
drift from the CLI. Container and volume names come from `k3c ps -a --format '{{.Names}}'` and
`k3c volume ls -q` at completion time (fast enough: `k3c ps` is built to be instant).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from k3c.cli.common import Subcommands, add_command

NAME_KINDS = {"CONTAINER": "containers", "NAME|ID": "containers", "VOLUME": "volumes"}
FILE_FLAGS = ("--kubeconfig", "--env-file")


def register(sub: Subcommands) -> None:
    p = add_command(sub, "completion", "Output shell completion code for bash or zsh",
                    usage="k3c completion bash|zsh", global_flags=False)
    p.add_argument("shell", choices=("bash", "zsh"), metavar="SHELL", help="bash or zsh")
    p.set_defaults(func=completion_cmd)


@dataclass
class Cmd:
    """One command (or `volume` subcommand) as completion needs it."""

    name: str
    help: str
    flags: list[str] = field(default_factory=list)
    value_flags: list[str] = field(default_factory=list)
    args: str = ""  # "containers", "volumes" or ""
    subs: list[Cmd] = field(default_factory=list)


def _subparsers(parser: argparse.ArgumentParser) -> Subcommands | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def describe(parser: argparse.ArgumentParser) -> list[Cmd]:
    action = _subparsers(parser)
    if action is None:
        return []
    helps = {c.dest: c.help or "" for c in action._choices_actions}
    out = []
    for name, sub in action.choices.items():
        if name not in helps:  # an alias (volume list/remove): complete the canonical name only
            continue
        cmd = Cmd(name, helps[name], subs=describe(sub))
        for a in sub._actions:
            if a.option_strings and a.help != argparse.SUPPRESS:
                cmd.flags += a.option_strings
                if a.nargs != 0:
                    cmd.value_flags += a.option_strings
            elif not a.option_strings and isinstance(a.metavar, str):
                cmd.args = cmd.args or NAME_KINDS.get(a.metavar, "")
        out.append(cmd)
    return out


def _top() -> list[Cmd]:
    from k3c.cli.main import build_parser

    return describe(build_parser())


# ---- bash -------------------------------------------------------------------------------------------
def _bash_case(cmds: list[Cmd], prefix: str = "") -> str:
    lines = []
    for c in cmds:
        lines.append(f'        {prefix}{c.name}) opts="{" ".join(c.flags)}"; valopts="{" ".join(c.value_flags)}"; '
                     f'kind="{c.args}"; subs="{" ".join(s.name for s in c.subs)}" ;;')
        lines += _bash_case(c.subs, f"{prefix}{c.name}/").splitlines() if c.subs else []
    return "\n".join(lines)


def bash_script(cmds: list[Cmd]) -> str:
    names = " ".join(c.name for c in cmds)
    return f"""# bash completion for k3c                                  -*- shell-script -*-
# Load it with:  source <(k3c completion bash)
_k3c_names() {{
    case "$1" in
        containers) k3c ps -a --format '{{{{.Names}}}}' 2>/dev/null ;;
        volumes) k3c volume ls -q 2>/dev/null ;;
    esac
}}

_k3c() {{
    local cur prev cmd="" i w opts="" valopts="" kind="" subs="{names}"
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        if [[ " $valopts " == *" $w "* && $w == -* ]]; then
            ((i++))
            continue
        fi
        [[ $w == -* ]] && continue
        if [[ " $subs " == *" $w "* ]]; then
            cmd="${{cmd:+$cmd/}}$w"
            opts="" valopts="" kind="" subs=""
            case "$cmd" in
{_bash_case(cmds)}
            esac
        fi
    done
    if [[ -n $prev && " $valopts " == *" $prev "* ]]; then
        case "$prev" in
            {"|".join(FILE_FLAGS)}) COMPREPLY=($(compgen -f -- "$cur")) ;;
            *) COMPREPLY=() ;;
        esac
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n $subs ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    elif [[ -n $kind ]]; then
        COMPREPLY=($(compgen -W "$(_k3c_names "$kind")" -- "$cur"))
    fi
    return 0
}}
complete -F _k3c k3c
"""


# ---- zsh --------------------------------------------------------------------------------------------
def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_case(cmds: list[Cmd], prefix: str = "") -> str:
    lines = []
    for c in cmds:
        subs = " ".join(_zsh_quote(f"{s.name}:{s.help.replace(':', ' -')}") for s in c.subs)
        lines.append(f"        {prefix}{c.name}) opts=({' '.join(c.flags)}); valopts=({' '.join(c.value_flags)}); "
                     f"kind={c.args!r}; subs=({subs}) ;;")
        lines += _zsh_case(c.subs, f"{prefix}{c.name}/").splitlines() if c.subs else []
    return "\n".join(lines)


def zsh_script(cmds: list[Cmd]) -> str:
    top = " ".join(_zsh_quote(f"{c.name}:{c.help.replace(':', ' -')}") for c in cmds)
    return f"""#compdef k3c
# zsh completion for k3c. Load it with:  source <(k3c completion zsh)
# (or save it as _k3c somewhere on $fpath).

_k3c() {{
    local -a opts valopts subs names
    local cmd="" kind="" w i prev
    subs=({top})
    for ((i = 2; i < CURRENT; i++)); do
        w=${{words[i]}}
        if [[ $w == -* && ${{valopts[(Ie)$w]}} -gt 0 ]]; then
            ((i++))
            continue
        fi
        [[ $w == -* ]] && continue
        if (( ${{subs[(I)$w:*]}} )); then
            cmd=${{cmd:+$cmd/}}$w
            opts=() valopts=() kind="" subs=()
            case $cmd in
{_zsh_case(cmds)}
            esac
        fi
    done
    prev=${{words[CURRENT-1]}}
    if [[ $prev == -* && ${{valopts[(Ie)$prev]}} -gt 0 ]]; then
        case $prev in
            {"|".join(FILE_FLAGS)}) _files ;;
        esac
        return
    fi
    if [[ $PREFIX == -* ]]; then
        compadd -- $opts
    elif (( ${{#subs}} )); then
        _describe -t commands 'k3c command' subs
    elif [[ $kind == containers ]]; then
        names=(${{(f)"$(k3c ps -a --format '{{{{.Names}}}}' 2>/dev/null)"}})
        compadd -- $names
    elif [[ $kind == volumes ]]; then
        names=(${{(f)"$(k3c volume ls -q 2>/dev/null)"}})
        compadd -- $names
    fi
}}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _k3c "$@"
else
    compdef _k3c k3c
fi
"""


def completion_cmd(args: argparse.Namespace) -> int:
    cmds = _top()
    print(bash_script(cmds) if args.shell == "bash" else zsh_script(cmds), end="")
    return 0
