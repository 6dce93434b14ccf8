"""Operations the CLI and the web console share: the first version, evaluating a version, rollback, and reading
rounds back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .answer_bank import load_answer_bank
from .config import Config
from .errors import RegistryError, RsftError
from .evaluate import EvalReport, evaluate, format_report
from .golden import load_golden
from .models import VersionInfo, load_version, pretrained_policy, read_version_info
from .models.registry import Registry
from .store import Store, process_alive


@dataclass(frozen=True)
class VersionEval:
    report: EvalReport
    table: str


def create_initial_version(config: Config, force: bool = False) -> tuple[VersionInfo, bool]:
    """Save the untuned model of the configured kind (`model.kind`) over the answer bank as a version, make it live.

    Returns the live version's info and whether it was created now (False: one was live already).
    """
    registry = Registry(config.paths.models_dir)
    live = registry.live_name()
    if live and not force:
        return read_version_info(registry.live_path()), False
    bank = load_answer_bank(config.paths.answers)
    model = pretrained_policy(bank, config.model)
    heldout = evaluate(model, load_golden(config.paths.golden, bank, "heldout"))
    info = registry.publish(model, parent=live, eval_numbers={"heldout_accuracy": round(heldout.accuracy, 4),
                                                               "heldout_n": heldout.n},
                            notes="pretrained all-MiniLM-L6-v2, not fine-tuned")
    registry.set_live(info.name, "init-model")
    return info, True


def evaluate_version(config: Config, name: str | None = None, split: str | None = "heldout") -> VersionEval:
    """Accuracy of version `name` (default: live) on the golden set's `split` (None: all of it)."""
    registry = Registry(config.paths.models_dir)
    path = registry.version_path(name) if name else registry.live_path()
    model = load_version(path, config.model)
    report = evaluate(model, load_golden(config.paths.golden, model.bank, split))
    title = f"model {model.name} on the golden set ({split or 'all'}: {report.n} questions)"
    return VersionEval(report, format_report(report, title))


def rollback(config: Config, version: str | None = None) -> tuple[str | None, str]:
    """Point LIVE at `version`, or at the version live before the current one; returns (previous, now).

    Raises:
        RegistryError: no such version, or nothing to roll back to.
    """
    registry = Registry(config.paths.models_dir)
    target = version or registry.previous_live()
    if target is None:
        raise RegistryError("there is no earlier live version to roll back to; name one (rsft versions)")
    return registry.set_live(target, "rollback"), target


def round_history(config: Config, limit: int = 20) -> list[dict[str, Any]]:
    """Rounds, newest first; rounds whose process died are marked failed first."""
    store = Store(config.paths.db)
    try:
        store.fail_abandoned_rounds(process_alive)
        return store.rounds(limit)
    finally:
        store.close()


def describe_round(config: Config, round_id: int) -> str:
    """A readable account of one round.

    Raises:
        RsftError: no such round.
    """
    store = Store(config.paths.db)
    try:
        store.fail_abandoned_rounds(process_alive)
        row = store.round(round_id)
    finally:
        store.close()
    if row is None:
        raise RsftError(f"there is no round {round_id} (rsft history lists them)")
    stats, gate = row["stats"], row["stats"].get("gate", {})
    lines = [f"round {row['id']}: {row['status']} — {row['reason'] or row['stage']}",
             f"  started {row['started_at']}, finished {row['finished_at'] or '-'}",
             f"  live version {row['live_version']}, rule {row['rule']}, new version {row['new_version'] or '-'}"]
    for key in ("prompts", "trainable_prompts", "gate_prompts", "replayed_prompts", "candidates",
                "rated_turns_used", "accepted", "acceptance_rate", "reward_mean"):
        if key in stats:
            lines.append(f"  {key:<18} {stats[key]}")
    if "finetune" in stats:
        tuned = stats["finetune"]
        lines.append(f"  fine-tune          {tuned['epochs']} epochs (best {tuned['best_epoch']}), "
                     f"{tuned['train_pairs']} train / {tuned['val_pairs']} val pairs, "
                     f"{tuned['examples_per_second']} examples/s")
    if gate:
        lines.append(f"  held-out accuracy  {gate['live_accuracy']:.1%} (live) -> {gate['candidate_accuracy']:.1%} "
                     f"(candidate); kept-out ratings: {gate['rated_n']}")
    if row["stage_seconds"]:
        lines.append("  seconds per stage  " + ", ".join(f"{k} {v:.1f}" for k, v in row["stage_seconds"].items()))
    if stats.get("acceptance_by_topic"):
        worst = sorted(stats["acceptance_by_topic"].items(), key=lambda item: item[1])[:5]
        lines.append("  lowest acceptance  " + ", ".join(f"{t} {r:.0%}" for t, r in worst))
    if row["report_dir"]:
        lines.append(f"  report             {row['report_dir']} (report.json and PNG plots)")
    return "\n".join(lines)
