"""``servesim catalog``: the models and GPUs servesim knows, as tables or JSON."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from servesim.perf.catalog import Catalog


def catalog_rows(catalog: Catalog) -> dict[str, list[dict[str, Any]]]:
    """Plain rows (JSON-ready) for every model and GPU of ``catalog``."""
    models = []
    for model_id in catalog.model_ids:
        m = catalog.model(model_id)
        models.append(
            {
                "id": model_id,
                "name": m.name,
                "params_b": round(m.num_params / 1e9, 2),
                "active_params_b": round(m.num_active_params / 1e9, 2),
                "layers": m.num_layers,
                "hidden_size": m.hidden_size,
                "attention": m.attention,
                "kv_bytes_per_token": m.kv_bytes_per_token(2),
                "experts": m.num_experts,
                "max_context": m.max_context,
            }
        )
    hardware = []
    for hw_id in catalog.hardware_ids:
        h = catalog.hardware(hw_id)
        hardware.append(
            {
                "id": hw_id,
                "name": h.name,
                "memory_gb": h.memory_gb,
                "mem_bw_gbs": h.mem_bw_gbs,
                "bf16_tflops": h.bf16_tflops,
                "fp8_tflops": h.fp8_tflops,
                "link_per_dir_gbs": h.link_per_dir_gbs,
                "tdp_w": h.tdp_w,
                "price_usd_per_gpu_hr": h.price_usd_per_gpu_hr,
            }
        )
    return {"models": models, "hardware": hardware}


def render_catalog(catalog: Catalog, console: Console | None = None) -> None:
    """Print the model and GPU tables."""
    # Wide enough for every column header even when piped (rich assumes 80).
    console = console or Console(width=max(110, Console().width))
    rows = catalog_rows(catalog)
    models = Table(title="Models")
    models.add_column("id", no_wrap=True)
    for col in ("params B", "active B", "layers", "hidden", "attn", "KV KB/tok", "experts", "context"):
        models.add_column(col, justify="left" if col == "attn" else "right", no_wrap=True)
    for m in rows["models"]:
        models.add_row(
            m["id"], f"{m['params_b']:.1f}", f"{m['active_params_b']:.1f}", str(m["layers"]),
            str(m["hidden_size"]), m["attention"], f"{m['kv_bytes_per_token'] / 1024:.1f}", str(m["experts"] or "-"),
            f"{m['max_context']:,}",
        )
    gpus = Table(title="GPUs")
    gpus.add_column("id", no_wrap=True)
    for col in ("name", "mem GB", "HBM GB/s", "BF16 TF/s", "FP8 TF/s", "link GB/s", "TDP W", "$/GPU-h"):
        gpus.add_column(col, justify="left" if col == "name" else "right", no_wrap=col != "name")
    for h in rows["hardware"]:
        gpus.add_row(
            h["id"], h["name"], f"{h['memory_gb']:g}", f"{h['mem_bw_gbs']:,.0f}", f"{h['bf16_tflops']:,.0f}",
            "-" if h["fp8_tflops"] is None else f"{h['fp8_tflops']:,.0f}", f"{h['link_per_dir_gbs']:g}",
            f"{h['tdp_w']:g}", f"{h['price_usd_per_gpu_hr']:.2f}",
        )
    console.print(models)
    console.print(gpus)
