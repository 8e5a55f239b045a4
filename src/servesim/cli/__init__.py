"""The ``servesim`` command line: a thin layer over the Python API.

``app`` is the typer application; each ``*_cmds`` module registers its
commands on it when imported here.  User-facing errors (``ServesimError``,
a user file that cannot be read or written, is not UTF-8, or is not YAML)
print one line, ``error: ...``, and exit with status 2 (``app.error_line``);
anything else is a bug: its traceback and a request to report it, status 1.
"""

from servesim.cli.app import app, main

__all__ = ["app", "main"]
