"""Alembic migrations (kefu/migrations) and the models (kefu.models) describe the same schema."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from kefu import migrate
from kefu.db import make_engine
from kefu.models import Base


def _head() -> str:
    return ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()


def _schema(engine) -> dict:
    inspector = inspect(engine)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
            sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in inspector.get_foreign_keys(table)),
        )
        for table in sorted(inspector.get_table_names())
    }


def test_single_linear_history():
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    # revisions are numbered 0001, 0002, … and each one revises the one before
    revisions = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in revisions] == [f"{i:04d}" for i in range(1, len(revisions) + 1)]
    assert _head() == revisions[-1].revision


def test_upgrade_matches_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() == _head()
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations differ; run `kefu.migrate.revision(...)`: {diff}"
        assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()


def test_compare_metadata_detects_a_difference(tmp_path):
    """The check above can fail: a model change that has no migration shows up."""
    from sqlalchemy import Column, Integer, MetaData, String, Table

    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    migrate.upgrade(url)
    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["customers"].append_column(Column("nickname", String(32)))
    Table("coupons", changed, Column("id", Integer, primary_key=True))
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), changed)
    finally:
        engine.dispose()
    kinds = sorted((d[0], getattr(d[-1], "name", None)) for d in diff if isinstance(d, tuple))
    assert ("add_column", "nickname") in kinds and ("add_table", "coupons") in kinds


def test_upgrading_twice_is_a_no_op(tmp_path):
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        before = _schema(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO customers (customer_no, name, phone, level, created_at) "
                "VALUES ('C1', '张伟', '13800138000', 'normal', '2024-01-01 00:00:00')")
        migrate.upgrade(url)
        assert _schema(engine) == before
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [_head()]
            assert conn.exec_driver_sql("SELECT customer_no, phone FROM customers").all() == [
                ("C1", "13800138000")]
    finally:
        engine.dispose()
