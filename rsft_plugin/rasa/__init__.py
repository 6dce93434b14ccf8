"""rsft's Rasa side, imported by module path from a bot's files, never copied into it.

    rsft_plugin.rasa.actions     action_answer, action_rate, action_rsft_thanks, action_rsft_goodbye, the hand-off's
                                 (rasa-sdk; our Python 3.11 environment)
    rsft_plugin.rasa.server      one action server for the bot's own action package and ours
                                 (`python -m rsft_plugin.rasa`)
    rsft_plugin.rasa.channels    RestWithFallback, the REST channel that never stays silent; it runs inside
                                 Rasa's own process (Python 3.10 for Rasa 3.6), so it imports only Rasa and Sanic
    rsft_plugin.rasa.lock_store  SerialRedisLockStore, Rasa's Redis lock store with atomic ticket updates, for
                                 several Rasa processes (`rsft serve --scale`); inside Rasa's process too
    rsft_plugin.rasa.tracker_store  ReconnectingSQLTrackerStore, Rasa's SQL tracker store that reconnects after
                                 its PostgreSQL restarted (`rsft serve --scale`); inside Rasa's process too
    rsft_plugin.rasa.bot_files   `rsft init-rasa`: our intents, examples, responses and rules beside a bot's own
    rsft_plugin.rasa.doctor      `rsft doctor`: is everything wired, and where do sample lines go?
    rsft_plugin.rasa.commands    the two commands' click layer (registered on the `rsft` group)
    rsft_plugin.rasa.rasa_run    `rasa` with its API token from $RSFT_RASA_TOKEN, not the command line (Rasa's Python)

This `__init__` imports only the standard library, so Rasa's Python can import the channel without our
dependencies.
"""

from pathlib import Path

ACTIONS_MODULE = "rsft_plugin.rasa.actions"
CHANNEL_CLASS = "rsft_plugin.rasa.channels.RestWithFallback"
ANSWER_ACTION = "action_answer"
RATE_ACTION = "action_rate"
# record a `thanks` signal, then the usual reply; named for rsft, as a bot's own package may well have action_goodbye
THANKS_ACTION, GOODBYE_ACTION = "action_rsft_thanks", "action_rsft_goodbye"
TOKEN_HEADER = "X-Rsft-Action-Token"  # Rasa -> action server, the shared secret RSFT_ACTION_TOKEN


def rasa_pythonpath() -> str:
    """The folder to put on Rasa's PYTHONPATH so that Rasa's own Python imports rsft_plugin.rasa.channels.

    That is the folder holding `rsft_plugin`: a source checkout installed with `pip install -e` (the supported
    layout; a site-packages folder would put our Python 3.11 packages on Rasa's 3.10 path).
    """
    return str(Path(__file__).resolve().parents[2])
