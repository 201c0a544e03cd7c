"""Reading input files: one error line that names the file, never a traceback."""

from __future__ import annotations

from pathlib import Path

from simulator.core.errors import InputFileError


def read_text(path: Path, what: str) -> str:
    """The text of ``path``; a missing or unreadable file is an InputFileError naming it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"{what} not found", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {what}: {exc}", where=str(path)) from None
