"""kill -9 at every dangerous moment of a round: the live model keeps serving, nothing half-written is ever live
or listed, and the next round runs cleanly (it restarts from scratch; nothing is resumed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from rsft_plugin.faults import CRASH_ENV
from rsft_plugin.models.registry import Registry
from rsft_plugin.models.retrieval import ResponseModel

from .conftest import REPO, assert_interrupted_round_failed, feed_traffic, round_config, run_round

pytestmark = pytest.mark.timeout(600)

CRASH_POINTS = ["stage:sample", "stage:score", "finetune:step", "save:weights-written", "publish:before-rename",
                "pointer:before-replace"]


@pytest.fixture(scope="module")
def template(tmp_path_factory, pretrained):
    """A fed installation (v0001 live, 120 rated turns), made once and copied per test."""
    directory = tmp_path_factory.mktemp("fed")
    config = round_config(directory)
    registry = Registry(config.paths.models_dir)
    registry.set_live(registry.publish(pretrained).name, "test")
    feed_traffic(config, n=120)
    return config


def _copy(template, tmp_path):
    config = round_config(tmp_path)
    shutil.copytree(template.paths.models_dir, config.paths.models_dir)
    for suffix in ("", "-wal", "-shm"):
        source = template.paths.db.with_name(template.paths.db.name + suffix)
        if source.exists():
            shutil.copy(source, config.paths.db.with_name(config.paths.db.name + suffix))
    return config


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_round_killed_anywhere_leaves_the_live_model_serving(template, tmp_path, point):
    config = _copy(template, tmp_path)
    process = subprocess.run([sys.executable, "-m", "rsft_plugin.cli", "retrain"], cwd=REPO, timeout=300,
                             env={**os.environ, "RSFT_CONFIG": str(config.source), CRASH_ENV: point},
                             capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stdout[-2000:] + process.stderr[-2000:]
    registry = Registry(config.paths.models_dir)
    assert registry.live_name() == "v0001"
    ResponseModel.load(registry.live_path(), config.model)  # still loadable and serving
    for info in registry.versions():  # whatever is listed is complete and loadable
        ResponseModel.load(registry.version_path(info.name), config.model)
    if point != "pointer:before-replace":  # only then was a complete version written before the kill
        assert [i.name for i in registry.versions()] == ["v0001"]

    result = run_round(config, show_bar=False)
    assert result.status == "promoted", result.reason
    assert registry.live_name() == result.new_version
    assert not list(config.paths.models_dir.glob(".staging-*")) and not list(config.paths.models_dir.glob(".LIVE*"))
    assert_interrupted_round_failed(config, result.round_id - 1)
