"""vLLM's per-step log: the engine's own record of every step it ran.

Started with ``--enable-logging-iteration-details``, vLLM logs one line per engine step::

    Iteration(12): 1 context requests, 987 context tokens, 2 generation requests,
    2 generation tokens, iteration elapsed time: 187.53 ms, CPU KV cache usage: 0.3%

and with ``VLLM_LOGGING_CONFIG_PATH`` pointing at a logging config whose format starts with
``%(created).6f`` (``LOGGING_CONFIG``), each line carries its time in microseconds.  The gap
between two lines is the step's cadence: the forward pass ("elapsed") plus the engine loop's
scheduling, output handling and IPC, which is what a client sees between two tokens and what
``servesim probe`` measures.  ``servesim.live`` reads it to check that an engine ran its steps at
the speed a calibration says (the real-engine test's drift meter), never to time a probe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LOGGING_CONFIG", "Iteration", "read_iterations"]

#: A ``logging.config.dictConfig`` for ``VLLM_LOGGING_CONFIG_PATH``: vLLM's lines, to stdout,
#: stamped with the epoch time in microseconds.
LOGGING_CONFIG = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"stamped": {"format": "%(created).6f %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "stamped", "stream": "ext://sys.stdout"}},
    "loggers": {"vllm": {"handlers": ["stdout"], "level": "INFO", "propagate": False}},
}

_LINE = re.compile(
    r"^(?:\(\w+ pid=\d+\) )?(?P<t>\d+\.\d+) .*Iteration\((?P<i>\d+)\): (?P<preq>\d+) context requests, "
    r"(?P<ptok>\d+) context tokens, (?P<dreq>\d+) generation requests, \d+ generation tokens, "
    r"iteration elapsed time: (?P<elapsed>[\d.]+) ms")


@dataclass(frozen=True)
class Iteration:
    """One engine step as vLLM logged it.

    time_s: when the line was logged (epoch seconds); prefill_requests, prefill_tokens: the
    prompts (or chunks) computed; decode_requests: sequences that generated a token;
    elapsed_s: the forward pass and sampling; cadence_s: time since the previous step's line,
    None for a step that may have followed an idle engine (no decoding sequence in it).
    """

    index: int
    time_s: float
    prefill_requests: int
    prefill_tokens: int
    decode_requests: int
    elapsed_s: float
    cadence_s: float | None


def read_iterations(lines: Iterable[str]) -> list[Iteration]:
    """The steps in ``lines`` of a vLLM server's log, in order (other lines are skipped).

    A step's cadence is known only when a sequence was decoding in it: then the step before it
    ran too, back to back; a step of prompts alone may follow an idle engine, whose wait is no
    step's."""
    out: list[Iteration] = []
    previous: float | None = None
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            continue
        t = float(match["t"])
        decode = int(match["dreq"])
        cadence = t - previous if previous is not None and decode > 0 else None
        out.append(Iteration(int(match["i"]), t, int(match["preq"]), int(match["ptok"]), decode,
                             float(match["elapsed"]) / 1e3, cadence))
        previous = t
    return out
