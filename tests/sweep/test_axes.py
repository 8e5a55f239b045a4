"""Axis expansion (grid, zip, random), config hashes, and bad specs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from sweep_scenarios import tiny_base
from servesim.config import validate_config
from servesim.errors import ConfigError
from servesim.sweep.axes import build_runs, config_hash, expand_axes
from servesim.sweep.spec import SweepSpec, parse_spec


def blocks(*raw):
    return parse_spec({"name": "t", "axes": list(raw)}, SweepSpec).axes


def test_grid_is_the_product_first_field_outermost():
    got = expand_axes(blocks({"kind": "grid", "fields": {"a": [1, 2], "b": ["x", "y", "z"]}}))
    # 2 x 3 = 6 assignments, b varying fastest.
    assert got == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
                   {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"}]


def test_zip_takes_positions_and_blocks_multiply():
    got = expand_axes(blocks({"kind": "zip", "fields": {"a": [1, 2, 3], "b": [10, 20, 30]}},
                             {"kind": "grid", "fields": {"c": [True, False]}}))
    # 3 zip positions x 2 grid values = 6.
    assert got == [{"a": 1, "b": 10, "c": True}, {"a": 1, "b": 10, "c": False},
                   {"a": 2, "b": 20, "c": True}, {"a": 2, "b": 20, "c": False},
                   {"a": 3, "b": 30, "c": True}, {"a": 3, "b": 30, "c": False}]


def test_zip_lists_of_different_lengths_are_refused():
    with pytest.raises(ConfigError, match=r"axes\.0\.zip.*one length"):
        blocks({"kind": "zip", "fields": {"a": [1, 2], "b": [1]}})


def test_random_samples_replay_the_seeded_generator():
    got = expand_axes(blocks({"kind": "random", "samples": 3, "seed": 5,
                              "fields": {"n": {"int": [1, 8]}, "x": {"float": [0.5, 2.0]},
                                         "g": {"choice": ["h100", "a100"]}}}))
    # By hand: sample by sample, field by field, one generator seeded 5.
    rng = np.random.default_rng(5)
    want = []
    for _ in range(3):
        n = int(rng.integers(1, 9))
        x = float(rng.uniform(0.5, 2.0))
        g = ["h100", "a100"][int(rng.integers(2))]
        want.append({"n": n, "x": x, "g": g})
    assert got == want
    assert got == expand_axes(blocks({"kind": "random", "samples": 3, "seed": 5,
                                      "fields": {"n": {"int": [1, 8]}, "x": {"float": [0.5, 2.0]},
                                                 "g": {"choice": ["h100", "a100"]}}}))


def test_config_hash_is_sha256_of_the_canonical_json_and_stable():
    config = validate_config(tiny_base())
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    assert config_hash(config) == hashlib.sha256(text.encode()).hexdigest()[:16]
    # Same config through a round trip (and keys in another order): same hash.
    reordered = dict(reversed(list(config.to_dict().items())))
    assert config_hash(validate_config(reordered)) == config_hash(config)
    other = validate_config({**tiny_base(), "seed": 2})
    assert config_hash(other) != config_hash(config)


def test_build_runs_sets_fields_and_drops_duplicates(tmp_path: Path):
    spec = parse_spec({"name": "t", "base": tiny_base(),
                       "axes": [{"kind": "grid", "fields": {"cluster.num_replicas": [1, 2, 1]}}]}, SweepSpec)
    runs = build_runs(spec.axes, spec.base, tmp_path)
    assert [r.config.cluster.num_replicas for r in runs] == [1, 2]  # the second 1 is the same config
    assert [r.assignment for r in runs] == [{"cluster.num_replicas": 1}, {"cluster.num_replicas": 2}]


def test_bad_axis_value_names_the_field_before_anything_runs(tmp_path: Path):
    spec = parse_spec({"name": "t", "base": tiny_base(),
                       "axes": [{"kind": "grid", "fields": {"cluster.num_replicas": [1, 0]}}]}, SweepSpec)
    with pytest.raises(ConfigError) as err:
        build_runs(spec.axes, spec.base, tmp_path)
    assert "cluster.num_replicas = 0" in str(err.value) and "greater than or equal to 1" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_axis_field_is_named(tmp_path: Path):
    spec = parse_spec({"name": "t", "base": tiny_base(),
                       "axes": [{"kind": "grid", "fields": {"cluster.num_replica": [1]}}]}, SweepSpec)
    with pytest.raises(ConfigError, match=r"cluster\.num_replica: unknown field"):
        build_runs(spec.axes, spec.base, tmp_path)


def test_spec_errors_name_the_spec_field():
    with pytest.raises(ConfigError, match=r"spec: axes\.0\.random\.samples = 0: .*greater than or equal to 1"):
        parse_spec({"name": "t", "axes": [{"kind": "random", "samples": 0, "fields": {"a": {"int": [1, 2]}}}]},
                   SweepSpec)
    with pytest.raises(ConfigError, match="more than one axis block"):
        blocks({"kind": "grid", "fields": {"a": [1]}}, {"kind": "zip", "fields": {"a": [2]}})
    with pytest.raises(ConfigError, match="exactly one of choice, int, float"):
        blocks({"kind": "random", "samples": 1, "fields": {"a": {"int": [1, 2], "float": [1, 2]}}})
