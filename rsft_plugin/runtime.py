"""The process-wide assistant of a serving process (the action server): built once, at start.

The Rasa actions call `boot()` when their module is imported, so the model is loaded before the first request
and never inside an action's `run`.
"""

from __future__ import annotations

import logging

from .assistant import Assistant
from .config import Config, load_config
from .handoff import HandoffDesk
from .implicit import ImplicitFeedback, encoder_similarity
from .log import describe_log
from .maintenance import apply_retention
from .models.live import LiveModel
from .parts import Parts, build_parts

log = logging.getLogger(__name__)
_assistant: Assistant | None = None
_desk: HandoffDesk | None = None
_parts: Parts | None = None


def boot(config: Config | None = None, watch: bool = True) -> Assistant:
    """Build the assistant (store, live model, implicit feedback, pointer watcher) and make it the process-wide one.

    Raises:
        ModelLoadError: no live model can be loaded; the action server refuses to start rather than answer
            nothing.
    """
    global _assistant, _desk, _parts
    config = config or load_config()
    parts = build_parts(config)  # the action server's composition root
    try:
        live = LiveModel(parts.registry, config.model)
        implicit = implicit_feedback(parts)
    except BaseException:
        parts.close()
        raise
    if watch:
        live.start_watching(config.server.reload_poll_seconds)
    if _assistant is not None:
        shutdown()
    _parts = parts
    _assistant = Assistant(parts.log, live, config.privacy.max_ratings_per_minute, config.handoff, implicit,
                           feedback=config.feedback)
    _desk = HandoffDesk(parts.log, lambda: live.current.name, config.handoff)
    redacted = apply_retention(parts)
    if redacted:
        log.info("retention: redacted the raw text of %d turns older than %g days", redacted,
                 config.privacy.retention_days)
    log.info("rsft assistant ready: model %s, log %s", live.current.name, describe_log(config))
    return _assistant


def implicit_feedback(parts: Parts) -> ImplicitFeedback:
    """The implicit signals of a serving process; the question encoder loads now (once), only when `reask` or
    `resolved` (both compare two questions) is on."""
    settings = parts.config.feedback
    compares = settings.reask_weight > 0 or settings.resolved_weight > 0
    similarity = encoder_similarity(parts.config.model.max_query_chars) if compares else None
    return ImplicitFeedback(parts.log, settings, parts.config.privacy.max_ratings_per_minute, similarity,
                            parts.clock)


def is_booted() -> bool:
    return _assistant is not None


def assistant() -> Assistant:
    """The booted assistant."""
    if _assistant is None:
        raise RuntimeError("rsft_plugin.runtime.boot() has not been called in this process")
    return _assistant


def config() -> Config:
    """The booted process's config."""
    if _parts is None:
        raise RuntimeError("rsft_plugin.runtime.boot() has not been called in this process")
    return _parts.config


def handoff_desk() -> HandoffDesk:
    """The booted hand-off desk (records hand-offs and their contact)."""
    if _desk is None:
        raise RuntimeError("rsft_plugin.runtime.boot() has not been called in this process")
    return _desk


def shutdown() -> None:
    global _assistant, _desk, _parts
    _desk = None
    if _assistant is not None:
        _assistant.live.stop_watching()
        _assistant = None
    if _parts is not None:
        _parts.close()
        _parts = None
