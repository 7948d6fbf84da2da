"""Serving under load: measuring a server the way its users feel it.

- `records`: what one streamed request produced (`RequestRecord`) and where it went (`Endpoint`);
- `client`: one streaming request to any OpenAI-compatible server (`/v1/completions` or
  `/v1/chat/completions`), timed chunk by chunk, never raising for a failed request;
- `local`: `transformers serve` started as a child process on a free localhost port, stopped
  when done, when Stop is pressed, or when the app that started it dies;
- `load`: the load generator (closed loop at fixed concurrencies, open loop at request rates
  with Poisson, gamma or constant arrivals), warm-up and cool-down excluded;
- `measures`: per-level statistics, goodput against latency targets, the saturation knee and
  the findings said in words.

Nothing here imports Streamlit: the CLI (`python -m lib load`) and the GPU machine use it too.

Imports: lib.core, lib.machine, lib.models, lib.estimate.
"""
