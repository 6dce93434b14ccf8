"""Operations on model versions that the CLI and the web console share: create the first one, evaluate one."""

from __future__ import annotations

from dataclasses import dataclass

from .answer_bank import load_answer_bank
from .config import Config
from .evaluate import EvalReport, evaluate, format_report
from .golden import load_golden
from .model import ResponseModel, VersionInfo, read_version_info
from .registry import Registry


@dataclass(frozen=True)
class VersionEval:
    report: EvalReport
    table: str


def create_initial_version(config: Config, force: bool = False) -> tuple[VersionInfo, bool]:
    """Save the pretrained encoder over the answer bank as a version and make it live.

    Returns the live version's info and whether it was created now (False: one was live already).
    """
    registry = Registry(config.paths.models_dir)
    live = registry.live_name()
    if live and not force:
        return read_version_info(registry.live_path()), False
    bank = load_answer_bank(config.paths.answers)
    model = ResponseModel.pretrained(bank, config.model)
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
    model = ResponseModel.load(path, config.model)
    report = evaluate(model, load_golden(config.paths.golden, model.bank, split))
    title = f"model {model.name} on the golden set ({split or 'all'}: {report.n} questions)"
    return VersionEval(report, format_report(report, title))
