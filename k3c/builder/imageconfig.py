"""The image a stage is building, and what the config-only instructions do to it.

A stage starts from its base's config (``Env``, ``Cmd``, ``Labels`` …), layers and history, and each
instruction updates it. ``ENV``/``LABEL``/``WORKDIR``/``USER``/``EXPOSE``/``ENTRYPOINT``/``CMD``/``VOLUME``/
``STOPSIGNAL``/``SHELL``/``HEALTHCHECK`` change only the config, with variables substituted from the
stage's environment (its ``ENV`` plus declared ``ARG`` values) as Docker does.
"""

from __future__ import annotations

import copy
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from k3c.builder.dockerfile import arg_items
from k3c.builder.instructions import Instruction, Unsupported
from k3c.builder.words import expand, expand_words, split
from k3c.cri.snapshots import LayerBlob, stack_chain_id
from k3c.timefmt import now_micro, parse_duration_ns

__all__ = ["DEFAULT_PATH", "ImageState", "apply_metadata"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


#: The instructions docker's ``--change`` accepts on ``commit`` and ``import`` (its validCommitCommands).
CHANGE_INSTRUCTIONS = frozenset({"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD",
                                 "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"})


@dataclass
class ImageState:
    """A stage's image so far: config, layers (bottom first), history, and the cache key chain."""

    config: dict[str, Any] = field(default_factory=dict)
    layers: list[LayerBlob] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    key: str = ""  #: cache key of everything that made this state
    args: dict[str, str] = field(default_factory=dict)  #: ARG values declared in the stage so far
    cmd_set: bool = False  #: CMD given in this stage (then ENTRYPOINT keeps it)

    @property
    def chain(self) -> str:
        """Chain ID of the layers: the name of their committed snapshot."""
        return stack_chain_id(self.layers)

    def env(self) -> dict[str, str]:
        """Variables for substitution and RUN: ARG values, overridden by ENV (as Docker does)."""
        out = dict(self.args)
        for item in self.config.get("Env") or []:
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def set_env(self, key: str, value: str) -> None:
        items = [e for e in self.config.get("Env") or [] if e.partition("=")[0] != key]
        self.config["Env"] = [*items, f"{key}={value}"]

    @property
    def workdir(self) -> str:
        return self.config.get("WorkingDir") or "/"

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or ["/bin/sh", "-c"])

    def fork(self) -> ImageState:
        """A copy for a stage built ``FROM`` this one (ARGs do not cross stages)."""
        return ImageState(copy.deepcopy(self.config), list(self.layers), copy.deepcopy(self.history), self.key)

    def record(self, created_by: str, empty: bool) -> None:
        entry: dict[str, Any] = {"created": now_micro(), "created_by": created_by, "comment": "k3c"}
        if empty:
            entry["empty_layer"] = True
        self.history.append(entry)

    def document(self, architecture: str, labels: dict[str, str]) -> dict[str, Any]:
        """The OCI image config JSON of this state, with ``labels`` (from the build request) added."""
        config = copy.deepcopy(self.config)
        if labels:
            config["Labels"] = {**(config.get("Labels") or {}), **labels}
        return {"created": now_micro(), "architecture": architecture, "os": "linux", "config": config,
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in self.layers]},
                "history": self.history}


def _pairs(raw: str, env: dict[str, str], keyword: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` (or the legacy ``K some value``) with variables substituted."""
    words = split(raw)
    if not words:
        raise ValueError(f"{keyword} needs at least one argument")
    if "=" not in words[0]:
        if keyword == "LABEL":
            raise ValueError(f"LABEL must be KEY=VALUE: {raw}")
        key, _, value = raw.strip().partition(" ")
        return [(key, expand(value.strip(), env))]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise ValueError(f"{keyword} must be KEY=VALUE: {word}")
        out.append((expand(key, env), expand(value, env)))
    return out


def _command(ins: Instruction, state: ImageState) -> list[str]:
    if ins.exec_form:
        return list(ins.args)
    return [*state.shell, ins.raw] if ins.raw else []


def apply_metadata(ins: Instruction, state: ImageState, build_args: dict[str, str],
                   global_args: dict[str, str] | None = None) -> str:
    """Apply a config-only instruction to ``state``; returns the history ``created_by`` text.

    ``ARG NAME`` without a value inside a stage takes the build arg, else the value of the global ``ARG``
    (before the first ``FROM``) of that name, as Docker does.
    """
    env = state.env()
    cfg = state.config
    kw = ins.keyword
    if kw == "ARG":
        for name, default in arg_items(ins.raw, env):
            if default is None:
                default = (global_args or {}).get(name)
            value = build_args.get(name, default)
            if value is not None:
                state.args[name] = value
            else:
                state.args.setdefault(name, "")
    elif kw == "ENV":
        for key, value in _pairs(ins.raw, env, "ENV"):
            state.set_env(key, value)
            env[key] = value
    elif kw == "LABEL":
        cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(_pairs(ins.raw, env, "LABEL"))}
    elif kw == "MAINTAINER":
        pass
    elif kw == "WORKDIR":
        path = expand(ins.raw.strip(), env)
        cfg["WorkingDir"] = posixpath.normpath(posixpath.join(state.workdir, path))
    elif kw == "USER":
        cfg["User"] = expand(ins.raw.strip(), env)
    elif kw == "EXPOSE":
        ports = cfg.setdefault("ExposedPorts", {})
        for port in expand_words(ins.raw, env):
            ports[port if "/" in port else f"{port}/tcp"] = {}
    elif kw in ("ENTRYPOINT", "CMD"):
        key = "Entrypoint" if kw == "ENTRYPOINT" else "Cmd"
        cfg[key] = _command(ins, state) or None
        if kw == "CMD":
            state.cmd_set = True
        elif not state.cmd_set:
            cfg["Cmd"] = None  # an ENTRYPOINT resets a CMD inherited from the base (as Docker does)
    elif kw == "VOLUME":
        vols = cfg.setdefault("Volumes", {})
        for path in ins.args if ins.exec_form else expand_words(ins.raw, env):
            vols[path] = {}
    elif kw == "STOPSIGNAL":
        cfg["StopSignal"] = expand(ins.raw.strip(), env)
    elif kw == "SHELL":
        if not ins.exec_form:
            raise ValueError("SHELL requires the arguments to be in JSON form")
        cfg["Shell"] = list(ins.args)
    elif kw == "HEALTHCHECK":
        cfg["Healthcheck"] = _healthcheck(ins)
    elif kw == "ONBUILD":
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), ins.raw]
    return f"{ins.text} # k3c"


def _healthcheck(ins: Instruction) -> dict[str, Any]:
    body = ins.raw.strip()
    word, _, rest = body.partition(" ")
    if word.upper() == "NONE":
        return {"Test": ["NONE"]}
    if word.upper() != "CMD":
        raise ValueError(f"HEALTHCHECK needs CMD or NONE: {ins.text}")
    rest = rest.strip()
    try:
        parsed = json.loads(rest) if rest.startswith("[") else None
    except ValueError:
        parsed = None
    test = ["CMD", *parsed] if isinstance(parsed, list) else ["CMD-SHELL", rest]
    check: dict[str, Any] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        if ins.flags.get(flag):
            check[key] = parse_duration_ns(ins.flag(flag))
    if ins.flags.get("retries"):
        try:
            check["Retries"] = int(ins.flag("retries"))
        except ValueError:
            raise ValueError(f"HEALTHCHECK --retries must be a number: {ins.flag('retries')}") from None
    return check


def check_onbuild(config: dict[str, Any]) -> None:
    """A base with ONBUILD triggers would need them run first: leave such builds to buildah."""
    if config.get("OnBuild"):
        raise Unsupported("the base image has ONBUILD triggers")
