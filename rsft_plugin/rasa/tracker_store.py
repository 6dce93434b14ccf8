"""Rasa's SQL tracker store, made to survive a restart of its database server.

Rasa 3.6's `SQLTrackerStore` keeps a pool of SQLAlchemy connections and uses them without checking: after the
PostgreSQL server restarted (the private server of `rsft serve --scale` is restarted by the supervisor when it
dies), the first message each Rasa process handles finds its pooled connection dead, fails with a 500, and only
then does SQLAlchemy drop the pool. `ReconnectingSQLTrackerStore` turns on SQLAlchemy's `pool_pre_ping`: each
connection taken from the pool is tested first (one `SELECT 1`, about a tenth of a millisecond on loopback) and
replaced when dead, so the first message after the restart is served like any other.

It runs inside Rasa's process (Python 3.10), so it imports only Rasa and its dependencies. The launcher names it in
the endpoints it writes: `tracker_store: type: rsft_plugin.rasa.tracker_store.ReconnectingSQLTrackerStore`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs


class ReconnectingSQLTrackerStore(SQLTrackerStore):
    """`SQLTrackerStore` whose pooled connections are tested before use (reconnects after a server restart)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Rasa builds the engine (and waits for the database) inside __init__ with no way to pass engine options,
        # so the engine is rebuilt on the same URL once that is done.
        super().__init__(*args, **kwargs)
        url = self.engine.url
        self.engine.dispose()
        self.engine = sa.create_engine(url, pool_pre_ping=True, **create_engine_kwargs(url))
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
