"""Model kinds: version.json's `kind` picks the class, kinds load lazily, and a new kind is only a class."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rsft_plugin.answer_bank import AnswerBank
from rsft_plugin.config import Config, ModelConfig
from rsft_plugin.errors import ConfigError, ModelLoadError
from rsft_plugin.models import (
    KINDS,
    Answered,
    ResponsePolicy,
    VersionInfo,
    load_version,
    policy_class,
    pretrained_policy,
    read_version_info,
    register_kind,
)
from rsft_plugin.models.base import VERSION_FILE, FinetuneResult, TrainingPair
from rsft_plugin.models.live import LiveModel
from rsft_plugin.models.registry import Registry

from .conftest import REPO


class EchoPolicy:
    """The smallest policy a new kind needs: always answers with the bank's first answer; no torch."""

    kind: ClassVar[str] = "echo"

    def __init__(self, bank: AnswerBank, config: ModelConfig, info: VersionInfo | None = None) -> None:
        self.bank, self.config, self.info = bank, config, info

    @property
    def name(self) -> str:
        return self.info.name if self.info else "unsaved"

    def answer(self, query: str) -> Answered:
        return self.answer_many([query])[0]

    def answer_many(self, queries: list[str]) -> list[Answered]:
        first = self.bank.answers[0]
        return [Answered(first.id, first.text, first.topic, first, 1.0, 1.0, ()) for _ in queries]

    def sample_many(self, queries, k, temperature=None, rng=None, replace=False):  # noqa: ANN001
        return [[] for _ in queries]

    def finetune(self, pairs: list[TrainingPair], config: Any, progress: Any = None,
                 show_bar: bool = True) -> FinetuneResult:
        return FinetuneResult(EchoPolicy(self.bank, self.config), 0, 0, 0.0, len(pairs), 0, 0.0)

    def describe(self, name: str, parent: str | None = None, round_id: int | None = None,
                 eval_numbers: dict[str, Any] | None = None, notes: str = "") -> VersionInfo:
        return VersionInfo(name, "2026-01-01T00:00:00+00:00", "test", "0", {}, 1.0, 0, self.bank.content_hash(),
                           len(self.bank), parent=parent, round_id=round_id, eval=dict(eval_numbers or {}),
                           notes=notes, kind=self.kind)

    def save(self, directory: str | Path, info: VersionInfo) -> VersionInfo:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "answers.json").write_text(json.dumps(self.bank.to_records()), encoding="utf-8")
        (directory / VERSION_FILE).write_text(json.dumps(asdict(info)), encoding="utf-8")
        self.info = info
        return info

    @classmethod
    def load(cls, directory: str | Path, config: ModelConfig | None = None) -> EchoPolicy:
        bank = AnswerBank.from_records(json.loads((Path(directory) / "answers.json").read_text(encoding="utf-8")))
        return cls(bank, config or ModelConfig(), read_version_info(directory))

    @classmethod
    def pretrained(cls, bank: AnswerBank, config: ModelConfig) -> EchoPolicy:
        return cls(bank, config)

    def with_bank(self, bank: AnswerBank) -> EchoPolicy:
        return EchoPolicy(bank, self.config)


@pytest.fixture
def echo_kind():
    register_kind("echo", f"{__name__}:EchoPolicy")
    yield
    KINDS.pop("echo", None)


def test_a_new_kind_is_one_class_and_one_registration(tmp_path, bank, echo_kind):
    policy = pretrained_policy(bank, ModelConfig(), kind="echo")
    assert isinstance(policy, ResponsePolicy)
    registry = Registry(tmp_path / "models")
    info = registry.publish(policy, notes="echo")
    registry.set_live(info.name, "test")
    assert read_version_info(registry.live_path()).kind == "echo"
    loaded = load_version(registry.live_path())
    assert type(loaded) is EchoPolicy and loaded.name == info.name
    live = LiveModel(registry, ModelConfig())  # serving loads whatever kind the version says
    assert live.current.answer("anything").key == bank.answers[0].id


def test_the_retrieval_kind_is_recorded_and_picked_from_version_json(tmp_path, pretrained):
    info = pretrained.save(tmp_path / "v0001", pretrained.describe("v0001"))
    assert info.kind == "retrieval" == json.loads((tmp_path / "v0001" / VERSION_FILE).read_text())["kind"]
    assert type(load_version(tmp_path / "v0001")) is policy_class("retrieval")


def test_a_version_written_before_kinds_existed_loads_as_retrieval(tmp_path, pretrained):
    pretrained.save(tmp_path / "v0001", pretrained.describe("v0001"))
    path = tmp_path / "v0001" / VERSION_FILE
    raw = json.loads(path.read_text())
    del raw["kind"]
    path.write_text(json.dumps(raw))
    assert read_version_info(tmp_path / "v0001").kind == "retrieval"
    loaded = load_version(tmp_path / "v0001")
    assert loaded.answer("I forgot my password").key == pretrained.answer("I forgot my password").key


def test_an_unknown_kind_is_refused_clearly(tmp_path, pretrained):
    pretrained.save(tmp_path / "v0001", pretrained.describe("v0001"))
    path = tmp_path / "v0001" / VERSION_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "kind": "telepathy"}))
    with pytest.raises(ModelLoadError, match="unknown model kind 'telepathy'.*retrieval"):
        load_version(tmp_path / "v0001")
    with pytest.raises(ModelLoadError, match="holds a 'telepathy' model"):
        policy_class("retrieval").load(tmp_path / "v0001")
    with pytest.raises(ConfigError, match="model.kind"):
        ModelConfig(kind="telepathy")
    assert Config().model.kind == "retrieval"


def test_reading_versions_never_imports_torch():
    """The web server lists and promotes versions through these modules; they must stay free of torch."""
    code = ("import sys\n"
            "import rsft_plugin.models.base, rsft_plugin.models.kinds, rsft_plugin.models.registry\n"
            "import rsft_plugin.stages.records\n"
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stderr
