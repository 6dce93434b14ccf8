"""`rasa` with its API token read from $RSFT_RASA_TOKEN instead of the command line.

`rasa run --auth-token T` would put T in /proc/<pid>/cmdline, which every local user can read; changing
sys.argv inside the process does not change what /proc shows. Rasa 3.6 has no environment variable for it.
The launcher runs `python -m rsft_plugin.rasa.rasa_run run ...` with rsft_plugin's folder on PYTHONPATH.
"""

from __future__ import annotations

import os
import sys


def rasa_argv(args: list[str], token: str) -> list[str]:
    """Rasa's command line with the token attached as `--auth-token=T`: a separate `T` that starts with "-" (one
    random URL-safe token in 64 does) is read by argparse as an option, and Rasa exits with "expected one argument"."""
    return ["rasa", *args, f"--auth-token={token}"]


if __name__ == "__main__":
    from rasa.__main__ import main  # Rasa's Python only; rasa_argv is importable without Rasa

    token = os.environ.get("RSFT_RASA_TOKEN")
    if not token:
        sys.exit("rsft_plugin.rasa.rasa_run: RSFT_RASA_TOKEN is not set; refusing to start Rasa's HTTP API "
                 "without a token")
    sys.argv = rasa_argv(sys.argv[1:], token)
    main()
