"""The trained Rasa model cache (`paths.run_dir/rasa-models`, keyed by the fingerprint of bot/): launches that race
train once, and a model file under its name is always a finished one. A stand-in `rasa` (seconds, not minutes)
plays `rasa train`."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from rsft_plugin.config import load_config
from rsft_plugin.launcher import ensure_rasa_model
from rsft_plugin.supervision import LaunchError

from .conftest import write_config

FAKE_RASA = """#!{python}
import sys, time
from pathlib import Path
args = sys.argv[1:]
out, name = Path(args[args.index("--out") + 1]), args[args.index("--fixed-model-name") + 1]
if not name.endswith(".tar.gz"):  # what rasa 3.6 does (model_training._determine_model_name)
    name = Path(name).with_suffix(".tar.gz").name
with open({calls!r}, "a") as calls:
    calls.write(name + "\\n")
time.sleep(1)
if {fail}:
    (out / name).write_bytes(b"half")  # a crash after writing part of the model
    sys.exit(1)
(out / name).write_bytes(b"model")
"""


def _config(tmp_path: Path, fail: bool = False):
    bot = tmp_path / "bot"
    (bot / "data").mkdir(parents=True, exist_ok=True)
    (bot / "config.yml").write_text("recipe: default.v1\n", encoding="utf-8")
    (bot / "domain.yml").write_text("version: '3.1'\n", encoding="utf-8")
    rasa = tmp_path / ("rasa-failing" if fail else "rasa")
    rasa.write_text(FAKE_RASA.format(python=sys.executable, calls=str(tmp_path / "calls"), fail=fail),
                    encoding="utf-8")
    rasa.chmod(0o755)
    return load_config(write_config(tmp_path, paths={"run_dir": str(tmp_path / "own-run"), "bot_dir": str(bot),
                                                     "rasa_bin": str(rasa)}))


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text(encoding="utf-8").split() if path.exists() else []


def test_two_launches_at_once_train_the_bot_once_and_both_get_the_model(tmp_path):
    config = _config(tmp_path)
    found: list[Path] = []
    launches = [threading.Thread(target=lambda: found.append(ensure_rasa_model(config, tmp_path / "logs", str)))
                for _ in range(2)]
    for launch in launches:
        launch.start()
    for launch in launches:
        launch.join(30)
    assert len(_calls(tmp_path)) == 1
    assert len(found) == 2 and found[0] == found[1] and found[0].read_bytes() == b"model"
    assert ensure_rasa_model(config, tmp_path / "logs", str) == found[0] and len(_calls(tmp_path)) == 1


def test_a_failed_training_leaves_no_model_under_the_bots_name_and_the_next_launch_trains_again(tmp_path):
    with pytest.raises(LaunchError, match="rasa train failed"):
        ensure_rasa_model(_config(tmp_path, fail=True), tmp_path / "logs", str)
    models = tmp_path / "own-run" / "rasa-models"
    assert [p.name for p in models.iterdir() if p.name.endswith(".tar.gz")] == []
    model = ensure_rasa_model(_config(tmp_path), tmp_path / "logs", str)
    assert model.read_bytes() == b"model" and len(_calls(tmp_path)) == 2
