"""servesim against live endpoints: what runs next to a real (or emulated) serving engine.

* ``servesim.live.replay``: ``servesim replay``, a scenario's workload sent to any
  OpenAI-compatible endpoint, every request's timings recorded in a run's folder;
* ``servesim.live.compare``: ``servesim compare``, a simulation and a replay of the same
  workload side by side, with per-metric errors;
* ``servesim.live.serve``: ``servesim serve``, an emulated endpoint.

Nothing here is imported by the simulator; the HTTP client and server are imported where used.
"""
