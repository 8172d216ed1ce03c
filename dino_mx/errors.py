"""User errors: one line on stderr and exit status 2, the traceback only on request.

Every ``dino-mx`` command's ``main`` is wrapped in :func:`reports_errors`. A mistake in what the
user gave — a bad value, an unknown key, a missing or unreadable file, a checkpoint that does not
fit — is printed as ``dino-mx COMMAND: error: <what, where, what to do>`` and the command exits 2.
Anything else is a bug and keeps its traceback (exit 1). ``dino-mx --debug COMMAND ...`` or
``HYDRA_FULL_ERROR=1`` shows the full traceback of a user error too.

Code raises :class:`UserError` (or ``ValueError`` / ``FileNotFoundError`` / ``FileExistsError``)
with a message that names the key or file and the valid choices; it never prints and exits itself.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import zipfile
from collections.abc import Callable
from typing import TypeVar

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from dino_mx.config import unknown_key_message

DEBUG_FLAG = "--debug"
FULL_ERROR = "HYDRA_FULL_ERROR"  # Hydra's own switch for full tracebacks; --debug sets it
USER_ERROR_STATUS = 2

F = TypeVar("F", bound=Callable[..., int])


class _StderrHandler(logging.StreamHandler):
    """A handler on ``sys.stderr`` as it is when each record is written, not when the handler
    was made: a caller (a test's capture, a notebook) may swap the stream in between."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def log_to_stderr() -> None:
    """A command's INFO lines (what it read, what it chose) on stderr, as bare messages; once
    per process (later calls keep the handler already set)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[_StderrHandler()])


class UserError(Exception):
    """A mistake in the user's input; its message is the one line the user sees."""


# OSError covers missing, unreadable and corrupt files (PIL's UnidentifiedImageError too);
# ValueError bad values (OmegaConf's ValidationError is one); Hydra's and OmegaConf's exceptions
# unknown keys, unknown group options and override syntax.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ValueError,
    OSError,
    zipfile.BadZipFile,
    HydraException,
    OmegaConfBaseException,
)


def debug_requested() -> bool:
    """Whether tracebacks were asked for (``--debug`` or ``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get(FULL_ERROR) == "1"


def pop_debug(args: list[str]) -> list[str]:
    """``args`` without ``--debug`` (before any ``--``); sets ``HYDRA_FULL_ERROR=1`` if present.

    The environment variable carries the request to Hydra and to child processes (``dino-mx
    demo`` trains in one).
    """
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != DEBUG_FLAG] + args[end:]
    if len(kept) != len(args):
        os.environ[FULL_ERROR] = "1"
    return kept


def is_user_error(error: BaseException) -> bool:
    """A mistake in the input rather than a bug. A ``KeyError`` counts only with a written
    message (an incompatible checkpoint's missing weights), not as a bare missing key."""
    if isinstance(error, KeyError) and not isinstance(error, OmegaConfBaseException):
        return bool(error.args) and " " in str(error.args[0])
    return isinstance(error, USER_ERRORS)


def _collapse(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# OmegaConf's refusal of a value outside a closed choice (an enum field of dino_mx.config).
_NOT_A_CHOICE = re.compile(r"Invalid value '(.*)', expected one of \[(.*)\]")


def _omegaconf_line(error: OmegaConfBaseException) -> str:
    key = error.full_key or error.key
    msg = (error.msg or str(error)).splitlines()[0]  # the rest: full_key, object_type
    if key and isinstance(error, (AttributeError, KeyError)) and "not in" in msg:
        # object_type: the section's own schema, e.g. LoRAConfig for adapter=lora
        return unknown_key_message(str(key), getattr(error, "object_type", None))
    if key and (choice := _NOT_A_CHOICE.fullmatch(msg)):
        return f"{key}={choice[1]}: valid choices: {choice[2]}"
    return f"{key}: {_collapse(msg)}" if key else _collapse(msg)


def _worker_error(text: str) -> str | None:
    """The original message of an error a DataLoader worker raised, or None.

    torch re-raises it in the main process as ``Caught E in DataLoader worker process N.`` followed
    by the worker's whole traceback; its last line is ``E: <the message>``.
    """
    if not (text.startswith("Caught ") and "DataLoader worker process" in text):
        return None
    last = [line for line in text.splitlines() if line.strip()][-1]
    name, sep, message = last.partition(": ")
    return message if sep and name.replace(".", "").isidentifier() else last


def one_line(error: BaseException) -> str:
    """The message of a user error as one line naming the key or file."""
    if isinstance(error, MissingConfigException) and error.options:
        group = (error.missing_cfg_file or "").rpartition("/")[0] or "the config"
        choices = ", ".join(error.options)
        return f"no config '{error.missing_cfg_file}'; valid choices of {group}: {choices}"
    if isinstance(error, HydraException) and isinstance(error.__cause__, OmegaConfBaseException):
        return _omegaconf_line(error.__cause__)
    if isinstance(error, OmegaConfBaseException):
        return _omegaconf_line(error)
    if isinstance(error, KeyError) and error.args:
        return _collapse(str(error.args[0]))
    worker = _worker_error(str(error))
    text = _collapse(worker if worker is not None else str(error)) or type(error).__name__
    filename = getattr(error, "filename", None)
    if filename is not None and str(filename) not in text:
        text = f"{filename}: {text}"
    return text


def reports_errors(prog: str) -> Callable[[F], F]:
    """Decorate a command's ``main``: user errors become one line on stderr and status 2.

    Args:
        prog: The command as the user typed it, e.g. ``dino-mx eval``; starts the line.
    """

    def decorate(main: F) -> F:
        @functools.wraps(main)
        def wrapper(*args: object, **kwargs: object) -> int:
            try:
                return main(*args, **kwargs)
            except BaseException as error:
                if debug_requested() or not is_user_error(error):
                    raise
                print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
                return USER_ERROR_STATUS

        return wrapper  # type: ignore[return-value]

    return decorate
