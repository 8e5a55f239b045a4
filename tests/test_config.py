"""Loading scenarios: overrides, path resolution, round trips, schema and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from servesim.config import ScenarioConfig, apply_override, load_config, validate_config
from servesim.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SYNTHETIC = {
    "name": "cfg-test",
    "workload": {
        "kind": "synthetic",
        "num_requests": 10,
        "arrival": {"process": "poisson", "rate_rps": 2.0},
        "prompt_tokens": {"dist": "uniform", "low": 10, "high": 20},
        "output_tokens": {"dist": "fixed", "value": 5},
    },
}


def write_yaml(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def config_error(**kwargs) -> str:
    """The message of the ConfigError that load_config raises; checks it is one line."""
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    return message


# --------------------------------------------------------------------------- overrides


def test_default_scenario_without_a_file():
    cfg = load_config(None)
    # Every field's default, plus examples/default.yaml's SLOs.
    assert cfg == ScenarioConfig(slo={"ttft_s": 0.5, "tpot_s": 0.05})
    assert cfg.workload.kind == "trace" and cfg.workload.path == "builtin:azure-2023-conv"
    assert cfg.cluster.model == "llama-3-8b" and cfg.cluster.hardware == "h100"


def test_overrides_apply_on_top_of_the_file(tmp_path):
    path = write_yaml(tmp_path / "s.yaml", {**SYNTHETIC, "cluster": {"num_replicas": 2, "model": "mistral-7b"}})
    cfg = load_config(path, ["cluster.num_replicas=4", "workload.arrival.rate_rps=8", "seed=3"])
    assert cfg.cluster.num_replicas == 4
    assert cfg.cluster.model == "mistral-7b"  # untouched sibling kept
    assert cfg.workload.arrival.rate_rps == 8.0
    assert cfg.seed == 3


def test_later_override_wins():
    cfg = load_config(None, ["cluster.num_replicas=2", "cluster.num_replicas=5"])
    assert cfg.cluster.num_replicas == 5


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("a.b=4", 4),
        ("a.b=0.25", 0.25),
        ("a.b=1e-3", "1e-3"),  # YAML 1.1: no dot, so not a float; pydantic parses the string later
        ("a.b=true", True),
        ("a.b=False", False),
        ("a.b=null", None),
        ("a.b=~", None),
        ("a.b=", None),
        ("a.b=llama-3-8b", "llama-3-8b"),
        ("a.b='4'", "4"),
        ("a.b=[1, 2]", [1, 2]),
        ("a.b={x: 1}", {"x": 1}),
        ("a.b=x=y", "x=y"),  # only the first '=' splits
        ("a.b=[1", "[1"),  # not valid YAML: kept as text
    ],
)
def test_override_values_are_parsed_as_yaml(item, expected):
    raw: dict = {}
    apply_override(raw, item)
    assert raw == {"a": {"b": expected}}
    assert type(raw["a"]["b"]) is type(expected)


def test_override_creates_missing_sections_and_keeps_siblings():
    raw = {"cluster": {"model": "qwen2.5-7b"}}
    apply_override(raw, " cluster.num_replicas =3")
    apply_override(raw, "slo.ttft_s=0.5")
    assert raw == {"cluster": {"model": "qwen2.5-7b", "num_replicas": 3}, "slo": {"ttft_s": 0.5}}


def test_typed_override_values_reach_the_config():
    cfg = load_config(
        None,
        ["cluster.gpu_memory_utilization=0.8", "cluster.cuda_graphs=false", "horizon_s=120", "cluster.max_model_len=null"],
    )
    assert cfg.cluster.gpu_memory_utilization == 0.8
    assert cfg.cluster.cuda_graphs is False
    assert cfg.horizon_s == 120.0
    assert cfg.cluster.max_model_len is None


@pytest.mark.parametrize("item", ["cluster.num_replicas", "=4", " =4", "", "cluster.num_replicas 4"])
def test_bad_override_syntax(item):
    message = config_error(path=None, overrides=[item])
    assert f"override {item!r}" in message
    assert "KEY.PATH=VALUE" in message


def test_override_through_a_value_is_an_error():
    message = config_error(path=None, overrides=["seed=1", "seed.x=2"])
    assert message == "override 'seed.x=2': 'seed' is a value, not a section"


# --------------------------------------------------------------------------- paths


def test_relative_trace_path_is_resolved_against_the_scenario_folder(tmp_path, monkeypatch):
    folder = tmp_path / "scenarios"
    trace = folder / "traces" / "t.csv"
    trace.parent.mkdir(parents=True)
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0000000,10,5\n")
    path = write_yaml(folder / "s.yaml", {"workload": {"kind": "trace", "path": "traces/t.csv"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path)
    assert Path(cfg.workload.path) == trace.resolve()
    # A relative scenario path works the same way.
    monkeypatch.chdir(tmp_path)
    assert Path(load_config(Path("scenarios/s.yaml")).workload.path) == trace.resolve()


def test_empirical_trace_and_catalog_files_are_resolved_too(tmp_path):
    (tmp_path / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0000000,10,5\n")
    (tmp_path / "extra.yaml").write_text("models: {}\n")
    data = {
        "workload": {
            **SYNTHETIC["workload"],
            "prompt_tokens": {"dist": "empirical", "trace": "t.csv", "column": "prompt"},
        },
        "catalog": {"files": ["extra.yaml"]},
    }
    cfg = load_config(write_yaml(tmp_path / "s.yaml", data))
    assert Path(cfg.workload.prompt_tokens.trace) == (tmp_path / "t.csv").resolve()
    assert [Path(f) for f in cfg.catalog.files] == [(tmp_path / "extra.yaml").resolve()]


def test_builtin_absolute_and_missing_paths_are_left_alone(tmp_path):
    path = write_yaml(tmp_path / "a.yaml", {"workload": {"kind": "trace", "path": "builtin:azure-2023-conv"}})
    assert load_config(path).workload.path == "builtin:azure-2023-conv"
    absolute = str(tmp_path / "abs.csv")
    path = write_yaml(tmp_path / "b.yaml", {"workload": {"kind": "trace", "path": absolute}})
    assert load_config(path).workload.path == absolute
    # A path that does not exist next to the scenario stays as written (the
    # trace reader reports it as missing, relative to the working folder).
    path = write_yaml(tmp_path / "c.yaml", {"workload": {"kind": "trace", "path": "nope.csv"}})
    assert load_config(path).workload.path == "nope.csv"


def test_override_paths_are_not_rebased_on_the_scenario_folder(tmp_path):
    (tmp_path / "t.csv").write_text("x\n")
    path = write_yaml(tmp_path / "s.yaml", {"workload": {"kind": "trace", "path": "builtin:azure-2023-conv"}})
    assert load_config(path, ["workload.path=t.csv"]).workload.path == "t.csv"


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_load_and_round_trip(example):
    cfg = load_config(EXAMPLES / example)
    data = cfg.to_dict()
    assert ScenarioConfig.model_validate(data) == cfg
    # The dict is plain YAML-safe data, and survives a YAML round trip too.
    assert ScenarioConfig.model_validate(yaml.safe_load(yaml.safe_dump(data))) == cfg


def test_round_trip_with_every_section_set(tmp_path):
    data = {
        **SYNTHETIC,
        "seed": 11,
        "horizon_s": 30.5,
        "cluster": {"num_replicas": 3, "tensor_parallel": 2, "activation_reserve_gb": 1.5, "max_model_len": 4096},
        "scheduler": {"max_num_seqs": 32, "chunked_prefill": False, "policy": "priority"},
        "router": {"policy": "least_outstanding"},
        "slo": {"ttft_s": 0.5, "tpot_s": 0.05, "e2e_s": 10},
        "engine": {"fast_path": False, "timeseries_interval_s": 0.5},
        "catalog": {"models": {"tiny": {"name": "Tiny"}}},
    }
    cfg = load_config(write_yaml(tmp_path / "s.yaml", data))
    assert ScenarioConfig.model_validate(cfg.to_dict()) == cfg
    assert validate_config(cfg.to_dict()) == cfg
    assert cfg.to_dict()["slo"] == {"ttft_s": 0.5, "tpot_s": 0.05, "e2e_s": 10.0}


def test_config_is_frozen():
    cfg = load_config(None)
    with pytest.raises(Exception):
        cfg.cluster.num_replicas = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- schema


def _properties(schema: dict):
    """Every (owner, field name, field schema) in the schema and its $defs."""
    owners = [("ScenarioConfig", schema)] + list(schema.get("$defs", {}).items())
    for owner, node in owners:
        for name, field in node.get("properties", {}).items():
            yield owner, name, field


def test_schema_documents_every_field():
    schema = ScenarioConfig.model_json_schema()
    fields = list(_properties(schema))
    # Every section's model is in $defs, so the walk reaches every leaf field.
    owners = {owner for owner, _, _ in fields}
    for section in ("ClusterConfig", "SchedulerConfig", "RouterConfig", "SloTargets", "StepTimeParams",
                    "EngineConfig", "CatalogConfig", "TraceWorkloadConfig", "SyntheticWorkloadConfig",
                    "ArrivalConfig", "LengthConfig"):
        assert section in owners
    undocumented = [f"{owner}.{name}" for owner, name, field in fields if not str(field.get("description", "")).strip()]
    assert undocumented == []
    assert len(fields) > 50


def test_schema_field_names_match_the_models():
    schema = ScenarioConfig.model_json_schema()
    assert set(schema["properties"]) == set(ScenarioConfig.model_fields)
    assert set(schema["$defs"]["ClusterConfig"]["properties"]) >= {"num_replicas", "model", "hardware"}


# --------------------------------------------------------------------------- errors


def test_unknown_field_lists_the_allowed_fields():
    message = config_error(path=None, overrides=["cluster.num_replica=4"])
    assert message.startswith("config error: cluster.num_replica: unknown field")
    allowed = message.split("(allowed: ", 1)[1].rstrip(")").split(", ")
    assert "num_replicas" in allowed and "hardware" in allowed and "tensor_parallel" in allowed


def test_unknown_top_level_field():
    message = config_error(path=None, overrides=["seeds=1"])
    assert message.startswith("config error: seeds: unknown field (allowed: name, seed, horizon_s, workload,")


@pytest.mark.parametrize(
    ("override", "path", "allowed"),
    [
        ("workload.foo=1", "workload.foo", "num_requests, arrival, prompt_tokens, output_tokens"),
        ("workload.arrival.foo=1", "workload.arrival.foo", "rate_rps, cv"),
        ("workload.prompt_tokens.foo=1", "workload.prompt_tokens.foo", "median, sigma"),
    ],
)
def test_unknown_workload_field_lists_the_allowed_fields(tmp_path, override, path, allowed):
    scenario = write_yaml(tmp_path / "s.yaml", SYNTHETIC)
    message = config_error(path=scenario, overrides=[override])
    assert message.startswith(f"config error: {path}: unknown field (allowed: ")
    assert allowed in message


def test_unknown_trace_workload_field_lists_trace_fields():
    message = config_error(path=None, overrides=["workload.kind=trace", "workload.path=x.csv", "workload.rate=2"])
    assert message.startswith("config error: workload.rate: unknown field (allowed: kind, path, format,")
    assert "rate_scale" in message


def test_wrong_type_names_field_and_value():
    message = config_error(path=None, overrides=["cluster.num_replicas=abc"])
    assert message.startswith("config error: cluster.num_replicas = 'abc': ")
    assert "integer" in message


def test_wrong_type_bool():
    message = config_error(path=None, overrides=["cluster.cuda_graphs=maybe"])
    assert message.startswith("config error: cluster.cuda_graphs = 'maybe': ")


@pytest.mark.parametrize(
    ("override", "start"),
    [
        ("cluster.num_replicas=0", "config error: cluster.num_replicas = 0: "),
        ("cluster.gpu_memory_utilization=1.5", "config error: cluster.gpu_memory_utilization = 1.5: "),
        ("seed=-1", "config error: seed = -1: "),
        ("horizon_s=0", "config error: horizon_s = 0: "),
        ("slo.ttft_s=-0.5", "config error: slo.ttft_s = -0.5: "),
    ],
)
def test_out_of_range_names_field_and_value(override, start):
    message = config_error(path=None, overrides=[override])
    assert message.startswith(start)
    assert "greater than" in message or "less than" in message


def test_bad_choice_lists_the_choices():
    message = config_error(path=None, overrides=["router.policy=fastest"])
    assert message.startswith("config error: router.policy = 'fastest': ")
    assert "'round_robin'" in message and "'least_outstanding'" in message


def test_workload_override_without_a_scenario_refines_the_default_trace():
    cfg = load_config(None, ["workload.rate_scale=4"])
    assert cfg.workload.kind == "trace" and cfg.workload.path == "builtin:azure-2023-conv"
    assert cfg.workload.rate_scale == 4.0


def test_workload_without_kind_names_the_kinds(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("workload:\n  rate_scale: 4\n")
    message = config_error(path=path)
    assert message == "config error: workload.kind: required field is missing (allowed: trace, synthetic, agent)"


def test_unknown_workload_kind():
    message = config_error(path=None, overrides=["workload.kind=replay"])
    assert message == "config error: workload.kind = 'replay': unknown kind (allowed: trace, synthetic, agent)"


def test_trace_workload_missing_path():
    message = config_error(path=None, overrides=["workload.kind=trace"])
    assert message == "config error: workload.path: required field is missing"


@pytest.mark.parametrize("missing", ["low", "high"])
def test_synthetic_length_missing_a_needed_field(tmp_path, missing):
    data = yaml.safe_load(yaml.safe_dump(SYNTHETIC))
    del data["workload"]["prompt_tokens"][missing]
    message = config_error(path=write_yaml(tmp_path / "s.yaml", data))
    assert message == (
        f"config error: workload.prompt_tokens: dist='uniform' needs field '{missing}' (got {missing}=None)"
    )


def test_synthetic_missing_a_whole_length_section(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(SYNTHETIC))
    del data["workload"]["output_tokens"]
    message = config_error(path=write_yaml(tmp_path / "s.yaml", data))
    assert message == "config error: workload.output_tokens: required field is missing"


def test_length_field_named_trace_keeps_its_path(tmp_path):
    # 'trace' is both a workload kind and a LengthConfig field; the path must keep the field.
    data = yaml.safe_load(yaml.safe_dump(SYNTHETIC))
    data["workload"]["prompt_tokens"] = {"dist": "empirical", "trace": 3, "column": "prompt"}
    message = config_error(path=write_yaml(tmp_path / "s.yaml", data))
    assert message.startswith("config error: workload.prompt_tokens.trace = 3: ")


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ncluster:\n  num_replicas: 1\n   model: llama-3-8b\n")
    message = config_error(path=path)
    assert message.startswith(f"{path}: line 4: ")
    assert "mapping values are not allowed" in message


def test_malformed_yaml_unclosed_bracket(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nseed: [1\n")
    message = config_error(path=path)
    assert message.startswith(f"{path}: line ")
    assert "line 3" in message  # the parser notices at the end of the stream


def test_scenario_file_not_found(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert config_error(path=missing) == f"scenario file not found: {missing}"


def test_scenario_path_is_a_folder(tmp_path):
    message = config_error(path=tmp_path)
    assert message.startswith(f"cannot read scenario file {tmp_path}: ")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")])
def test_scenario_that_is_not_a_mapping(tmp_path, text, kind):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert config_error(path=path) == f"{path}: a scenario must be a mapping of sections, got {kind}"


def test_empty_scenario_file_is_the_default(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    assert load_config(path) == ScenarioConfig()


def test_section_that_is_not_a_mapping(tmp_path):
    message = config_error(path=write_yaml(tmp_path / "s.yaml", {"cluster": 3}))
    assert message.startswith("config error: cluster = 3: ")


def test_validate_config_raises_config_error_not_pydantic():
    with pytest.raises(ConfigError) as info:
        validate_config({"engine": {"timeseries_interval_s": 0}})
    assert str(info.value).startswith("config error: engine.timeseries_interval_s = 0: ")


def test_the_default_scenario_is_examples_default_yaml_with_its_slos():
    # The tutorial calls examples/default.yaml "the default scenario written out".
    built_in = load_config(None)
    assert built_in.to_dict() == load_config(EXAMPLES / "default.yaml").to_dict()
    assert (built_in.slo.ttft_s, built_in.slo.tpot_s) == (0.5, 0.05)
    # Overrides refine the default SLOs; a scenario file without an slo section has none.
    assert load_config(None, ["slo.ttft_s=1.0"]).slo.tpot_s == 0.05
    assert validate_config({}).slo.ttft_s is None


def test_a_boolean_for_a_number_is_refused_naming_the_field():
    import pytest as _pytest

    from servesim.config import validate_config
    from servesim.errors import ConfigError

    with _pytest.raises(ConfigError, match=r"workload.arrival.rate_rps = true: Input should be a number, not a boolean"):
        validate_config({"workload": {"kind": "synthetic", "num_requests": 4,
                                      "arrival": {"process": "poisson", "rate_rps": True},
                                      "prompt_tokens": {"dist": "fixed", "value": 8},
                                      "output_tokens": {"dist": "fixed", "value": 2}}})
    # Boolean fields keep their booleans.
    assert validate_config({"cluster": {"cuda_graphs": False}}).cluster.cuda_graphs is False
