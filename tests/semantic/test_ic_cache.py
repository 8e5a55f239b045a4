"""IC-Cache: requests with cached examples may go to the small model, with longer prompts."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import servesim
from servesim.cluster.model_routing import PoolProfile
from servesim.cluster.views import ReplicaSnapshot
from servesim.config import validate_config
from servesim.errors import ConfigError
from servesim.metrics.pools import pool_summary
from servesim.metrics.records import FINISHED, RequestTable
from servesim.scheduler.sequence import Sequence
from servesim.semantic.config import IcCacheConfig
from servesim.semantic.front import NO_EXAMPLES, RELATED, UNRELATED
from servesim.semantic.ic_cache import IcCacheRouter, quality_bonus

# Small: quality 0.85 - 0.4 d, holds KV peaks under 700 tokens; large: 0.97 - 0.12 d.
SMALL = PoolProfile("small", 0, 1, ((0.0, 0.85), (1.0, 0.45)), 1.0, 0.001, (0.01,), 700)
LARGE = PoolProfile("large", 1, 2, ((0.0, 0.97), (1.0, 0.85)), 5.0, 0.002, (0.02,), 100_000)


class _Front:
    def __init__(self, examples):
        self.examples = np.array(examples, np.int8)
        self.sent_with_examples = np.zeros(len(examples), np.int8)
        self.example_tokens = 0


def _router(difficulty, examples, **ic):
    front = _Front(examples)
    config = IcCacheConfig(**{"min_similarity": 0.8, "examples": 2, "tokens_per_example": 250, "quality_boost": 0.2, **ic})
    return IcCacheRouter([LARGE, SMALL], np.array(difficulty), front, config, min_quality=0.9), front


def test_examples_lift_the_small_model_over_min_quality():
    router, front = _router([0.25, 0.25, 0.5, 0.0], [RELATED, NO_EXAMPLES, RELATED, UNRELATED])
    views = [ReplicaSnapshot(0, 0, 0.0), ReplicaSnapshot(1, 3, 0.0), ReplicaSnapshot(2, 1, 0.0)]
    # d = 0.25 with examples: 0.85 - 0.1 + 0.2 = 0.95 >= 0.9: the small model, prompt 100 + 2 x 250.
    seq = Sequence(0, 0.0, 100, 10)
    assert router.route(seq, views) == 0
    assert seq.num_prompt == 600 and front.sent_with_examples[0] == RELATED and front.example_tokens == 500
    # Without examples: 0.75 < 0.9; the large model (0.94) on its less loaded replica (index 2).
    seq = Sequence(1, 0.0, 100, 10)
    assert router.route(seq, views) == 2 and seq.num_prompt == 100
    # d = 0.5 with examples: 0.85 - 0.2 + 0.2 = 0.85 < 0.9: large (0.91).
    assert router.choose_pool(Sequence(2, 0.0, 100, 10)) == (LARGE, False)
    # The router cannot tell an unrelated example: d = 0 -> 0.85 + 0.2 = 1.0 (capped): small.
    assert router.choose_pool(Sequence(3, 0.0, 100, 10)) == (SMALL, True)


def test_examples_must_fit_the_small_pool():
    router, _ = _router([0.0, 0.0], [RELATED, RELATED])
    # 90 + 500 + 10 - 1 = 599 < 700: fits.  110 + 500 + 100 - 1 = 709: it does not, so large.
    assert router.choose_pool(Sequence(0, 0.0, 90, 10)) == (SMALL, True)
    assert router.choose_pool(Sequence(1, 0.0, 110, 100)) == (LARGE, False)


def test_no_pool_good_enough_takes_the_best():
    router, _ = _router([1.0], [NO_EXAMPLES])
    # At d = 1: small 0.45, large 0.85; neither reaches 0.9: the better one.
    assert router.choose_pool(Sequence(0, 0.0, 100, 10)) == (LARGE, False)


def test_only_related_examples_add_quality_in_the_books():
    front = _Front([RELATED, UNRELATED, NO_EXAMPLES])
    front.sent_with_examples[:] = [RELATED, UNRELATED, NO_EXAMPLES]
    bonus = quality_bonus(front, 0.2)
    assert list(bonus) == [0.2, 0.0, 0.0]
    n = 3
    table = RequestTable(
        request_id=np.arange(n), arrival_s=np.zeros(n), prompt_tokens=np.full(n, 100), output_tokens=np.full(n, 10),
        tokens_generated=np.full(n, 10), replica=np.array([0, 0, 1]), status=np.full(n, FINISHED, np.int8),
        reject_reason=np.array([""] * n, dtype=object), first_scheduled_s=np.zeros(n), first_token_s=np.zeros(n),
        finish_s=np.ones(n), max_itl_s=np.zeros(n), num_preemptions=np.zeros(n, np.int64), cached_tokens=np.zeros(n, np.int64),
    )
    s = pool_summary(table, [SMALL, LARGE], np.array([0.25, 0.25, 0.25]), bonus)
    # Small: (0.75 + 0.2) and 0.75 (its example was unrelated); large 0.94.  Mean (0.95 + 0.75 + 0.94) / 3.
    assert s["pools"]["small"]["mean_quality"] == pytest.approx((0.95 + 0.75) / 2)
    assert s["mean_quality"] == pytest.approx((0.95 + 0.75 + 0.94) / 3)


def _scenario(policy):
    return servesim.config.load_config("examples/ic-cache.yaml", ["workload.num_requests=400", f"router.policy={policy}"])


def test_ic_cache_offloads_to_the_small_model_in_a_run():
    ic = servesim.simulate(_scenario("ic_cache")).summary
    base = servesim.simulate(_scenario("quality_threshold")).summary
    # Without examples the small model (at most 0.85) never reaches 0.9: all to large.
    assert base["pools"]["small"]["requests_finished"] == 0
    sent = ic["semantic_cache"]["ic_cache"]["sent_with_examples"]
    assert sent > 0 and ic["pools"]["small"]["requests_finished"] == sent
    assert ic["semantic_cache"]["ic_cache"]["example_tokens"] == sent * 2 * 300
    assert ic["semantic_cache"]["hits"] == 0  # serve_responses: false
    assert ic["num_finished"] == base["num_finished"] == 400


def _example(**changes):
    raw = yaml.safe_load(open("examples/ic-cache.yaml"))
    for section, value in changes.items():
        raw[section] = value if value is None else {**raw[section], **value}
    return raw


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"semantic_cache": {"ic_cache": None}},
         "router.policy = 'ic_cache' retrieves examples from the semantic cache: set semantic_cache.ic_cache"),
        ({"semantic_cache": None}, "router.policy = 'ic_cache' retrieves examples from the semantic cache"),
        ({"semantic_cache": {"ic_cache": {"pool": "tiny"}}},
         "semantic_cache.ic_cache.pool = 'tiny' names no pool (cluster.pools: small, large)"),
        ({"semantic_cache": {"ic_cache": {"examples": 0}}}, "semantic_cache.ic_cache.examples = 0"),
    ],
)
def test_bad_ic_cache_config_is_one_line(changes, message):
    with pytest.raises(ConfigError) as err:
        validate_config(_example(**changes))
    assert message in str(err.value) and "\n" not in str(err.value)
