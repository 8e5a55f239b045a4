"""A catalog model entry from a Hugging Face ``config.json``.

``servesim probe --model-config`` uses it so that a model served by a live
engine (any Llama-, Mistral-, Qwen- or Mixtral-shaped decoder) can be
simulated without writing its catalog entry by hand.  Only the fields the
step-time and memory models read are taken; multi-head latent attention
(DeepSeek) configs are refused with a pointer to the catalog instead.
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any

from servesim.errors import ConfigError

__all__ = ["model_entry_from_hf_config"]


def model_entry_from_hf_config(path: str | PathLike[str], model_id: str) -> dict[str, Any]:
    """The catalog entry (a ``models:`` value, see ``data/models.yaml``) for the model
    ``config.json`` at ``path`` describes, named ``model_id``.

    ``ConfigError`` naming the file and the key when the file cannot be read, is not JSON,
    or lacks a shape the catalog needs.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"model config {path}: cannot read: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"model config {path}: not a JSON config.json ({err})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"model config {path}: expected a JSON object (a Hugging Face config.json)")
    doc = doc.get("text_config", doc) if isinstance(doc.get("text_config"), dict) else doc
    if doc.get("kv_lora_rank"):
        raise ConfigError(f"model config {path}: multi-head latent attention (kv_lora_rank) is not read from "
                          "config.json; use a catalog entry (see deepseek-v3 in `servesim catalog`)")

    def need(key: str) -> int:
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"model config {path}: key {key!r} = {value!r}: needs a positive integer")
        return value

    heads = need("num_attention_heads")
    hidden = need("hidden_size")
    kv_heads = doc.get("num_key_value_heads") or heads
    head_dim = doc.get("head_dim") or hidden // heads
    experts = int(doc.get("num_local_experts") or doc.get("num_experts") or 0)
    entry: dict[str, Any] = {
        "name": doc.get("_name_or_path") or model_id,
        "hf_repo": str(doc.get("_name_or_path") or path),
        "attention": "mha" if kv_heads == heads else "gqa",
        "num_layers": need("num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": int(kv_heads),
        "head_dim": int(head_dim),
        "intermediate_size": need("intermediate_size"),
        "vocab_size": need("vocab_size"),
        "max_context": need("max_position_embeddings"),
        "tie_embeddings": bool(doc.get("tie_word_embeddings", False)),
        "attention_bias": bool(doc.get("attention_bias", False)),
    }
    if experts:
        entry["num_experts"] = experts
        entry["experts_per_token"] = int(doc.get("num_experts_per_tok") or 0)
        entry["moe_intermediate_size"] = int(doc.get("moe_intermediate_size") or entry["intermediate_size"])
    return entry
