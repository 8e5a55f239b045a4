"""The ``servesim`` command line: a thin layer over the Python API.

``app`` is the typer application; each ``*_cmds`` module registers its
commands on it when imported here.  User mistakes (``ServesimError``) print
one line, ``error: ...``, and exit with status 2; anything else is a bug and
keeps its traceback.
"""

from servesim.cli.app import app, main

__all__ = ["app", "main"]
