"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL.

The store never calls ``create_all``: if a model gains a column and no migration adds it,
production databases silently lack it. These tests run :func:`migrate` on an empty
database and compare the result with ``Base.metadata`` table by table, then run it again
to show that a second run (every ``cpms-admin init`` and service start) changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from cpms_hub.store import make_engine, make_session_factory, migrate, session_scope
from cpms_hub.store.schema import AuditHeadRow, Base, DataKeyRow


def describe(engine: Engine) -> dict[str, dict[str, object]]:
    """Tables as the database reports them: columns, keys and indexes."""
    insp = inspect(engine)
    schema = {}
    for table in insp.get_table_names():
        if table == "alembic_version":
            continue
        schema[table] = {
            "columns": {c["name"]: c["nullable"] for c in insp.get_columns(table)},
            "primary_key": tuple(insp.get_pk_constraint(table)["constrained_columns"]),
            "indexes": {(i["name"], tuple(i["column_names"])) for i in insp.get_indexes(table)},
            "foreign_keys": {
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                )
                for fk in insp.get_foreign_keys(table)
            },
        }
    return schema


def expected() -> dict[str, dict[str, object]]:
    """The same description, from the models."""
    schema = {}
    for name, table in Base.metadata.tables.items():
        schema[name] = {
            "columns": {c.name: c.nullable for c in table.columns},
            "primary_key": tuple(c.name for c in table.primary_key.columns),
            "indexes": {(i.name, tuple(c.name for c in i.columns)) for i in table.indexes},
            "foreign_keys": {
                (
                    tuple(fk.parent.name for fk in con.elements),
                    con.referred_table.name,
                    tuple(fk.column.name for fk in con.elements),
                )
                for con in table.foreign_key_constraints
            },
        }
    return schema


@pytest.fixture
def engine(empty_db_url: str):
    engine = make_engine(empty_db_url)
    yield engine
    engine.dispose()


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from cpms_hub.store.database import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_migrate_creates_exactly_the_model_schema(engine: Engine) -> None:
    assert describe(engine) == {}
    migrate(engine)

    actual = describe(engine)
    model = expected()
    assert (
        set(actual)
        == set(model)
        == {
            "accounts",
            "data_keys",
            "cases",
            "case_members",
            "blobs",
            "audit_log",
            "audit_head",
            "consents",
            "uploads",
            "slides",
            "dicom_instances",
            "slide_annotations",
            # panel review (0005)
            "panels",
            "panel_members",
            "contributions",
            "messages",
            "information_requests",
            "meetings",
            "outcomes",
            "endorsements",
            "signing_keys",
            "notifications",
            "mail_outbox",
            # follow-ups (0008)
            "followups",
            # grant first uses (0009)
            "grant_uses",
        }
    )
    for table in model:
        assert actual[table] == model[table], table

    # Alembic's own comparison also covers column types and server-side details
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            _head()
        ]
    with make_session_factory(engine)() as s:
        [genesis] = s.scalars(select(AuditHeadRow)).all()
    assert (genesis.id, genesis.seq, genesis.hash) == (1, 0, "0" * 64)


def test_migrate_twice_is_harmless(engine: Engine) -> None:
    migrate(engine)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        s.add(
            DataKeyRow(
                id="system:probe",
                wrapped=b"\x01probe",
                kek_id="kek-x",
                created_at=datetime.now(UTC),
            )
        )
    before = describe(engine)

    migrate(engine)

    assert describe(engine) == before
    with sessions() as s:
        assert s.get(DataKeyRow, "system:probe").wrapped == b"\x01probe"
        assert len(s.scalars(select(AuditHeadRow)).all()) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
