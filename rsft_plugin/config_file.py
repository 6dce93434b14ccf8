"""A config file or nothing: rsft makes no state (a log, model versions, secrets) from defaults alone.

Every command and the action server resolve rsft.yml the same way (--config, else $RSFT_CONFIG, else ./rsft.yml,
see config.load_config), say which file they use, and refuse with the fix when there is none.
"""

from __future__ import annotations

from pathlib import Path

from .config import CONFIG_ENV, Config
from .errors import ConfigError


def missing_config_message(where: Path | None = None) -> str:
    """Why rsft refuses to run without a config file, and how to make one."""
    where = where or Path.cwd()
    return (f"no rsft.yml in {where} and ${CONFIG_ENV} is not set; rsft does not create state in a folder without "
            f"its config. Run `rsft init-rasa BOT_DIR` to write one next to your Rasa bot, then run rsft from that "
            f"folder, or pass --config PATH (or set {CONFIG_ENV}=PATH)")


def require_file(config: Config) -> Config:
    """`config` if it was read from a file; rsft refuses to make state from defaults alone.

    Raises:
        ConfigError: no file was found (the message says how to make one).
    """
    if config.source is None:
        raise ConfigError(missing_config_message())
    return config
