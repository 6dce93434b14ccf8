"""The generative modules import torch only when a model runs (the web server may import them)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_generative_modules_loads_no_torch() -> None:
    code = ("import sys\n"
            "import rsft_plugin.generative.faithfulness, rsft_plugin.generative.settings\n"
            "import rsft_plugin.generative.quality, rsft_plugin.generative.checkpoint\n"
            "import rsft_plugin.generative.writer, rsft_plugin.generative.lora\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
