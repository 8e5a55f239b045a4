"""docs/scenarios.md is exactly what `servesim config docs` generates."""

from pathlib import Path

from servesim.report.config_docs import scenario_docs_markdown


def test_scenario_reference_is_current():
    doc = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"
    assert doc.read_text() == scenario_docs_markdown(), "run `servesim config docs > docs/scenarios.md`"


def test_reference_documents_every_section_and_field():
    text = scenario_docs_markdown()
    for heading in ("cluster", "scheduler", "router", "slo", "perf", "engine", "catalog", "workload (TraceWorkloadConfig)"):
        assert f"## `{heading}`" in text
    assert "| `max_num_batched_tokens` | `8192` |" in text
    assert "| `gpu_memory_utilization` | `0.9` |" in text
