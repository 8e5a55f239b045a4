"""``servesim serve``: an OpenAI-compatible endpoint whose answers are timed by the simulator.

A scenario's fleet (replicas, router, schedulers, step-time model, failures) runs as the same
``Simulation`` as ``servesim run``, its clock tied to the wall clock; each client's request enters
it as an arrival, and its tokens go back to the client when the simulated clock passes their
times (docs/live.md).  Modules, in the order a request meets them:

* ``protocol``: request bodies checked and reduced to what the simulator needs (prompt and output
  lengths, prefix blocks), with the 4xx answers an engine would give;
* ``scenario``: the scenario's simulation built for live arrivals, and the model names it serves;
* ``engine``: the simulation driven by the wall clock, releasing each request's tokens on time;
* ``responses``: OpenAI's response bodies and stream chunks, placeholder text;
* ``metrics``: vLLM's Prometheus metrics of what the engine did;
* ``app``: the FastAPI routes; ``server``: uvicorn, in the foreground or a background thread.
"""
