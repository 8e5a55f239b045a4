"""Agent programs: LLM calls separated by tool calls and think time (a closed loop).

An agent program (a Claude Code conversation, say) is a sequence of calls:
each call is sent ``think_s`` after the previous one finished (the tool ran,
or the user thought), and its prompt holds the whole context so far.  Such
a workload is closed-loop: only a program's first call has an arrival time
of its own; the others follow (``Workload.follows`` / ``think_s``), and the
simulation sends them when their predecessor finishes.

Sources:

* ``read_claude_code``: the Claude Code agent trace format
  (../shared/traces/agentic-claude-code: one JSON object per conversation,
  64-token block hashes numbered per conversation; subagents nest their own
  calls, which run inside the parent's flow: the parent continues once the
  subagent is done).  A directory of ``*.json`` files or a ``.tar.gz`` of
  them.
* ``synthetic_programs``: turns, first prompt, tokens added per turn, output
  and tool time drawn from distributions; the prefix chains continue the
  previous call's prompt.

``programs_workload`` turns programs plus their start times into a
``Workload``: calls in program order, ``session_id`` = program index,
``priority`` = program index (so a priority queue serves programs first
come, first served), prefix chains namespaced per program.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import count as counter
from pathlib import Path

import numpy as np

from servesim.errors import TraceError
from servesim.workload.request import Workload


@dataclass(frozen=True)
class Call:
    """One LLM call of a program: its prompt and output lengths, the delay before it is sent
    (after the previous call finished; ignored for a program's first call), and its prompt's
    block hashes (program-local)."""

    prompt_tokens: int
    output_tokens: int
    think_s: float
    block_ids: tuple[int, ...]


# ----------------------------------------------------------------- Claude Code traces


def read_claude_code(path: str | Path, max_programs: int | None = None) -> tuple[list[list[Call]], int]:
    """Programs of a Claude Code trace directory or tarball (sorted by file name), and the block
    size of their hashes.  Raises ``TraceError`` for unreadable or malformed files."""
    path = Path(path)
    conversations = list(_conversations(path, max_programs))
    if not conversations:
        raise TraceError(f"{path}: no Claude Code conversations (*.json) found")
    block_sizes = {int(c.get("block_size", 64)) for _, c in conversations}
    if len(block_sizes) != 1:
        raise TraceError(f"{path}: conversations use different block sizes {sorted(block_sizes)}")
    programs = []
    for name, conversation in conversations:
        try:
            calls = list(_flatten(conversation["requests"]))
        except (KeyError, TypeError, ValueError) as err:
            raise TraceError(f"{path}: {name}: malformed request ({err})") from None
        if calls:
            programs.append(calls)
    return programs, block_sizes.pop()


def _conversations(path: Path, limit: int | None) -> Iterable[tuple[str, dict]]:
    if path.is_dir():
        files = sorted(path.glob("*.json"))[:limit]
        for f in files:
            try:
                data = f.read_bytes()
            except OSError as err:
                raise TraceError(f"{path}: {f.name}: cannot read it ({err.strerror or err})") from None
            yield f.name, _load(data, f.name, path)
        return
    try:
        with tarfile.open(path) as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".json")), key=lambda m: m.name)
            for m in members[:limit]:
                yield m.name, _load(tar.extractfile(m).read(), m.name, path)
    except (OSError, tarfile.TarError) as err:
        raise TraceError(f"{path}: cannot read Claude Code traces ({err})") from None


def _load(data: bytes, name: str, path: Path) -> dict:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TraceError(f"{path}: {name}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise TraceError(f"{path}: {name}: not JSON ({err.msg} at line {err.lineno})") from None


def _flatten(requests: Sequence[dict]) -> Iterable[Call]:
    """The calls of a conversation in the order they run: a subagent's calls in place."""
    for r in requests:
        if r.get("type") == "subagent":
            yield from _flatten(r.get("requests", []))
            continue
        yield Call(int(r["in"]), max(int(r["out"]), 1), float(r.get("think_time", 0.0)), tuple(int(h) for h in r["hash_ids"]))


# ----------------------------------------------------------------- synthetic programs


def synthetic_programs(
    rng: np.random.Generator,
    num_programs: int,
    *,
    turns: np.ndarray,
    first_prompt: np.ndarray,
    added: np.ndarray,
    output: np.ndarray,
    tool_s: np.ndarray,
    block_tokens: int,
) -> list[list[Call]]:
    """Programs whose call ``k + 1`` prompts with call ``k``'s prompt and output plus ``added`` new
    tokens; the draws come in flat arrays (one value per program for ``turns`` and ``first_prompt``,
    one per call for the others, used in order).  Block hashes continue the previous prompt's."""
    programs = []
    cursor = 0
    for p in range(num_programs):
        fresh = counter()
        calls: list[Call] = []
        prompt = int(first_prompt[p])
        chain: tuple[int, ...] = ()
        for k in range(int(turns[p])):
            i = cursor + k
            if k:
                previous = calls[-1]
                prompt = previous.prompt_tokens + previous.output_tokens + int(added[i])
                keep = previous.prompt_tokens // block_tokens
                chain = previous.block_ids[:keep]
            total = -(-prompt // block_tokens)
            chain = chain + tuple(next(fresh) for _ in range(total - len(chain)))
            calls.append(Call(prompt, int(output[i]), float(tool_s[i]) if k else 0.0, chain))
        cursor += int(turns[p])
        programs.append(calls)
    return programs


# ----------------------------------------------------------------- to a workload


def programs_workload(programs: Sequence[Sequence[Call]], starts: np.ndarray, block_tokens: int, source: str) -> Workload:
    """A closed-loop workload: program ``p``'s first call arrives at ``starts[p]``, each other call
    follows the one before it.  Block hashes are made global (program index in the high bits)."""
    arrival, prompt, output, priority, session, follows, think, chains = [], [], [], [], [], [], [], []
    for p, calls in enumerate(programs):
        for k, call in enumerate(calls):
            row = len(arrival)
            arrival.append(float(starts[p]) if k == 0 else float("inf"))
            prompt.append(call.prompt_tokens)
            output.append(call.output_tokens)
            priority.append(p)
            session.append(str(p))
            follows.append(row - 1 if k else -1)
            think.append(call.think_s if k else 0.0)
            chains.append(tuple((p << 32) | h for h in call.block_ids))
    return Workload.from_arrays(
        arrival, prompt, output, priority, session_id=session, follows=follows, think_s=think,
        prefix_block_ids=chains, prefix_block_size=block_tokens, source=source,
    )
