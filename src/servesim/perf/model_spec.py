"""``ModelSpec``: the architecture of one decoder-only LLM, and what follows from it.

The spec holds only published shape facts (a model's ``config.json``); every
size servesim needs (parameter counts, weight bytes, KV-cache bytes, FLOPs per
attention pair) is derived here, so a user adding a model writes shapes, never
totals.

Conventions: every MLP is gated (SwiGLU: gate, up and down projections, so
``3 * hidden * width`` weights); linear layers carry no bias unless
``attention_bias`` (QKV bias, Qwen2 family); norms are RMSNorm with one weight
vector.  Counts are plain integers of parameters or elements; byte sizes take
the bytes per element as an argument.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Matrices in a gated MLP: gate, up, down.
_GATED_MLP_MATRICES = 3


class ModelSpec(BaseModel):
    """One model's architecture (see ``data/models.yaml`` for field meanings).

    Attention kinds: ``mha`` (``num_kv_heads == num_heads``), ``gqa``
    (``num_kv_heads`` divides ``num_heads``), ``mla`` (multi-head latent
    attention: the cache holds one ``kv_lora_rank + qk_rope_head_dim`` latent
    per token per layer, shared by all heads).  A model is a mixture of
    experts when ``num_experts > 0``; its first ``first_dense_layers`` layers
    then keep a dense MLP of ``intermediate_size``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, description="catalog id, e.g. 'llama-3-8b'")
    name: str = Field(min_length=1, description="display name")
    hf_repo: str = Field(min_length=1, description="Hugging Face repo whose config.json gave the shapes")
    attention: Literal["mha", "gqa", "mla"]
    num_layers: int = Field(gt=0, description="decoder layers")
    hidden_size: int = Field(gt=0, description="residual stream width, elements")
    num_heads: int = Field(gt=0, description="query heads")
    num_kv_heads: int | None = Field(default=None, gt=0, description="key/value heads (mha/gqa)")
    head_dim: int | None = Field(default=None, gt=0, description="elements per head (mha/gqa)")
    intermediate_size: int = Field(gt=0, description="dense MLP width, elements")
    vocab_size: int = Field(gt=0, description="vocabulary entries")
    max_context: int = Field(gt=0, description="longest supported sequence, tokens")
    tie_embeddings: bool = Field(default=False, description="lm_head shares the embedding matrix")
    attention_bias: bool = Field(default=False, description="QKV projections carry a bias")
    num_experts: int = Field(default=0, ge=0, description="routed experts per MoE layer; 0 = dense")
    experts_per_token: int = Field(default=0, ge=0, description="routed experts each token uses")
    num_shared_experts: int = Field(default=0, ge=0, description="always-on experts per MoE layer")
    moe_intermediate_size: int = Field(default=0, ge=0, description="one expert's MLP width, elements")
    first_dense_layers: int = Field(default=0, ge=0, description="leading layers with a dense MLP (MoE only)")
    q_lora_rank: int = Field(default=0, ge=0, description="MLA query compression rank; 0 = none")
    kv_lora_rank: int | None = Field(default=None, gt=0, description="MLA latent KV width, elements")
    qk_nope_head_dim: int | None = Field(default=None, gt=0, description="MLA non-rotary q/k dims per head")
    qk_rope_head_dim: int | None = Field(default=None, gt=0, description="MLA rotary q/k dims per head")
    v_head_dim: int | None = Field(default=None, gt=0, description="MLA value dims per head")
    kv_cache_layers: int | None = Field(
        default=None,
        gt=0,
        description=(
            "hybrid-attention models: layers with full attention, which keep a per-token KV cache; the others "
            "(linear attention, short sliding windows) hold state that does not grow with the context and is "
            "not modelled; null = every layer"
        ),
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelSpec:
        if self.kv_cache_layers is not None and self.kv_cache_layers > self.num_layers:
            raise ValueError(f"kv_cache_layers: must be at most num_layers ({self.num_layers}), got {self.kv_cache_layers}")
        # Messages start with the offending field so the catalog can name it.
        if self.attention == "mla":
            for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name}: required when attention is 'mla'")
        else:
            if self.num_kv_heads is None:
                raise ValueError(f"num_kv_heads: required when attention is '{self.attention}'")
            if self.head_dim is None:
                raise ValueError(f"head_dim: required when attention is '{self.attention}'")
            if self.attention == "mha" and self.num_kv_heads != self.num_heads:
                raise ValueError(
                    f"num_kv_heads: must equal num_heads ({self.num_heads}) for 'mha', got {self.num_kv_heads}"
                )
            if self.num_heads % self.num_kv_heads:
                raise ValueError(
                    f"num_kv_heads: must divide num_heads ({self.num_heads}), got {self.num_kv_heads}"
                )
        if self.num_experts:
            if not 1 <= self.experts_per_token <= self.num_experts:
                raise ValueError(
                    f"experts_per_token: must be in 1..num_experts ({self.num_experts}), got {self.experts_per_token}"
                )
            if self.moe_intermediate_size == 0:
                raise ValueError("moe_intermediate_size: required (> 0) when num_experts > 0")
            if self.first_dense_layers >= self.num_layers:
                raise ValueError(
                    f"first_dense_layers: must be below num_layers ({self.num_layers}), got {self.first_dense_layers}"
                )
        elif self.experts_per_token or self.num_shared_experts or self.first_dense_layers:
            raise ValueError(
                "num_experts: experts_per_token, num_shared_experts and first_dense_layers need num_experts > 0"
            )
        return self

    # ----------------------------------------------------------------- layout
    @property
    def is_moe(self) -> bool:
        """True when the model routes tokens to experts."""
        return self.num_experts > 0

    @property
    def num_moe_layers(self) -> int:
        """Layers whose MLP is a mixture of experts."""
        return self.num_layers - self.first_dense_layers if self.is_moe else 0

    @property
    def num_dense_layers(self) -> int:
        """Layers whose MLP is dense (all of them for a dense model)."""
        return self.num_layers - self.num_moe_layers

    @property
    def qk_head_dim(self) -> int:
        """Elements per head in the query-key dot product."""
        if self.attention == "mla":
            return self.qk_nope_head_dim + self.qk_rope_head_dim  # type: ignore[operator]
        return self.head_dim  # type: ignore[return-value]

    @property
    def value_head_dim(self) -> int:
        """Elements per head of the attention output."""
        return self.v_head_dim if self.attention == "mla" else self.head_dim  # type: ignore[return-value]

    @property
    def mlp_width_per_token(self) -> int:
        """Widest MLP activation one token produces in any layer, elements.

        Dense: ``intermediate_size``.  MoE: the routed plus shared experts one
        token runs, or the dense layers' width if larger.
        """
        if not self.is_moe:
            return self.intermediate_size
        moe = (self.experts_per_token + self.num_shared_experts) * self.moe_intermediate_size
        return max(moe, self.intermediate_size if self.first_dense_layers else 0)

    # ------------------------------------------------- parameters (per layer)
    @property
    def attention_linear_params(self) -> int:
        """Weights of one layer's attention projections (incl. QKV bias), parameters."""
        h, heads = self.hidden_size, self.num_heads
        if self.attention == "mla":
            q_out = heads * self.qk_head_dim
            q = h * self.q_lora_rank + self.q_lora_rank * q_out if self.q_lora_rank else h * q_out
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim)  # type: ignore[operator]
            kv_b = self.kv_lora_rank * heads * (self.qk_nope_head_dim + self.v_head_dim)  # type: ignore[operator]
            o = heads * self.v_head_dim * h  # type: ignore[operator]
            return q + kv_a + kv_b + o
        q_dim = heads * self.head_dim  # type: ignore[operator]
        kv_dim = self.num_kv_heads * self.head_dim  # type: ignore[operator]
        bias = q_dim + 2 * kv_dim if self.attention_bias else 0
        return h * (q_dim + 2 * kv_dim) + q_dim * h + bias

    @property
    def dense_mlp_params(self) -> int:
        """Weights of one dense gated MLP, parameters."""
        return _GATED_MLP_MATRICES * self.hidden_size * self.intermediate_size

    @property
    def expert_params(self) -> int:
        """Weights of one routed (or shared) expert, parameters; 0 for dense models."""
        return _GATED_MLP_MATRICES * self.hidden_size * self.moe_intermediate_size

    @property
    def shared_expert_params(self) -> int:
        """Weights of all shared experts of one MoE layer, parameters."""
        return self.num_shared_experts * self.expert_params

    @property
    def router_params(self) -> int:
        """Weights of one MoE layer's router (gate), parameters."""
        return self.num_experts * self.hidden_size

    @property
    def norm_params_per_layer(self) -> int:
        """RMSNorm weights in one layer (two per block, plus MLA's latent norms)."""
        extra = 0
        if self.attention == "mla":
            extra = self.kv_lora_rank + self.q_lora_rank  # type: ignore[operator]
        return 2 * self.hidden_size + extra

    @property
    def embedding_params(self) -> int:
        """Token embedding matrix, parameters (the lm_head has the same shape)."""
        return self.vocab_size * self.hidden_size

    # ----------------------------------------------------------------- totals
    def _params(self, experts_counted: int) -> int:
        layers = self.num_layers * (self.attention_linear_params + self.norm_params_per_layer)
        layers += self.num_dense_layers * self.dense_mlp_params
        layers += self.num_moe_layers * (
            experts_counted * self.expert_params + self.shared_expert_params + self.router_params
        )
        head = 0 if self.tie_embeddings else self.embedding_params
        return layers + self.embedding_params + head + self.hidden_size  # + final norm

    @property
    def num_params(self) -> int:
        """All stored weights (embeddings and lm_head included), parameters."""
        return self._params(self.num_experts)

    @property
    def num_active_params(self) -> int:
        """Weights one token touches (only ``experts_per_token`` routed experts), parameters."""
        return self._params(self.experts_per_token)

    def weight_bytes(self, bytes_per_param: float = 2) -> float:
        """Bytes to hold all weights at ``bytes_per_param`` (2 = bf16, 1 = fp8/int8)."""
        return self.num_params * bytes_per_param

    # --------------------------------------------------------------- KV cache
    @property
    def kv_elems_per_token_per_layer(self) -> int:
        """KV-cache elements one token adds to one layer.

        GQA/MHA: K and V for every KV head, ``2 * num_kv_heads * head_dim``.
        MLA: one compressed latent plus the shared rotary key,
        ``kv_lora_rank + qk_rope_head_dim``.
        """
        if self.attention == "mla":
            return self.kv_lora_rank + self.qk_rope_head_dim  # type: ignore[operator]
        return 2 * self.num_kv_heads * self.head_dim  # type: ignore[operator]

    @property
    def num_kv_layers(self) -> int:
        """Layers that keep a per-token KV cache (and attend over the whole context)."""
        return self.kv_cache_layers or self.num_layers

    def kv_bytes_per_token(self, kv_bytes_per_elem: float = 2) -> float:
        """KV-cache bytes one token occupies across all layers (whole model, one copy)."""
        return self.num_kv_layers * self.kv_elems_per_token_per_layer * kv_bytes_per_elem

    # ------------------------------------------------------------- attention
    @property
    def attention_flops_per_pair(self) -> int:
        """FLOPs of one query-key pair in one layer, all heads (prefill form).

        ``2 * qk_head_dim`` for the score plus ``2 * value_head_dim`` for the
        weighted value sum, per head (GQA: ``4 * num_heads * head_dim``).
        """
        return 2 * self.num_heads * (self.qk_head_dim + self.value_head_dim)

    @property
    def decode_attention_flops_per_kv_token(self) -> int:
        """FLOPs of one decode query against one cached token in one layer, all heads.

        GQA/MHA: same as a prefill pair.  MLA decodes in the absorbed form
        (queries projected into the latent space), so each head scores and
        sums over the ``kv_lora_rank + qk_rope_head_dim`` latent:
        ``2 * heads * (kv_lora_rank + qk_rope_head_dim) + 2 * heads * kv_lora_rank``.
        """
        if self.attention == "mla":
            latent = self.kv_lora_rank + self.qk_rope_head_dim  # type: ignore[operator]
            return 2 * self.num_heads * (latent + self.kv_lora_rank)  # type: ignore[operator]
        return self.attention_flops_per_pair
