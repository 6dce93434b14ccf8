"""Shared fixtures: the real answer bank, the real MiniLM (loaded once per session), real SQLite files in tmp_path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from rsft_plugin.answer_bank import AnswerBank, load_answer_bank
from rsft_plugin.config import Config, load_config
from rsft_plugin.model import ResponseModel
from rsft_plugin.registry import Registry

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def bank() -> AnswerBank:
    return load_answer_bank(REPO / "data" / "answers.yml")


@pytest.fixture(scope="session")
def pretrained(bank: AnswerBank) -> ResponseModel:
    """The pretrained model over the real bank; tests that change it take `fresh_model`."""
    return ResponseModel.pretrained(bank, Config().model)


@pytest.fixture
def fresh_model(pretrained: ResponseModel) -> ResponseModel:
    return ResponseModel(copy.deepcopy(pretrained.encoder), pretrained.bank, pretrained.config)


def write_config(directory: Path, **sections: dict) -> Path:
    """An rsft.yml whose data paths point at the repo's data/ and whose state lives in `directory`."""
    raw = {"paths": {"db": str(directory / "rsft.db"), "models_dir": str(directory / "models"),
                     "answers": str(REPO / "data" / "answers.yml"), "golden": str(REPO / "data" / "golden.csv"),
                     "tracker_db": str(directory / "tracker.db"), "run_dir": str(REPO / "var" / "run"),
                     "rounds_dir": str(directory / "rounds"),
                     "bot_dir": str(REPO / "bot"), "rasa_bin": str(REPO / ".venv-rasa" / "bin" / "rasa")}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = directory / "rsft.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
def live_registry(config: Config, pretrained: ResponseModel) -> Registry:
    """A models dir holding the pretrained model as v0001, live."""
    registry = Registry(config.paths.models_dir)
    info = registry.publish(pretrained, notes="test")
    registry.set_live(info.name, "test")
    return registry


def relabelled(model: ResponseModel, tag: str) -> ResponseModel:
    """Same encoder, answers prefixed with `tag`: a real, distinguishable other version."""
    bank = AnswerBank.from_records([{**r, "text": f"{tag} {r['text']}"} for r in model.bank.to_records()])
    return model.with_bank(bank)
