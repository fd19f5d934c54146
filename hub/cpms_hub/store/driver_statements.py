"""Core statements compiled once for the ``sqlite3`` driver, with Core's own conversions.

On a SQLite file the store's hottest statements (the account and case reads,
:mod:`.sqlite_reads`, and the audit trail's appends, :mod:`.audit`) skip
SQLAlchemy's execution machinery: its per-statement cost (execution context,
events, result objects) is tens of microseconds against a statement SQLite
answers in a few. What must not change is what goes in and what comes out, so
a statement is compiled by SQLAlchemy for the engine's dialect, once, and every
value still passes through the processors SQLAlchemy itself would apply for
that dialect: bind processors on the way in, result processors on the way out.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.sql.base import Executable

__all__ = ["DriverStatement"]


class DriverStatement:
    """A Core statement compiled for one dialect: SQL text, parameter order, converters.

    :meth:`bind` turns a dict of parameters into the driver's positional tuple
    (each value through its type's bind processor: our ``UTCDateTime`` made
    UTC, then SQLite's text form of dates, ...); :meth:`rows` turns the
    driver's result tuples of a ``select()`` into named tuples of Core's
    values (each through its column type's result processor).
    """

    __slots__ = ("sql", "params", "row", "converters")

    def __init__(self, stmt: Executable, dialect: Any) -> None:  # noqa: ANN401 - a SQLAlchemy Dialect
        compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        if not compiled.positional:
            raise ValueError("the SQLite dialect is expected to bind parameters by position")
        self.sql = compiled.string
        # fixed values (LIMIT 1, literals) are bound now; required ones per call
        fixed = compiled.construct_params(_check=False)
        required = {b.key for b in compiled.binds.values() if b.required}
        types = {b.key: b.type for b in compiled.binds.values()}
        params: list[tuple[str, bool, Any, Callable | None]] = []
        for name in compiled.positiontup or ():
            proc = (
                types[name].dialect_impl(dialect).bind_processor(dialect) if name in types else None
            )
            params.append((name, name in required, fixed.get(name), proc))
        self.params = tuple(params)
        # a select() has result columns; an insert or update without RETURNING has none
        columns = list(getattr(stmt, "selected_columns", ()))
        self.row = namedtuple("Row", [c.key for c in columns])  # noqa: PYI024
        self.converters = tuple(
            (i, proc)
            for i, c in enumerate(columns)
            if (proc := c.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
        )

    def bind(self, values: Mapping[str, Any]) -> tuple:
        out = []
        for name, required, fixed, proc in self.params:
            value = values[name] if required else fixed
            out.append(proc(value) if proc is not None else value)
        return tuple(out)

    def rows(self, raw: Sequence[tuple]) -> list[tuple]:
        make = self.row._make
        converters = self.converters
        if not converters:
            return [make(r) for r in raw]
        out = []
        for r in raw:
            values = list(r)
            for i, proc in converters:
                values[i] = proc(values[i])
            out.append(make(values))
        return out
