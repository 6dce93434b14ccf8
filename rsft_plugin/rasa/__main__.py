"""`python -m rsft_plugin.rasa`: the action server (rsft_plugin/rasa/server.py)."""

from .server import main

main()
