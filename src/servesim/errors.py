"""Every error servesim raises on purpose.

    ServesimError                 base; the CLI prints ``str(err)`` as one line
    ├── ConfigError               a scenario or override names a bad field/value
    ├── CatalogError              unknown model or GPU id, bad catalog entry
    ├── TraceError                a trace file is missing, unreadable or has no usable row
    ├── DeploymentError           a deployment that cannot run (model does not fit, ...)
    ├── OutputError               an output folder cannot be written, or holds something else
    └── InvariantError            a conservation check failed: a servesim bug

User mistakes (all but the last) are reported as one line naming the field, the
value and what is allowed.  ``InvariantError`` is a bug in servesim and is
never expected in a correct run.
"""

from __future__ import annotations


class ServesimError(Exception):
    """Base class; ``str(err)`` is a single human-readable line."""


class ConfigError(ServesimError):
    """A scenario field or command-line override is invalid."""


class CatalogError(ServesimError):
    """A model or hardware id is unknown, or a catalog entry is malformed."""


class TraceError(ServesimError):
    """A trace cannot be read, or yields no usable request."""


class DeploymentError(ServesimError):
    """The configured deployment cannot run (e.g. weights exceed GPU memory)."""


class OutputError(ServesimError):
    """An output folder is a file, cannot be written, or holds another run or files servesim did
    not write (``servesim.out_dir``)."""


class InvariantError(ServesimError):
    """A conservation invariant failed at the end of a run (a servesim bug)."""
