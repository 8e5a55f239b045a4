"""vLLM's Prometheus metrics of what ``servesim serve`` did, in a registry of its own.

Names, types, label sets (``model_name``, ``engine``: the replica's index) and histogram buckets
are vLLM V1's, so dashboards, gateways and autoscalers that read vLLM read these unchanged.

* Gauges, read from the simulation when scraped: ``vllm:num_requests_running``,
  ``vllm:num_requests_waiting`` (per replica, as its scheduler holds them) and
  ``vllm:kv_cache_usage_perc`` (the fraction of its KV blocks in use, 0..1, as vLLM's).
* Histograms, as clients receive tokens: ``vllm:time_to_first_token_seconds``,
  ``vllm:inter_token_latency_seconds`` (each gap between two tokens),
  ``vllm:e2e_request_latency_seconds``, ``vllm:request_time_per_output_token_seconds`` (first to
  last token over the tokens after the first; 0 for a one-token request, as vLLM's) and
  ``vllm:request_queue_time_seconds`` (arrival to first scheduled) of each request served,
  ``vllm:request_prompt_tokens`` and
  ``vllm:request_generation_tokens``.
* Counters: ``vllm:prompt_tokens_total`` (a prompt counts when its first token reaches the
  client), ``vllm:generation_tokens_total`` (tokens released), ``vllm:num_preemptions_total``,
  ``vllm:request_success_total`` (``finished_reason="length"`` for each request served in full;
  ``"abort"`` for each ended by a replica failure or the server stopping).

Times are simulated seconds, the engine's own (equal to wall seconds at ``--time-scale 1``); the
first token's time includes the front end's latency, as ``servesim run`` reports TTFT.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from servesim.live.serve.engine import LiveRequest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ("model_name", "engine")

# vLLM V1's buckets (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0)


def token_buckets(max_model_len: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... up to ``max_model_len`` (vLLM's ``build_1_2_5_buckets``)."""
    out, exponent = [], 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_model_len:
                return tuple(out)
            out.append(float(value))
        exponent += 1


class ServeMetrics:
    """The registry and its metrics; a ``RequestObserver`` of the engine."""

    def __init__(self, model_name: str, max_model_len: int, replicas: Any) -> None:
        """``replicas``: a callable returning the fleet's replicas as of now (read when scraped)."""
        self.model_name = model_name
        self.registry = CollectorRegistry()
        reg = self.registry
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              LABELS, buckets=TTFT_BUCKETS, registry=reg)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                             LABELS, buckets=ITL_BUCKETS, registry=reg)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             LABELS, buckets=REQUEST_LATENCY_BUCKETS, registry=reg)
        self.tpot = Histogram("vllm:request_time_per_output_token_seconds",
                              "Histogram of time_per_output_token_seconds per request.", LABELS, buckets=ITL_BUCKETS,
                              registry=reg)
        self.queue = Histogram("vllm:request_queue_time_seconds",
                               "Histogram of time spent in WAITING phase for request.", LABELS,
                               buckets=REQUEST_LATENCY_BUCKETS, registry=reg)
        tokens = token_buckets(max_model_len)
        self.request_prompt = Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", LABELS,
                                        buckets=tokens, registry=reg)
        self.request_generation = Histogram("vllm:request_generation_tokens", "Number of generation tokens processed.",
                                            LABELS, buckets=tokens, registry=reg)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", LABELS, registry=reg)
        self.generation_tokens = Counter("vllm:generation_tokens", "Number of generation tokens processed.", LABELS,
                                         registry=reg)
        self.preemptions = Counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", LABELS,
                                   registry=reg)
        self.success = Counter("vllm:request_success", "Count of successfully processed requests.",
                               LABELS + ("finished_reason",), registry=reg)
        reg.register(_FleetGauges(model_name, replicas))
        self._preempted: dict[int, int] = {}  # preemptions counted so far, per request in flight

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ RequestObserver

    def on_released(self, live: LiveRequest, times_s: list[float]) -> None:
        labels = (self.model_name, str(max(live.replica, 0)))
        before = live.num_released - len(times_s)
        if before == 0:
            self.ttft.labels(*labels).observe(times_s[0] - live.arrival_s)
            self.prompt_tokens.labels(*labels).inc(live.num_prompt)
        itl = self.itl.labels(*labels)
        previous = live.token_times_s[before - 1] if before else times_s[0]
        for t in times_s[0 if before else 1:]:
            itl.observe(t - previous)
            previous = t
        self.generation_tokens.labels(*labels).inc(len(times_s))
        self._count_preemptions(live, labels)

    def on_ended(self, live: LiveRequest) -> None:
        labels = (self.model_name, str(max(live.replica, 0)))
        self._count_preemptions(live, labels)
        self._preempted.pop(live.rid, None)
        if live.error is not None:
            self.success.labels(*labels, "abort").inc()
            return
        self.success.labels(*labels, "length").inc()
        self.e2e.labels(*labels).observe(live.finish_s - live.arrival_s)
        times = live.token_times_s
        self.tpot.labels(*labels).observe((times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0)
        self.queue.labels(*labels).observe(live.queue_s)
        self.request_prompt.labels(*labels).observe(live.num_prompt)
        self.request_generation.labels(*labels).observe(live.num_released)

    def _count_preemptions(self, live: LiveRequest, labels: tuple[str, str]) -> None:
        counted = self._preempted.get(live.rid, 0)
        if live.num_preemptions > counted:
            self.preemptions.labels(*labels).inc(live.num_preemptions - counted)
            self._preempted[live.rid] = live.num_preemptions


class _FleetGauges(Collector):
    """Each replica's running and waiting requests and KV usage, read when scraped."""

    def __init__(self, model_name: str, replicas: Any) -> None:
        self._model = model_name
        self._replicas = replicas

    def collect(self):
        running = GaugeMetricFamily("vllm:num_requests_running", "Number of requests in model execution batches.",
                                    labels=LABELS)
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                                    labels=LABELS)
        kv = GaugeMetricFamily("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                               labels=LABELS)
        for replica in self._replicas():
            labels = [self._model, str(replica.index)]
            running.add_metric(labels, replica.num_running)
            waiting.add_metric(labels, replica.num_waiting)
            kv.add_metric(labels, replica.kv_usage)
        return [running, waiting, kv]

    def describe(self):
        return []
