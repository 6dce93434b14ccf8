"""Model kinds by name, as version.json's `kind` names them; a kind's module is imported only when it is used.

As transformers maps a checkpoint's `model_type` to a class, `load_version` reads the version's kind and hands
the directory to that kind's class. Adding a kind (e.g. a generative model) is one class implementing
`ResponsePolicy` plus one line in `KINDS`; nothing that loads, serves or trains models changes.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, ModelLoadError
from .base import DEFAULT_KIND, ResponsePolicy, read_version_info

if TYPE_CHECKING:
    from ..answer_bank import AnswerBank
    from ..config import ModelConfig

# name -> "module:Class"; imported lazily so that reading versions never loads torch
KINDS: dict[str, str] = {
    DEFAULT_KIND: "rsft_plugin.models.retrieval:ResponseModel",
    "generative": "rsft_plugin.generative.policy:GenerativePolicy",
}


def register_kind(name: str, target: str) -> None:
    """Make `name` loadable: `target` is "package.module:Class", a class implementing ResponsePolicy."""
    if ":" not in target:
        raise ValueError(f"kind target {target!r} must look like 'package.module:Class'")
    KINDS[name] = target


def policy_class(kind: str) -> type[ResponsePolicy]:
    """The class of model kind `kind`, imported now.

    Raises:
        ConfigError: no such kind.
    """
    try:
        module_name, class_name = KINDS[kind].split(":")
    except KeyError as exc:
        raise ConfigError(f"model.kind: unknown model kind {kind!r}; valid kinds are {sorted(KINDS)}") from exc
    return getattr(importlib.import_module(module_name), class_name)


def load_version(directory: str | Path, config: ModelConfig | None = None) -> ResponsePolicy:
    """Load the saved version in `directory` with the class its version.json names.

    Raises:
        ModelLoadError: missing or damaged version, or a kind this installation does not know.
    """
    info = read_version_info(directory)
    try:
        cls = policy_class(info.kind)
    except ConfigError as exc:
        raise ModelLoadError(f"{directory}: {exc}") from exc
    return cls.load(directory, config)


def prepare_machine(kind: str) -> None:
    """Let kind `kind` do its once-per-machine work now rather than in the first server that loads one of its
    versions (the generative kind compiles its 4-bit decode kernel); a kind without a `prepare_machine`
    classmethod has none. Its failures are warnings of that kind, never errors here.

    Raises:
        ConfigError: no such kind.
    """
    prepare = getattr(policy_class(kind), "prepare_machine", None)
    if prepare is not None:
        prepare()


def pretrained_policy(bank: AnswerBank, config: ModelConfig, kind: str | None = None,
                      models_dir: str | Path | None = None) -> ResponsePolicy:
    """The untuned model of `kind` (default: the configured `model.kind`) over `bank`; `models_dir`: where its
    versions will live (the generative kind converts its base checkpoint into <models_dir>/base-models), passed
    only to a kind whose `pretrained` takes it, so a kind written against the two-argument form keeps working."""
    cls = policy_class(kind or getattr(config, "kind", DEFAULT_KIND))
    if models_dir is not None and "models_dir" in inspect.signature(cls.pretrained).parameters:
        return cls.pretrained(bank, config, models_dir=models_dir)
    return cls.pretrained(bank, config)
