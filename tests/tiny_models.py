"""A tiny dense catalog model shared by tests that must build and run a real decoder fast."""

TINY = {
    "name": "Tiny",
    "hf_repo": "none/tiny",
    "attention": "gqa",
    "num_layers": 2,
    "hidden_size": 64,
    "num_heads": 4,
    "num_kv_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "vocab_size": 256,
    "max_context": 4096,
}
