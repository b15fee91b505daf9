"""Statements of the hot paths, compiled once and run on SQLite's own cursor.

A create runs five short statements and a poll one; a busy gateway writes every run's
attempts, heartbeats and end. SQLite answers each in a few microseconds, while
SQLAlchemy's per-execution machinery (parameter processing, execution context, result
set-up) costs ten times that, and on SQLite's single writer thread that overhead is the
limit on creates per second (docs/benchmarks.md). `PreparedStatement` compiles its
statement once, keeps the column types' own bind and result converters (so values go in
and come out exactly as SQLAlchemy would convert them), and calls the driver directly.
On other databases it simply runs the statement through SQLAlchemy.

Rows come back as named tuples, or, given `row`, as `row(*values)` on every database (the
layer above hands its own row type down, e.g. `core.run_view.Run`, so that no second object
is built per row).

The converters come from SQLAlchemy's private `_cached_bind_processor` and
`_cached_result_processor`, so pyproject.toml keeps SQLAlchemy below 3, and
tests/storage/test_db.py checks what it reads against what SQLAlchemy reads.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ClauseElement, Connection, Executable, Insert
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True)
class Rows:
    """What a statement gave back: its rows (with attribute access) and rowcount."""

    rows: list[Any]
    rowcount: int

    def first(self) -> Any | None:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise ValueError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


Converter = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]
    bind_converters: tuple[Converter, ...]
    result_converters: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(position, converter) of the result columns that have one: most (strings,
    integers) need none, and are not touched."""
    row_type: type[tuple[Any, ...]] | None


class PreparedStatement:
    """One statement of a hot path; on SQLite compiled once per set of parameter names."""

    def __init__(self, statement: ClauseElement, *, row: Callable[..., Any] | None = None) -> None:
        self.statement = statement
        self._row = row
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> Rows:
        if connection.dialect.name != "sqlite":
            result = connection.execute(cast(Executable, self.statement), dict(params))
            if not result.returns_rows:
                return Rows([], result.rowcount)
            make = self._row
            answer = list(result) if make is None else [make(*values) for values in result]
            return Rows(answer, result.rowcount)
        compiled = self._compiled.get(tuple(params))
        if compiled is None:
            compiled = self._compile(connection.dialect, params)
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.execute(compiled.sql, self._values(compiled, params))
        rows: list[Any] = []
        if compiled.row_type is not None:
            converters = compiled.result_converters
            row = self._row or compiled.row_type
            for raw in cursor.fetchall():
                values = list(raw)
                for position, convert in converters:
                    values[position] = convert(values[position])
                rows.append(row(*values))
        return Rows(rows, cursor.rowcount)

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement (no RETURNING) once per item of `rows`, which share their keys."""
        if not rows:
            return
        if connection.dialect.name != "sqlite":
            connection.execute(cast(Executable, self.statement), [dict(row) for row in rows])
            return
        compiled = self._compiled.get(tuple(rows[0]))
        if compiled is None:
            compiled = self._compile(connection.dialect, rows[0])
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.executemany(compiled.sql, [self._values(compiled, row) for row in rows])

    @staticmethod
    def _values(compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, convert in zip(compiled.names, compiled.bind_converters, strict=True):
            value = params[name] if name in params else compiled.defaults[name]
            values.append(value if convert is None else convert(value))
        return values

    def _compile(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        # An INSERT's columns are the given keys; elsewhere keys that name a column would
        # be read as extra SET columns, so only explicit bindparams count.
        column_keys = list(params) if isinstance(self.statement, Insert) else None
        compiled = self.statement.compile(dialect=dialect, column_keys=column_keys)
        assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
        names = tuple(compiled.positiontup)
        binds = {name: compiled.binds[name] for name in names}
        columns = list(getattr(self.statement, "exported_columns", ()))
        answer = _Compiled(
            sql=compiled.string,
            names=names,
            defaults={name: bind.value for name, bind in binds.items()},
            bind_converters=tuple(
                binds[name].type._cached_bind_processor(dialect) for name in names
            ),
            result_converters=tuple(
                (position, convert)
                for position, column in enumerate(columns)
                if (convert := column.type._cached_result_processor(dialect, None)) is not None
            ),
            row_type=_row_type(column.key for column in columns) if columns else None,
        )
        self._compiled[tuple(params)] = answer
        return answer


def _row_type(names: Iterable[str | None]) -> type[tuple[Any, ...]]:
    # rename: an unlabelled column (`count(*)`) has no usable name; it is still row[0].
    return namedtuple("PreparedRow", [str(name) for name in names], rename=True)
