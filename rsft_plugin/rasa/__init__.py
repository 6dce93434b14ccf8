"""rsft's Rasa side, imported by module path from a bot's files, never copied into it.

    rsft_plugin.rasa.actions     action_answer, action_rate (rasa-sdk; our Python 3.11 environment)
    rsft_plugin.rasa.server      one action server for the bot's own action package and ours
                                 (`python -m rsft_plugin.rasa`)
    rsft_plugin.rasa.channels    RestWithFallback, the REST channel that never stays silent; it runs inside
                                 Rasa's own process (Python 3.10 for Rasa 3.6), so it imports only Rasa, Sanic, PyYAML
    rsft_plugin.rasa.bot_files   `rsft init-rasa`: our intents, examples, responses and rules beside a bot's own
    rsft_plugin.rasa.doctor      `rsft doctor`: is everything wired, and where do sample lines go?

This `__init__` imports nothing, so Rasa's Python can import the channel module without our dependencies.
"""

ACTIONS_MODULE = "rsft_plugin.rasa.actions"
CHANNEL_CLASS = "rsft_plugin.rasa.channels.RestWithFallback"
ANSWER_ACTION = "action_answer"
RATE_ACTION = "action_rate"
