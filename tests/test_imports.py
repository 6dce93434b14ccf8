"""Import boundaries between processes: the web server (chat page, console, operator API) never loads a model, so
importing it and building its app must not load torch, transformers or sentence-transformers.

The check runs in a fresh interpreter: this test process has long imported the model for other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import write_config

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "sentence_transformers")

# Imports the web app, builds it from the config at argv[1], and prints which of HEAVY it loaded.
_BUILD_WEB_APP = """
import json, sys

from rsft_plugin.config import load_config
from rsft_plugin.parts import build_parts
from rsft_plugin.webapp import build_app

build_app(build_parts(load_config(sys.argv[1])), "http://127.0.0.1:1")
print(json.dumps(sorted(name for name in {heavy!r} if name in sys.modules)))
"""


@pytest.mark.timeout(180)
def test_the_web_server_loads_no_model_library(tmp_path, monkeypatch):
    monkeypatch.delenv("RSFT_OPERATOR_TOKEN", raising=False)
    config = write_config(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    result = subprocess.run([sys.executable, "-c", _BUILD_WEB_APP.format(heavy=HEAVY), str(config)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], (f"building the web app loaded {loaded}; find the chain with "
                          "`python -X importtime -c 'import rsft_plugin.webapp' 2>&1 | grep -B40 torch`")


# Runs one `rsft` command (argv[2:]) against the config at argv[1] in this interpreter, then prints its output and,
# last, which of HEAVY it loaded.
_RUN_COMMAND = """
import json, sys

import click
from rsft_plugin.cli import main

try:
    main(["--config", sys.argv[1], *sys.argv[2:]], standalone_mode=False)
except click.ClickException as exc:
    print("error:", exc.message)
print(json.dumps(sorted(name for name in {heavy!r} if name in sys.modules)))
"""


def _version(models: Path, name: str, parent: str | None) -> None:
    """A complete version as the registry reads it (version.json); these commands never open the weights."""
    (models / name).mkdir(parents=True)
    (models / name / "version.json").write_text(json.dumps({
        "name": name, "created_at": "2026-01-01T00:00:00+00:00", "created_by": "test", "rsft_version": "0",
        "base_encoder": {"name": "test"}, "temperature": 0.05, "trainable_layers": 2, "answer_bank_hash": "x",
        "n_answers": 1, "parent": parent, "eval": {"heldout_accuracy": 0.5}}), encoding="utf-8")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", [["status"], ["history"], ["versions"], ["log"], ["show", "1"],
                                     ["rollback"]])
def test_read_and_rollback_commands_load_no_model_library(tmp_path, command):
    from rsft_plugin.log import TurnRecord, open_sqlite
    from rsft_plugin.models.registry import Registry

    config = write_config(tmp_path)
    registry = Registry(tmp_path / "models")
    _version(registry.root, "v0001", None)
    _version(registry.root, "v0002", "v0001")
    registry.set_live("v0001", "test")
    registry.set_live("v0002", "test")
    with open_sqlite(tmp_path / "rsft.db") as log:
        log.log_turn(TurnRecord("a-sender", "m", "where is my order", "track_order", "track_order", "text",
                                "v0001", 0.5, 0.3, [], 10.0))
        round_id = log.start_round("v0001", "statistical", {}, 1)
        log.update_round(round_id, status="kept", stage="done", reason="held-out accuracy fell")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    result = subprocess.run([sys.executable, "-c", _RUN_COMMAND.format(heavy=HEAVY), str(config), *command],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=250)
    assert result.returncode == 0, result.stderr
    *output, loaded = result.stdout.strip().splitlines()
    assert output and not any(line.startswith("error:") for line in output), output
    assert json.loads(loaded) == [], (f"`rsft {' '.join(command)}` loaded {loaded}; find the chain with "
                                      "`python -X importtime` on the same command")
