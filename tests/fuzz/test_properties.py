"""Hypothesis-made malformed inputs end in a result or one ``ServesimError`` line, nothing else.

(a) a valid tiny scenario, mutated (a field dropped, a value replaced by a wrong-typed,
    out-of-range, huge, infinite or NaN one, an unknown key added at some depth), through
    ``validate_config`` and, when valid, ``simulate``;
(b) a valid trace of each format with random cells corrupted, through ``read_trace``
    (``on_bad_row`` skip and error);
(c) a valid steps CSV with random cells corrupted, through ``read_steps_csv``.

Every example must either succeed or raise a ``ServesimError`` whose ``str`` is one non-empty
line; any other exception (or a run past the time bound) is a bug.  Sizes are tiny and example
counts small, so the whole file runs in seconds.
"""

from __future__ import annotations

import copy
import math
import signal
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.api import simulate
from servesim.config import validate_config
from servesim.errors import InvariantError, ServesimError
from servesim.perf.steprows import read_steps_csv
from servesim.workload.traces import read_trace

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIME_LIMIT_S = 30

SCENARIO: dict[str, Any] = {
    "name": "fuzz",
    "seed": 3,
    "workload": {
        "kind": "synthetic",
        "num_requests": 4,
        "arrival": {"process": "poisson", "rate_rps": 4.0},
        "prompt_tokens": {"dist": "uniform", "low": 16, "high": 64},
        "output_tokens": {"dist": "fixed", "value": 4},
    },
    "cluster": {"num_replicas": 1, "model": "llama-3-8b", "hardware": "h100"},
    "scheduler": {"max_num_seqs": 8, "max_num_batched_tokens": 512},
    "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
}

BAD_VALUES = st.sampled_from(
    [None, "", "x", "1e3", True, [], [1], {}, {"a": 1}, 0, -1, -0.5, 0.5, 1.5, 10**12, 2**70, 1e300,
     -1e300, math.inf, -math.inf, math.nan, "inf", "nan", "h900", "llama-9-999b"]
)


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested mapping (leaves and sections)."""
    out = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.append(prefix + (key,))
            out += _paths(value, prefix + (key,))
    return out


def _parent(tree: dict, path: tuple) -> dict:
    for key in path[:-1]:
        tree = tree[key]
    return tree


PATHS = _paths(SCENARIO)
SECTIONS = [()] + [p for p in PATHS if isinstance(_parent(SCENARIO, p)[p[-1]], dict)]


@st.composite
def mutated_scenarios(draw) -> dict:
    raw = copy.deepcopy(SCENARIO)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "replace", "unknown"]))
        if action == "unknown":
            section = draw(st.sampled_from(SECTIONS))
            target = raw
            for key in section:
                target = target.get(key) if isinstance(target, dict) else None
            if isinstance(target, dict):
                target[draw(st.sampled_from(["colour", "num_replica", "Seed", "x.y", ""]))] = draw(BAD_VALUES)
            continue
        path = draw(st.sampled_from(PATHS))
        try:
            parent = _parent(raw, path)
        except (KeyError, TypeError):
            continue
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        if action == "drop":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(BAD_VALUES)
    return raw


class _TimeUp(BaseException):
    pass


def _bounded(fn, *args, **kwargs):
    def alarm(signum, frame):
        raise _TimeUp(f"ran past {TIME_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_one_line(err: ServesimError) -> None:
    assert not isinstance(err, InvariantError), err
    text = str(err)
    assert text.strip() and "\n" not in text, repr(text)


@SETTINGS
@given(mutated_scenarios())
def test_mutated_scenario_is_valid_or_one_line_error(raw):
    try:
        config = validate_config(copy.deepcopy(raw))
        result = _bounded(simulate, config)
    except ServesimError as err:
        assert_one_line(err)
        return
    assert result.summary["num_requests"] >= 0


# --------------------------------------------------------------------------- traces

TRACES = {
    "azure2023.csv": "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    "2023-11-16 18:00:00.0000000,100,10\n2023-11-16 18:00:01.5000000,200,20\n2023-11-16 18:00:03.0000000,50,5\n",
    "azure2024.csv": "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    "2024-05-10 00:00:00.000000+00:00,100,10\n2024-05-10 00:00:01+00:00,200,20\n2024-05-10 00:00:02Z,50,5\n",
    "burstgpt.csv": "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    "0,ChatGPT,100,20,120,Conversation log\n1,GPT-4,200,0,200,API log\n3,ChatGPT,50,5,55,Conversation log\n",
    "mooncake.jsonl": '{"timestamp": 0, "input_length": 1000, "output_length": 10, "hash_ids": [1, 2]}\n'
    '{"timestamp": 1500, "input_length": 600, "output_length": 5, "hash_ids": [1, 3]}\n'
    '{"timestamp": 3000, "input_length": 1500, "output_length": 7, "hash_ids": [1, 2, 4]}\n',
}
CELLS = st.sampled_from(
    ["", "-1", "0", "abc", "1.5", "inf", "nan", "-inf", "1e400", "99999999999999999999999", " ", '"', "{", "[", "]",
     "null", "true", "2023-13-45 99:99:99", "\x00", "é", ",", "\\", "-0", "+5", "0x10"]
)


@st.composite
def corrupted_text(draw, text: str, separators: str = ",") -> str:
    """``text`` with a few random spans replaced by junk cells (headers included)."""
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        start = draw(st.integers(0, len(text) - 1))
        length = draw(st.integers(0, 12))
        text = text[:start] + draw(CELLS) + text[start + length:]
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # truncated
    return text


@st.composite
def corrupted_trace(draw):
    name = draw(st.sampled_from(sorted(TRACES)))
    return name, draw(corrupted_text(TRACES[name])), draw(st.sampled_from(["skip", "error"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted_trace())
def test_corrupted_trace_reads_or_one_line_error(case):
    name, text, on_bad_row = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        try:
            workload = _bounded(read_trace, path, on_bad_row=on_bad_row)
        except ServesimError as err:
            assert_one_line(err)
            return
    arrivals = workload.arrival_s
    assert len(arrivals) >= 1 and all(math.isfinite(a) and a >= 0 for a in arrivals)
    assert all(a <= b for a, b in zip(arrivals, arrivals[1:])), "arrivals not sorted"
    assert all(n >= 1 for n in workload.prompt_tokens) and all(n >= 1 for n in workload.output_tokens)


# --------------------------------------------------------------------------- steps

STEPS = (
    "model,kind,prefill_lens,decode_batch,decode_ctx,graphed,median_ms\n"
    "llama-3-8b,prefill,128+64,0,0,0,17.5\n"
    "llama-3-8b,decode,,8,512,1,6.25\n"
    "llama-3-8b,mixed,32,4,100,0,9.0\n"
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted_text(STEPS), st.booleans())
def test_corrupted_steps_csv_reads_or_one_line_error(text, require_measured):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "steps.csv"
        path.write_text(text, encoding="utf-8")
        try:
            table = _bounded(read_steps_csv, path, require_measured=require_measured)
        except ServesimError as err:
            assert_one_line(err)
            return
    for row in table.rows:
        assert row.kind in ("prefill", "decode", "mixed")
        assert all(n >= 1 for n in row.prefill_lens) and row.decode_batch >= 0 and row.decode_ctx >= 0
        if require_measured:
            assert row.measured_s is not None and math.isfinite(row.measured_s) and row.measured_s > 0
