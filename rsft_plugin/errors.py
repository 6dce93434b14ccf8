"""The few named errors of rsft. Adapters (CLI, actions, web) turn them into clear messages."""

from __future__ import annotations


class RsftError(Exception):
    """Base class: every error rsft raises on purpose."""


class ConfigError(RsftError):
    """rsft.yml or a command-line override holds a value we cannot use."""


class DataError(RsftError):
    """A data file (answer bank, golden set) is missing or malformed."""


class ModelLoadError(RsftError):
    """A model version directory cannot be loaded (missing, corrupt, or built for another bank)."""


class RegistryError(RsftError):
    """The models directory or its live pointer is in a state we refuse to act on."""


class LogUnavailable(RsftError):
    """The configured log (a PostgreSQL server) cannot be reached."""


class RatingRefused(RsftError):
    """A rating that names no turn, another sender's turn, or carries a bad score."""


class SignalRefused(RatingRefused):
    """A choice or implicit signal that names no turn, another sender's turn, a turn already answered, or comes
    from a sender over the per-minute cap: nothing is written."""


class InputError(RsftError):
    """A request parameter or form value we cannot use (the web layer answers 400 with the message)."""


class NotFound(RsftError):
    """A conversation, answer, round, plot or model version that does not exist (the web layer answers 404)."""


class Conflict(RsftError):
    """Refused because of the current state: another run is in progress, or it exists already (HTTP 409)."""


class JobBusy(Conflict):
    """Another job (a round, a bank publication) is active; `job` is that job."""

    def __init__(self, message: str, job: object = None) -> None:
        super().__init__(message)
        self.job = job
