"""The terminal answer of ``servesim search``: the best plan, or the Pareto front, as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_search(outcome, console: Console | None = None) -> None:
    """Print counts of trials, then the best feasible plan (one objective) or the Pareto front."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: wide enough that the front's table needs no wrapping
            console = Console(width=200)
    spec = outcome.spec
    trials = outcome.trials
    counts = {state: sum(t.state == state for t in trials) for state in ("complete", "pruned", "failed")}
    feasible = sum(t.feasible for t in trials)
    console.print(f"{len(trials)} trials: {counts['complete']} simulated ({feasible} feasible), "
                  f"{counts['pruned']} pruned, {counts['failed']} failed; results in {outcome.out_dir}/results.duckdb")
    front = outcome.front
    if not front:
        console.print("no trial met the constraints")
        return
    metrics = list(dict.fromkeys([o.metric for o in spec.objectives] + [c.metric for c in spec.constraints]))
    if len(spec.objectives) == 1:
        best = front[0]
        console.print(f"best plan: trial {best.number}, config {best.config_hash} "
                      f"(runs/{best.config_hash}/ holds its outputs)")
        for name in spec.space:
            console.print(f"  {name} = {_fmt(best.params[name])}")
        for name in metrics:
            console.print(f"  {name} = {_fmt(best.values.get(name))}")
        if len(front) > 1:
            console.print(f"  ({len(front) - 1} other plans tie on {spec.objectives[0].metric})")
        return
    table = Table(title=f"Pareto front ({len(front)} plans)")
    table.add_column("trial", justify="right")
    for name in spec.space:
        table.add_column(name, overflow="fold")
    for name in metrics:
        table.add_column(name, justify="right", overflow="fold")
    for t in front:
        table.add_row(str(t.number), *[_fmt(t.params[n]) for n in spec.space],
                      *[_fmt(t.values.get(m)) for m in metrics])
    console.print(table)
