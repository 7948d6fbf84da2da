"""Every catalog entry: how long it takes to get ready, its size, and one measured decode speed.

Random-weight presets must build in seconds (no random init; one buffer copied into every
weight). This prints, per entry, the load/build time, the parameter count and the median time per
output token (batch 1, prompt 32, 8 new tokens, bfloat16 unless told otherwise), all measured in
this one run. Entries that don't fit in free memory are reported as refused, with the reason.

    .venv/bin/python benchmarks/catalog_builds.py [--dtype bfloat16] [--only gpt2,smollm2-1.7b]
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.measure import backends, engine
from lib.core import stats
from lib.models import catalog  # noqa: E402
from lib.core.errors import ExplorerError  # noqa: E402
from lib.estimate.modelcard import format_count  # noqa: E402
from lib.core.spec import RunSpec  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated model ids")
    args = parser.parse_args()
    wanted = [m for m in args.only.split(",") if m] or list(catalog.CATALOG)

    print(f"{'model':<32}{'params':>9}{'ready in':>10}{'quantize':>10}  {'median TPOT (or e2e)':<22}"
          f"tok/s")
    for model_id in wanted:
        try:
            backend = backends.for_model(model_id)
            loaded = backend.load(model_id, "cpu", args.dtype)
        except ExplorerError as exc:
            print(f"{model_id:<32} refused: {exc}")
            continue
        spec = RunSpec(model_id=model_id, dtype=args.dtype, prompt_tokens=32, new_tokens=8,
                       repetitions=2, min_duration_s=0.0, threads=args.threads)
        summary = stats.summarize(engine.measure(backend, loaded, spec))
        if "tpot_s" in summary.metrics:
            speed = f"{summary.metrics['tpot_s'].median * 1000:8.1f} ms/token"
            rate = summary.metrics["decode_tokens_per_s"].median
        else:
            speed = f"{summary.metrics['e2e_s'].median * 1000:8.1f} ms/request"
            rate = summary.metrics["total_tokens_per_s"].median
        quantize = f"{loaded.quantize_s:.1f} s" if loaded.quantize_s is not None else "-"
        print(f"{model_id:<32}{format_count(loaded.shapes.parameters):>9}"
              f"{loaded.load_s:>8.1f} s{quantize:>10}  {speed:<22}{rate:.1f}", flush=True)
        del loaded
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
