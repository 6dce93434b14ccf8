"""Operations the CLI and the web console share: the first version, evaluating a version, rollback, and reading
rounds back.

The web server imports this module (rollback, rounds) and must never load torch: the two operations that load a
model (`create_initial_version`, `evaluate_version`, CLI only) import the model modules when they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import jobs
from .errors import RegistryError
from .live_guard import refuse_guard_rolled_back
from .log import RoundRecord
from .models import VersionInfo, load_version, prepare_machine, pretrained_policy, read_version_info
from .models.registry import Registry
from .parts import Parts

if TYPE_CHECKING:
    from .evaluate import EvalReport


@dataclass(frozen=True)
class VersionEval:
    report: EvalReport
    table: str


def create_initial_version(parts: Parts, force: bool = False, kind: str | None = None) -> tuple[VersionInfo, bool]:
    """Save the untuned model of `kind` (default: the configured `model.kind`) over the answer bank as a version,
    make it live.

    A generative version's writer is not scored here: writing a reply to every held-out question takes minutes to
    tens of minutes on CPU, so the version records the held-out accuracy of the retriever that grounds it
    (`grounding_heldout_accuracy`); its gate in a round scores the written replies.

    Returns the live version's info and whether it was created now (False: one was live already; its kind still
    prepares this machine, as `prepare_machine`).

    Raises:
        ConfigError: an unknown kind.
        ModelLoadError: the generative kind's base model is not installed (the message says how to install it).
    """
    from dataclasses import replace

    from .answer_bank import load_answer_bank
    from .evaluate import evaluate
    from .golden import load_golden

    config, registry = parts.config, parts.registry
    live = registry.live_name()
    if live and not force:
        info = read_version_info(registry.live_path())
        prepare_machine(info.kind)  # e.g. a fresh machine given an existing state folder
        return info, False
    model_config = replace(config.model, kind=kind or config.model.kind)
    bank = load_answer_bank(config.paths.answers)
    model = pretrained_policy(bank, model_config, models_dir=config.paths.models_dir)
    grounding = getattr(model, "retriever", None)  # a generative model's grounding retriever
    heldout = evaluate(grounding or model, load_golden(config.paths.golden, bank, "heldout"))
    prefix = "grounding_" if grounding is not None else ""
    info = registry.publish(model, parent=live, eval_numbers={f"{prefix}heldout_accuracy": round(heldout.accuracy, 4),
                                                               f"{prefix}heldout_n": heldout.n},
                            notes=f"untuned {model_config.kind} model")
    registry.set_live(info.name, "init-model")
    return info, True


def evaluate_version(parts: Parts, name: str | None = None, split: str | None = "heldout") -> VersionEval:
    """Accuracy of version `name` (default: live) on the golden set's `split` (None: all of it)."""
    from .evaluate import evaluate, format_report
    from .golden import load_golden

    config, registry = parts.config, parts.registry
    path = registry.version_path(name) if name else registry.live_path()
    model = load_version(path, config.model)
    report = evaluate(model, load_golden(config.paths.golden, model.bank, split))
    title = f"model {model.name} on the golden set ({split or 'all'}: {report.n} questions)"
    return VersionEval(report, format_report(report, title))


def rollback(registry: Registry, version: str | None = None, force: bool = False) -> tuple[str | None, str]:
    """Point LIVE at `version`, or at the version live before the current one; returns (previous, now).

    A version the live guard rolled back goes live again only with `force` (the same evidence must not bring it back).

    Raises:
        RegistryError: no such version, nothing to roll back to, or the guard rolled the target back (no `force`).
    """
    target = version or registry.previous_live()
    if target is None:
        raise RegistryError("there is no earlier live version to roll back to; name one (rsft versions)")
    refuse_guard_rolled_back(registry, target, force)
    return registry.set_live(target, "rollback" + (" (forced over the live guard)" if force else "")), target


def round_history(parts: Parts, limit: int = 20) -> list[RoundRecord]:
    """Rounds, newest first; rounds whose process died are marked failed first (the job sweep)."""
    jobs.sweep(parts.log)
    return parts.log.rounds(limit)


def round_record(parts: Parts, round_id: int) -> RoundRecord | None:
    """One round (after the job sweep), or None."""
    jobs.sweep(parts.log)
    return parts.log.round(round_id)
