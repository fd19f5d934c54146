"""Alembic environment for the case store.

The engine comes from the caller (:func:`cpms_hub.store.database.migrate`),
so migrations run against exactly the database the deployment is configured
for, SQLite or PostgreSQL.
"""

from alembic import context

from cpms_hub.store.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes["connection_engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
