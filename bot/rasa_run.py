"""`rasa` with its API token read from $RSFT_RASA_TOKEN instead of the command line.

`rasa run --auth-token T` would put T in /proc/<pid>/cmdline, which every local user can read; changing
sys.argv inside the process does not change what /proc shows. Rasa 3.6 has no environment variable for it.
The launcher runs `python -m rasa_run run ...` with bot/ on PYTHONPATH.
"""

from __future__ import annotations

import os
import sys

from rasa.__main__ import main

if __name__ == "__main__":
    token = os.environ.get("RSFT_RASA_TOKEN")
    if not token:
        sys.exit("rasa_run: RSFT_RASA_TOKEN is not set; refusing to start Rasa's HTTP API without a token")
    sys.argv = ["rasa", *sys.argv[1:], "--auth-token", token]
    main()
