"""Shared check of the command line's error contract: one ``error: ...`` line, exit status 2."""

from __future__ import annotations

import pytest

from servesim.cli import main


def one_line(capsys, *args: str) -> str:
    """``main(args)`` in-process: exit 2 with one ``error:`` line and no traceback; returns the line."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.rstrip("\n")
