"""The child process `lib.serving.local` starts: `transformers serve` run in-process, on
127.0.0.1 only, that ends whenever the process that started it ends.

    python -m lib.serving.child --model FOLDER --port P [--dtype D] [--threads N]
                                [--continuous-batching --cb-num-blocks B --cb-max-batch-tokens T]

Why a module of our own rather than the `transformers serve` command: the parent hands this
process the read end of a pipe as stdin and keeps the write end open. However the parent dies
(stop(), a crash, SIGKILL), the kernel closes that write end, stdin reads EOF, and this process
ends at once. `PR_SET_PDEATHSIG` would not do: it fires when the creating *thread* ends, and
Streamlit runs each script in a short-lived thread. A `getppid()` poll is the backstop. The host
is not an option: it is always 127.0.0.1, so nothing here can listen on other interfaces.

Exit codes: 0 stopped (EOF, parent gone, SIGTERM), 1 the model failed to load (its traceback is
in the log), 2 no model folder there, 3 the HTTP server ended on its own (most often: the port
was taken between the parent choosing it and this process binding it).
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading
import time

HOST = "127.0.0.1"
EXIT_NO_MODEL = 2
EXIT_SERVER_ENDED = 3
SHUTDOWN_GRACE_S = 2.0       # for uvicorn to close its sockets before os._exit
PARENT_POLL_S = 1.0

_serve = None                # transformers.cli.serve.Serve, once built
_ending = threading.Lock()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda signum, frame: _end(0, "SIGTERM"))
    signal.signal(signal.SIGINT, lambda signum, frame: _end(0, "SIGINT"))
    # Started before the model loads: a parent that dies during a long load takes us with it.
    threading.Thread(target=_watch_parent, args=(parent,), name="ile-parent-watch",
                     daemon=True).start()

    if not os.path.isfile(os.path.join(args.model, "config.json")):
        # Said before torch is even imported: seconds sooner than transformers would.
        print(f"[ile] no model folder at {args.model} (config.json is missing)", flush=True)
        os._exit(EXIT_NO_MODEL)

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    torch.set_num_threads(args.threads)

    from transformers.cli.serve import Serve

    global _serve
    options = {}
    if args.continuous_batching:
        # Sized by the parent for its largest load; left alone, continuous batching takes 60%
        # of the machine's memory for its KV cache on CPU, which the memory guard never saw.
        options = {"cb_num_blocks": args.cb_num_blocks,
                   "cb_max_batch_tokens": args.cb_max_batch_tokens}
    print(f"[ile] serving {args.model} on {HOST}:{args.port}, {args.dtype}, "
          f"{args.threads} threads, continuous batching "
          f"{'on' if args.continuous_batching else 'off'}", flush=True)
    _serve = Serve(force_model=args.model, device="cpu", dtype=args.dtype,
                   continuous_batching=args.continuous_batching, host=HOST, port=args.port,
                   log_level=args.log_level, non_blocking=True, **options)
    while True:
        time.sleep(PARENT_POLL_S)
        if not _serve._thread.is_alive():
            print("[ile] the HTTP server ended on its own (see above)", flush=True)
            _end(EXIT_SERVER_ENDED, "server ended")


def _watch_parent(parent: int) -> None:
    """End this process on EOF from the parent's pipe, or when the parent is gone."""
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], PARENT_POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            _end(0, "parent closed the pipe")
        if os.getppid() != parent:
            _end(0, "parent process gone")


def _end(code: int, why: str) -> None:
    """Best-effort shutdown, then os._exit: uvicorn's and transformers' non-daemon threads and
    timers must never keep a server alive."""
    if not _ending.acquire(blocking=False):
        return                      # another thread is already ending the process
    print(f"[ile] stopping: {why}", flush=True)
    serve = _serve
    if serve is not None:
        serve.server.should_exit = True
        thread = getattr(serve, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=SHUTDOWN_GRACE_S)
    os._exit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib.serving.child",
                                     description="transformers serve on 127.0.0.1, "
                                     "ending with the process that started it")
    parser.add_argument("--model", required=True, help="model folder (config.json, weights)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--continuous-batching", action="store_true")
    parser.add_argument("--cb-num-blocks", type=int, default=None)
    parser.add_argument("--cb-max-batch-tokens", type=int, default=None)
    parser.add_argument("--log-level", default="warning")
    return parser


if __name__ == "__main__":
    main()
