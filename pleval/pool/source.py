"""Where a comparison pool lives, opened in DuckDB without reading it into memory.

:func:`open_pool` accepts

* a **Parquet dataset**: a directory of ``*.parquet`` files (searched recursively; Hive-style
  ``key=value`` folders become columns) or one Parquet file;
* a **DuckDB database file** (``.duckdb``, ``.ddb``, ``.db``), attached read-only; ``table``
  names the table (default: its only table);
* a pandas **DataFrame** (small pools and tests).

Every pool gets a stable row id ``_rid``: for Parquet ``(file number << 40) + row number in the
file`` (files in sorted path order), for a DuckDB table its ``rowid``, for a frame its position.
Matching pulls only the few columns it needs, one exact-key partition at a time; the full rows
of the matched comparisons are fetched at the end by ``_rid``.

Every opened pool carries a *fingerprint* for provenance (:func:`fingerprint`): what it is,
cheaply, without reading its rows (docs/scale.md, *Provenance of a pool*).

DuckDB runs with a memory limit (``PLEVAL_DUCKDB_MEMORY``, default 4GB) and spills to a
temporary directory (``PLEVAL_DUCKDB_TEMP``, default the system temporary folder) beyond it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

DUCKDB_EXT = (".duckdb", ".ddb", ".db")
PARQUET_EXT = (".parquet", ".pq")
RID = "_rid"
VIEW = "pleval_pool"


def quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def literal(v) -> str:
    """A SQL literal for a level value (string, bool or number)."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return "'" + str(v).replace("'", "''") + "'"


def connect(memory_limit: str | None = None, temp_directory: str | None = None, threads: int | None = None):
    """An in-process DuckDB connection that spills to disk past ``memory_limit``."""
    import duckdb

    con = duckdb.connect()
    limit = memory_limit or os.environ.get("PLEVAL_DUCKDB_MEMORY", "4GB")
    temp = temp_directory or os.environ.get("PLEVAL_DUCKDB_TEMP") or os.path.join(tempfile.gettempdir(), "pleval-duckdb")
    con.execute(f"SET memory_limit = {literal(limit)}")
    con.execute(f"SET temp_directory = {literal(temp)}")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


@dataclass
class PoolSource:
    """An opened pool: the connection, the view ``relation`` (the pool's columns plus ``_rid``),
    its column types, a one-line description and its :func:`fingerprint`."""

    con: object
    relation: str
    types: dict
    description: str
    fingerprint: dict

    @property
    def columns(self) -> list[str]:
        return [c for c in self.types if c != RID]


def _parquet_files(p: Path) -> list[str]:
    if p.is_file():
        return [str(p)]
    files = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in PARQUET_EXT and f.is_file())
    if not files:
        raise DataError(f"pool {str(p)!r}: no Parquet files (*.parquet) in the folder")
    return files


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "modified_utc_ns": st.st_mtime_ns}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(kind: str, **parts) -> dict:
    """``{"kind", ..., "sha256"}``: the parts given and the SHA-256 of their JSON, so two runs on
    the same pool show the same digest. Parquet: every file's path (relative to the dataset),
    size, modification time and row count (from the file footers); a DuckDB file: its path,
    size and modification time, the table and its row count; a DataFrame: its content hash.
    The digest leaves the pool's absolute path out (a dataset read from another mount point
    keeps it)."""
    out = {"kind": kind, **parts}
    return {**out, "sha256": _digest({k: v for k, v in out.items() if k != "path"})}


def _parquet_fingerprint(con, root: Path, files: list[str]) -> dict:
    rows = dict(con.execute("SELECT file_name, sum(row_group_num_rows) FROM "
                            "(SELECT DISTINCT file_name, row_group_id, row_group_num_rows FROM parquet_metadata(?)) "
                            "GROUP BY file_name", [files]).fetchall())
    base = root if root.is_dir() else root.parent
    listed = [{"file": str(Path(f).relative_to(base)), **_stat(Path(f)), "rows": int(rows.get(f, 0))} for f in files]
    return fingerprint("parquet", path=str(root.resolve()), n_files=len(files),
                       n_rows=sum(f["rows"] for f in listed), files=listed)


def open_pool(pool, *, table: str | None = None, con=None) -> PoolSource:
    """Open ``pool`` (module docstring) as a DuckDB view with a stable row id ``_rid``."""
    if isinstance(pool, PoolSource):
        return pool
    con = con or connect()
    if isinstance(pool, pd.DataFrame):
        if RID in pool.columns:
            raise DataError(f"the pool has a column named {RID!r}, which pleval reserves for row ids; rename it")
        frame = pool.reset_index(drop=True).assign(**{RID: np.arange(len(pool), dtype=np.int64)})
        con.register("pleval_pool_frame", frame)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {VIEW} AS SELECT * FROM pleval_pool_frame")
        desc = f"a DataFrame of {len(pool):,} rows"
        from ..data import frame_sha256

        fp = fingerprint("DataFrame", n_rows=len(pool), n_columns=pool.shape[1], content_sha256=frame_sha256(pool))
    else:
        p = Path(pool)
        if not p.exists():
            raise DataError(f"pool {str(p)!r}: no such file or folder")
        if p.is_file() and p.suffix.lower() in DUCKDB_EXT:
            con.execute(f"ATTACH {literal(str(p))} AS pleval_pooldb (READ_ONLY)")
            tables = [r[0] for r in con.sql("SELECT table_name FROM duckdb_tables() "
                                             "WHERE database_name = 'pleval_pooldb' ORDER BY table_name").fetchall()]
            if table is None:
                if len(tables) != 1:
                    raise DataError(f"pool {str(p)!r} holds {len(tables)} tables ({', '.join(tables) or 'none'}); "
                                    "name one (--pool-table NAME)")
                table = tables[0]
            elif table not in tables:
                raise DataError(f"pool {str(p)!r} has no table {table!r}; tables: {', '.join(tables) or 'none'}")
            con.execute(f"CREATE OR REPLACE TEMP VIEW {VIEW} AS SELECT *, rowid AS {RID} "
                        f"FROM pleval_pooldb.main.{quote(table)}")
            desc = f"DuckDB table {table!r} in {p}"
            n = con.execute(f"SELECT count(*) FROM pleval_pooldb.main.{quote(table)}").fetchall()[0][0]
            fp = fingerprint("duckdb", path=str(p.resolve()), **_stat(p), table=table, n_rows=int(n))
        elif p.is_dir() or p.suffix.lower() in PARQUET_EXT:
            files = _parquet_files(p)
            hive = any("=" in part for f in files for part in Path(f).relative_to(p if p.is_dir() else p.parent).parts[:-1])
            con.execute("CREATE OR REPLACE TEMP TABLE pleval_pool_files (idx BIGINT, filename VARCHAR)")
            con.executemany("INSERT INTO pleval_pool_files VALUES (?, ?)", list(enumerate(files)))
            src = (f"read_parquet({literal(files[0]) if len(files) == 1 else '[' + ', '.join(map(literal, files)) + ']'}, "
                   f"filename = true, file_row_number = true, hive_partitioning = {str(hive).lower()})")
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {VIEW} AS SELECT p.* EXCLUDE (filename, file_row_number), "
                f"(f.idx << 40) + p.file_row_number AS {RID} FROM {src} p JOIN pleval_pool_files f USING (filename)"
            )
            desc = f"Parquet dataset {p} ({len(files):,} file{'s' if len(files) != 1 else ''})"
            fp = _parquet_fingerprint(con, p, files)
        else:
            raise DataError(f"pool {str(p)!r}: expected a folder of Parquet files, a .parquet file or a DuckDB "
                            f"database ({', '.join(DUCKDB_EXT)})")
    types = {name: str(t) for name, t in zip(*(lambda r: (r.columns, r.types))(con.sql(f"SELECT * FROM {VIEW} LIMIT 0")))}
    if list(types).count(RID) != 1:
        raise DataError(f"the pool has a column named {RID!r}, which pleval reserves for row ids; rename it")
    return PoolSource(con, VIEW, types, desc, fp)
