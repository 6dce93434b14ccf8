"""Moved to rsft_plugin.rasa.actions (issue 15); kept so `register_package("actions")` still finds our actions."""

from rsft_plugin.rasa.actions import ActionAnswer, ActionRate

__all__ = ["ActionAnswer", "ActionRate"]
