"""Serving under load: measuring a server the way its users feel it.

- `records`: what one streamed request produced (`RequestRecord`) and where it went (`Endpoint`);
- `client`: one streaming request to any OpenAI-compatible server (`/v1/completions` or
  `/v1/chat/completions`), timed chunk by chunk, never raising for a failed request; `wire`
  reads its bytes (HTTP and server-sent events over a socket) and `answer` makes them a record;
- `local`: `transformers serve` started as a child process on a free localhost port, stopped
  when done, when Stop is pressed, or when the app that started it dies; `served_model` is
  what it loads and the memory guard that refuses it first;
- `plan`: the load plan (`LoadPlan`), its fields' metadata making the CLI's flags and the
  page's widgets;
- `load`: the load generator (closed loop at fixed concurrencies, open loop at request rates
  with Poisson, gamma or constant arrivals), warm-up and cool-down excluded;
- `sizing`: the plan sized to this machine from a calibration and a time budget;
- `measures`: per-level statistics, goodput against latency targets and the saturation knee;
  `findings` says them in words;
- `summary`: a run as a saved document and CSV rows; `session`: one run from start to result
  (saving it is `lib.records.load_tests`', above this layer).

Nothing here imports Streamlit: the CLI (`python -m lib load`) and the GPU machine use it too.

Imports: lib.core, lib.machine, lib.models, lib.estimate.
"""
