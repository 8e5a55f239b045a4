"""A scenario's workload as a replay actually sent it: ``servesim run --arrivals-from REPLAY_DIR``.

A replay's client sends each request at its arrival time, unless it falls behind: on a 2-vCPU
machine shared with the engine it is now and then descheduled for 0.1-1 s and then sends the
requests that fell due meanwhile all at once.  The engine saw those bunched sends, and a
simulation of the scheduled times cannot reproduce the queues they made.  Re-simulating the
workload with the replay's send times (its ``sent_s`` column) gives the simulator the arrival
process the engine saw; ``servesim compare --from-send`` then compares the two from each send.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from servesim.errors import ConfigError
from servesim.workload.request import Workload

__all__ = ["workload_as_sent"]


def workload_as_sent(workload: Workload, replay_dir: str | Path) -> Workload:
    """``workload`` with each request's arrival replaced by when ``replay_dir``'s replay sent it.

    The replay must be of this very workload: the same requests (ids 0..n-1, in arrival order)
    with the same prompt and output lengths, every one sent, send times non-decreasing, and no
    closed loop (whose arrivals follow completions, which the simulation makes itself).
    ``ConfigError`` (one line naming the option and what differs) otherwise."""
    import json

    import pyarrow.parquet as pq

    path = Path(replay_dir)
    where = f"option --arrivals-from {path}"
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        table = pq.read_table(path / "requests.parquet",
                              columns=["request_id", "prompt_tokens", "output_tokens", "sent_s"])
    except (OSError, ValueError, KeyError) as err:
        why = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{where}: not a replay's folder (needs summary.json and requests.parquet with sent_s: "
                          f"{why})") from None
    replay = summary.get("replay") if isinstance(summary, dict) else None
    if not isinstance(replay, dict):
        raise ConfigError(f"{where}: not a replay (its summary.json has no 'replay' section)")
    if replay.get("closed_loop"):
        raise ConfigError(f"{where}: a closed-loop replay's arrivals follow its completions; simulate its scenario")
    if float(replay.get("time_scale") or 1.0) != 1.0:
        raise ConfigError(f"{where}: the replay ran at --time-scale {replay['time_scale']}; only a replay at 1 sent "
                          "this workload's load")
    order = np.argsort(table.column("request_id").to_numpy(), kind="stable")
    ids = table.column("request_id").to_numpy()[order]
    n = len(workload)
    if len(ids) != n or not np.array_equal(ids, np.arange(n)):
        raise ConfigError(f"{where}: the replay holds {len(ids):,} requests, the scenario's workload {n:,}")
    for column, mine in (("prompt_tokens", workload.prompt_tokens), ("output_tokens", workload.output_tokens)):
        theirs = table.column(column).to_numpy()[order]
        if not np.array_equal(theirs, mine):
            i = int(np.flatnonzero(theirs != mine)[0])
            raise ConfigError(f"{where}: request {i} has {theirs[i]:,} {column.replace('_', ' ')} in the replay, "
                              f"{mine[i]:,} in the scenario's workload: another workload")
    sent = table.column("sent_s").to_numpy(zero_copy_only=False).astype(np.float64)[order]
    if not np.isfinite(sent).all():
        i = int(np.flatnonzero(~np.isfinite(sent))[0])
        raise ConfigError(f"{where}: request {i} was never sent")
    if (np.diff(sent) < 0).any() or sent[0] < 0:
        i = int(np.flatnonzero(np.diff(sent) < 0)[0]) + 1 if (np.diff(sent) < 0).any() else 0
        raise ConfigError(f"{where}: request {i} was sent at {sent[i]:.6f} s, before the request ahead of it "
                          "(send times must be non-decreasing and >= 0)")
    return replace(workload, arrival_s=sent, source=f"{workload.source} as sent by the replay in {path}")
