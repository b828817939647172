"""Alembic environment: the engine arrives through config.attributes (see migrate.py)."""

from __future__ import annotations

from alembic import context

from appliance.db.tables import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
