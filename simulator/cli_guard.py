"""How every ``hwsim`` command reports failure: user errors as one line and exit code 2."""

from __future__ import annotations

import functools
import os
import sys

import typer

from simulator.core.errors import HwsimError


def fail(err: BaseException | str, code: int = 2) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(code)


def guarded(fn):
    """Run ``fn`` turning user errors into one line and exit code 2 (internal errors: exit 1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HwsimError as err:
            fail(err)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # output piped into a reader that stopped early (e.g. head)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(1) from None
        except Exception as err:  # an internal error: one line unless asked for the traceback
            if os.environ.get("HWSIM_DEBUG"):
                raise
            fail(f"internal error: {type(err).__name__}: {err} (set HWSIM_DEBUG=1 for the traceback)", 1)

    return wrapper
