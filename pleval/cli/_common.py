"""Shared CLI plumbing: one-line errors with exit code 2, rich console, version callback."""

from __future__ import annotations

import functools
import sys
from typing import Callable

import typer
from rich.console import Console

from ..data import NONE_WORDS
from ..errors import DataError, PlevalError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def handle_errors(func: Callable) -> Callable:
    """Turn pleval/data errors into one clear line on stderr and exit code 2.

    Set the environment variable ``PLEVAL_DEBUG=1`` (or pass ``--debug`` where a command
    offers it) to see the traceback instead.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (PlevalError, ValueError, FileNotFoundError, KeyError) as exc:
            if kwargs.get("debug") or _debug_env():
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err_console.print(f"[bold red]error:[/] {msg}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper


def _debug_env() -> bool:
    import os

    return os.environ.get("PLEVAL_DEBUG", "") not in ("", "0")


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def parse_names(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated option: ``None`` if not given, ``()`` for "none", else the names."""
    if text is None:
        return None
    if text.strip().lower() in NONE_WORDS:
        return ()
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse_sd(text: str) -> str | float:
    """``--sd``: "pooled", "comparison" or a number (a norm SD)."""
    if text in ("pooled", "comparison"):
        return text
    try:
        return float(text)
    except ValueError:
        raise DataError(f"--sd must be pooled, comparison or a number; got {text!r}") from None
