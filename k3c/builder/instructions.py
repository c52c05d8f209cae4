"""A Dockerfile as stages of typed instructions, for the native builder.

Why a parser of our own: the native builder executes the instructions itself, so it needs them split into
flags, arguments and exec/shell forms, stages named and numbered, and global ``ARG`` values (defaults
overridden by build args) substituted into ``FROM`` as Docker does; heredocs too (``RUN <<EOF``). What
it does not understand (cache mounts seeded ``from`` a stage, ``RUN --mount=type=ssh``, ``ADD`` of
URLs or git repositories, ``COPY`` of heredocs mixed with files, ``ONBUILD`` triggers of a base, a
foreign ``--platform``) raises :class:`Unsupported` while planning, before anything is built, so the
engine can hand the whole build to buildah instead.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from k3c.builder.dockerfile import (
    Heredoc,
    arg_items,
    automatic_args,
    heredocs,
    instructions,
    platform_args,
    split_flags,
)
from k3c.builder.words import expand

__all__ = ["Instruction", "Stage", "Unsupported", "parse", "stages_needed"]

#: Instructions that only change the image config (no layer).
METADATA = frozenset({"ENV", "LABEL", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "VOLUME",
                      "STOPSIGNAL", "SHELL", "HEALTHCHECK", "ARG", "MAINTAINER", "ONBUILD"})
LAYERS = frozenset({"RUN", "COPY", "ADD"})
_FLAGS = {"RUN": {"mount", "network"}, "COPY": {"from", "chown", "chmod", "link"},
          "ADD": {"chown", "chmod", "link"}, "FROM": {"platform"}, "HEALTHCHECK": set()}
_REMOTE = re.compile(r"^(https?://|git@|git://)")


class Unsupported(Exception):
    """The native builder cannot run this Dockerfile (the reason says why); buildah can."""


@dataclass
class Instruction:
    """One instruction: ``keyword``, its ``--flags``, its words (``args``) and the original text."""

    keyword: str
    flags: dict[str, list[str]]
    args: list[str]
    text: str  #: as written (after line joining), for step lines and errors
    exec_form: bool = False  #: ``["a", "b"]`` rather than a shell string (RUN/CMD/ENTRYPOINT/SHELL)
    raw: str = ""  #: the text after the flags (a shell command keeps its quoting)
    heredocs: list[Heredoc] = field(default_factory=list)  #: of RUN/COPY/ADD (Dockerfile 1.4 syntax)

    def flag(self, name: str) -> str:
        values = self.flags.get(name) or [""]
        return values[-1]


@dataclass
class Stage:
    """``FROM base [AS name]`` and what follows it."""

    index: int
    name: str  #: lower-cased; "" when unnamed
    base: str  #: image reference, another stage's name or index, or "scratch"
    text: str  #: the FROM line
    instructions: list[Instruction] = field(default_factory=list)



def _json_list(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _heredoc_instruction(keyword: str, flags: dict[str, list[str]], body: str, text: str,
                         docs: list[Heredoc]) -> Instruction:
    """RUN/COPY/ADD with heredocs (Dockerfile 1.4 syntax).

    ``RUN <<EOF`` alone runs the heredoc as the script; ``RUN cmd <<EOF …`` goes to the shell verbatim
    (heredocs are shell syntax); ``COPY <<NAME … /dest`` writes each heredoc as a file called NAME.
    """
    first = body.split("\n", 1)[0].strip()
    if keyword == "RUN":
        if len(docs) == 1 and re.fullmatch(r"<<-?([\"']?)[A-Za-z_][A-Za-z0-9_]*\1", first):
            return Instruction(keyword, flags, [docs[0].body], text, raw=docs[0].body, heredocs=docs)
        return Instruction(keyword, flags, [body], text, raw=body, heredocs=docs)
    words = shlex.split(first, posix=True)
    if len(words) < 2 or any(not w.startswith("<<") for w in words[:-1]):
        raise Unsupported(f"{keyword} of heredocs mixed with files")
    return Instruction(keyword, flags, [d.name for d in docs] + [words[-1]], text, raw=body, heredocs=docs)


def _instruction(keyword: str, rest: str, original: str) -> Instruction:
    docs = heredocs(rest) if keyword in ("RUN", "COPY", "ADD") and "\n" in rest else []
    text = original.split("\n", 1)[0]  # what step lines show
    flags, body = split_flags(rest) if keyword in _FLAGS else ({}, rest.strip())
    allowed = _FLAGS.get(keyword, set())
    if keyword == "HEALTHCHECK":
        allowed = {"interval", "timeout", "start-period", "start-interval", "retries"}
    for name in flags:
        if name not in allowed:
            raise Unsupported(f"{keyword} --{name}")
    if docs:
        return _heredoc_instruction(keyword, flags, body, text, docs)
    exec_args = _json_list(body) if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD",
                                                "VOLUME") else None
    if exec_args is not None:
        return Instruction(keyword, flags, exec_args, original, exec_form=True, raw=body)
    if keyword in ("RUN", "CMD", "ENTRYPOINT"):
        return Instruction(keyword, flags, [body] if body else [], original, raw=body)
    try:
        words = shlex.split(body, posix=True) if keyword not in ("ENV", "LABEL", "ARG") else [body]
    except ValueError as err:
        raise Unsupported(f"cannot split {keyword} arguments: {err}") from None
    return Instruction(keyword, flags, words, original, raw=body)


def parse(text: str, build_args: Mapping[str, str], target: str = "") -> tuple[list[Stage], dict[str, str]]:
    """The Dockerfile's stages, and the global ARG values (for ``FROM`` and later ``ARG`` re-declarations)."""
    stages: list[Stage] = []
    global_args = automatic_args(build_args, target)
    for keyword, rest in instructions(text):
        original = f"{keyword} {rest}".strip()
        if keyword == "FROM":
            flags, body = split_flags(rest)
            platform = expand((flags.get("platform") or [""])[-1], global_args)
            if platform and platform not in _host_platforms():
                raise Unsupported(f"FROM --platform={platform}")
            words = body.split()
            if not words or (len(words) not in (1, 3)) or (len(words) == 3 and words[1].lower() != "as"):
                raise ValueError(f"FROM requires an image and an optional AS name: {original}")
            base = expand(words[0], global_args)
            stages.append(Stage(len(stages), words[2].lower() if len(words) == 3 else "", base, original))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"{original}: no FROM before it (only ARG may come first)")
            for name, value in arg_items(rest, global_args):
                actual = build_args.get(name, value)
                if actual is not None:
                    global_args[name] = actual
        else:
            if keyword not in METADATA and keyword not in LAYERS:
                raise ValueError(f"unknown instruction: {keyword}")
            ins = _instruction(keyword, rest, original)
            if keyword == "ADD" and any(_REMOTE.match(a) for a in ins.args[:-1]):
                raise Unsupported("ADD of a URL or git repository")
            if keyword == "RUN":
                for mount in ins.flags.get("mount", []):
                    opts = dict(kv.partition("=")[::2] for kv in mount.split(","))
                    kind = opts.get("type", "bind")
                    if kind not in ("secret", "cache", "tmpfs", "bind"):
                        raise Unsupported(f"RUN --mount=type={kind}")
                    if kind == "cache" and (opts.get("from") or opts.get("source")):
                        raise Unsupported("RUN --mount=type=cache seeded from a stage or image")
            stages[-1].instructions.append(ins)
    if not stages:
        raise ValueError("the Dockerfile has no FROM instruction")
    return stages, global_args




def _host_platforms() -> set[str]:
    own = platform_args()
    return {own["TARGETPLATFORM"], own["TARGETARCH"], f"linux/{own['TARGETARCH']}"}


def check_platform(value: str) -> None:
    """``docker build --platform``: this node's platform is accepted (a list may name only it); anything
    else is a clear error, since builds are not cross builds."""
    if not all(p.strip().lower() in _host_platforms() for p in value.split(",")):
        raise ValueError(f"cannot build for {value}: this node builds for {platform_args()['TARGETPLATFORM']} only")


def find_stage(stages: list[Stage], ref: str, before: int) -> Stage | None:
    """The stage ``ref`` names (by name or index) among those before index ``before``; None for an image."""
    ref_l = ref.lower()
    for stage in stages[:before]:
        if stage.name and stage.name == ref_l:
            return stage
    if ref.isdigit() and int(ref) < before:
        return stages[int(ref)]
    return None


def stages_needed(stages: list[Stage], target: str) -> list[Stage]:
    """The target stage (the last when ``target`` is empty) and every stage it depends on, in file order."""
    if target:
        chosen = next((s for s in stages if s.name == target.lower()), None)
        if chosen is None:
            raise ValueError(f"target stage {target!r} could not be found")
    else:
        chosen = stages[-1]
    needed: set[int] = set()

    def visit(stage: Stage) -> None:
        if stage.index in needed:
            return
        needed.add(stage.index)
        refs = [stage.base] + [ins.flag("from") for ins in stage.instructions if ins.flags.get("from")]
        refs += [dict(kv.partition("=")[::2] for kv in mount.split(",")).get("from", "")
                 for ins in stage.instructions if ins.keyword == "RUN" for mount in ins.flags.get("mount", [])]
        for ref in refs:
            dep = find_stage(stages, ref, stage.index)
            if dep is not None:
                visit(dep)

    visit(chosen)
    return [s for s in stages if s.index in needed and s.index <= chosen.index]
