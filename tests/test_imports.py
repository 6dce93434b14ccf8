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
    config = write_config(tmp_path, paths={"run_dir": str(tmp_path / "run")})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    result = subprocess.run([sys.executable, "-c", _BUILD_WEB_APP.format(heavy=HEAVY), str(config)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], (f"building the web app loaded {loaded}; find the chain with "
                          "`python -X importtime -c 'import rsft_plugin.webapp' 2>&1 | grep -B40 torch`")
