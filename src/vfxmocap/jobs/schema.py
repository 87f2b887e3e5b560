"""Versioned schema steps for the job store: `create_all` makes missing tables, never the
columns added to a table since a database was made, so each release's additions are a step.

The version lives in a one-row table (`vfx_schema`), which SQLite and PostgreSQL both
have, unlike SQLite's `user_version`. A database older than that table counts as version
1; each step adds only what is missing, so a database of any earlier release upgrades.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.engine import Engine

from vfxmocap.core.log import get_logger

log = get_logger("jobs.schema")

# Version -> the columns of `jobs` it added (name, SQL type), and the indexes it needs.
STEPS: dict[int, tuple[tuple[str, str], ...]] = {
    2: (("backend", "VARCHAR(32)"), ("route", "TEXT")),
    3: (("needs_device", "VARCHAR(8)"), ("needs_memory_gb", "FLOAT"), ("needs_models", "TEXT")),
    4: (("handle", "TEXT"),),
}
VERSION = max(STEPS)


def version_table(metadata: MetaData) -> Table:
    return Table("vfx_schema", metadata, Column("version", Integer, nullable=False))


def migrate(engine: Engine, metadata: MetaData) -> int:
    """Bring the database up to `VERSION` (one process at a time); returns the version found."""
    versions = metadata.tables["vfx_schema"]
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, the write lock
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7262023)"))
        found = _found_version(connection, versions)
        metadata.create_all(connection)  # new tables (and a new database) as they are now
        for version in range(max(found, 1) + 1, VERSION + 1):
            _add_columns(connection, STEPS[version])
        for index in metadata.tables["jobs"].indexes:  # indexes of tables made earlier
            index.create(connection, checkfirst=True)
        if found < VERSION:
            connection.execute(versions.delete())
            connection.execute(versions.insert().values(version=VERSION))
            if found:
                log.info("job store schema upgraded from version %d to %d", found, VERSION)
        elif found > VERSION:  # a newer release made it: its extra columns are left alone
            log.warning("job store schema %d is newer than this release's %d", found, VERSION)
    return found


def _found_version(connection: Connection, versions: Table) -> int:
    """0 for a new database, 1 for one made before the version table, else its version."""
    tables = inspect(connection).get_table_names()
    if "jobs" not in tables:
        return 0
    if versions.name not in tables:
        return 1
    return int(connection.scalar(select(versions.c.version)) or 1)


def _add_columns(connection: Connection, columns: tuple[tuple[str, str], ...]) -> None:
    present = {c["name"] for c in inspect(connection).get_columns("jobs")}
    for name, sql_type in columns:
        if name not in present:  # a pre-release database may have some already
            connection.execute(text(f"ALTER TABLE jobs ADD COLUMN {name} {sql_type}"))
