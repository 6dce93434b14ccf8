"""rsft: a Rasa customer-service assistant that improves itself by rejection-sampling fine-tuning.

The library owns all logic; `actions/`, the `rsft` CLI and the web server are thin adapters over it.
"""

__version__ = "0.1.0"
