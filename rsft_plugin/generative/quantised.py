"""Decode steps from the GGUF's own 4-bit blocks: ~5x fewer bytes read per new token than float32.

The writer's float32 weights ARE the GGUF's quantised values (`checkpoint.py` de-quantises the Q4_1 file once):
every projection weight is d * q + m for a block of 32 with q in 0..15 (Q4_1), the tied embedding / `lm_head` is
d * q with q an int8 (Q8_0). A decode step reads every weight once, so its time is memory traffic: reading the
blocks instead of the float32 copy (0.625 + 0.25 bytes per weight here, d and m kept as float32) cuts it.

Exactness: the kernel (kernels/quant_matvec.cpp) rebuilds each weight as the float32 de-quantisation computes it,
and `decode_weights` checks, per model, that the blocks de-quantise to the model's float32 weights BIT FOR BIT
(any difference: the float32 path, one log line). Products and sums are float32; only the order of the sums
differs from the float32 path, so logits agree to float rounding (~1e-6). A LoRA adapter is NOT folded into the
blocks (that would change them): it runs beside them as x @ A.T @ B.T * scale, as peft computes it.

Only products of at most `DECODE_ROWS` rows use the blocks (a decode step: 1 row, or K rows when sampling);
reading a prompt (hundreds of rows) stays a float32 matrix product, which is compute-bound and faster there.

Threads: a product runs on the calling thread, or inside `kernel_threads(n)` shares its output rows with n - 1
helper threads of the kernel's own (the writer asks for every idle core: cores.py). Not torch's OpenMP threads:
every Python thread that starts OpenMP work gets a team of its own, and once a process has more OpenMP threads than
cores libgomp stops letting idle ones spin, so each product waited for a sleeping thread (the action server writes
from a pool of threads: a decode step measured 16 -> 31 ms). Each output is one thread's sum: the same bits.

The kernel is compiled once per machine (g++ via torch's extension loader, ~30-60 s; cached in torch's
extensions folder under a name keyed by the CPU's flags and the kernel's source) for AVX-512 or AVX2+FMA,
whichever the CPU has; if the build fails or the CPU has neither (the plain loop would be slower than float32),
everything stays float32 and one warning says why. `build_kernel` compiles it ahead of serving (`rsft init-model`
and the first start of `rsft serve` do, through `GenerativePolicy.pretrained`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

DECODE_ROWS = 8  # products of at most this many rows use the blocks
_BLOCK = 32
_KERNEL_SOURCE = Path(__file__).parent / "kernels" / "quant_matvec.cpp"
_CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-pthread"]
_PROJECTIONS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                "mlp.down_proj": "ffn_down"}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")

_LOCK = threading.Lock()
_THREAD = threading.local()  # kernel_threads: how many threads this thread's products use
_KERNEL: dict[str, Any] = {}  # "module" -> the compiled extension, or "error" -> why it is unavailable
# (GGUF path, heads, key/value heads) -> tensor name -> blocks in the model's row order (read once per process)
_GGUF_BLOCKS: dict[tuple[str, int, int], dict[str, Blocks]] = {}
_STACKED: dict[tuple[int, ...], Blocks] = {}  # ids of the parts' quants (cached above, never freed) -> stacked
# (id, data pointer, version) of a weight checked against its blocks -> the blocks; dropped with the weight
_VERIFIED: dict[tuple[int, int, int], Blocks] = {}


@contextmanager
def kernel_threads(threads: int) -> Iterator[None]:
    """The 4-bit products this thread runs inside the block share their output rows with `threads` - 1 helper
    threads of the kernel's own (not torch's: see the kernel); outside, and by default, they run on this thread."""
    before = kernel_threads_now()
    _THREAD.kernel_threads = max(1, threads)
    try:
        yield
    finally:
        _THREAD.kernel_threads = before


def kernel_threads_now() -> int:
    """The threads this thread's 4-bit products run on (`kernel_threads`)."""
    return getattr(_THREAD, "kernel_threads", 1)


@dataclass(frozen=True)
class Blocks:
    """One weight (out, in) in GGUF blocks: `quants` (out, in / 32 * bytes), `scales` and `mins` (out, in / 32)."""

    kind: str  # "q4_1" (mins set) or "q8_0"
    quants: torch.Tensor
    scales: torch.Tensor
    mins: torch.Tensor | None

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x (rows, in) @ W.T -> (rows, out), on this thread's `kernel_threads` (the same bits on any count)."""
        kernel, threads = _KERNEL["module"], kernel_threads_now()
        if self.kind == "q4_1":
            return kernel.q4_1_matmul(x, self.quants, self.scales, self.mins, threads)
        return kernel.q8_0_matmul(x, self.quants, self.scales, threads)

    def dequantised(self) -> torch.Tensor:
        """W (out, in) float32 as the kernel rebuilds it: d * q (exact in float32), then + m."""
        return _KERNEL["module"].dequantise(self.quants, self.scales, self.mins)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.quants, self.scales, self.mins) if t is not None)

    @staticmethod
    def stacked(parts: list[Blocks]) -> Blocks:
        """The blocks of the weights one above the other (out = the sum of their outs), made once per process."""
        key = tuple(id(p.quants) for p in parts)
        with _LOCK:
            if key not in _STACKED:
                mins = [p.mins for p in parts]
                _STACKED[key] = Blocks(parts[0].kind, torch.cat([p.quants for p in parts]),
                                       torch.cat([p.scales for p in parts]),
                                       None if mins[0] is None else torch.cat(mins))  # type: ignore[arg-type]
            return _STACKED[key]


@dataclass
class QuantisedDecode:
    """y = x @ W.T from the blocks, plus each LoRA adapter's x @ A.T @ B.T * scale on its slice of the outputs."""

    blocks: Blocks
    adapters: list[tuple[torch.Tensor, torch.Tensor, float, slice]] = field(default_factory=list)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        y = self.blocks.matmul(flat)
        for a_t, b_t, scale, columns in self.adapters:
            y[:, columns] += (flat @ a_t) @ b_t * scale
        return y.reshape(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def stacked(parts: list[QuantisedDecode]) -> QuantisedDecode:
        """One product for several layers reading the same input (gate and up), outputs side by side."""
        adapters, start = [], 0
        for part in parts:
            for a_t, b_t, scale, columns in part.adapters:
                adapters.append((a_t, b_t, scale, slice(start + columns.start, start + columns.stop)))
            start += part.blocks.scales.shape[0]
        return QuantisedDecode(Blocks.stacked([p.blocks for p in parts]), adapters)


def decode_weights(model: Any, layers: dict[str, Any]) -> dict[str, QuantisedDecode]:
    """For each linear layer (name -> module, peft's LoRA layers whole) its `QuantisedDecode`; {} when the kernel
    is unavailable or a weight is not exactly its GGUF blocks (one warning, the float32 path serves)."""
    if not layers or not _kernel_ready():  # a stand-in module without linear layers has nothing to decode
        return {}
    try:
        gguf = _gguf_blocks(_gguf_path(), model.config.num_attention_heads, model.config.num_key_value_heads)
        decoders = {name: _decoder(name, module, gguf) for name, module in layers.items()}
    except (LookupError, ValueError, OSError, AttributeError) as exc:  # AttributeError: no llama-style config
        log.warning("the writer decodes from float32 weights: %s", exc)
        return {}
    return decoders


def _decoder(name: str, module: Any, gguf: dict[str, Blocks]) -> QuantisedDecode:
    lora = hasattr(module, "base_layer") and hasattr(module, "lora_A")
    layer = module.base_layer if lora else module
    if layer.bias is not None or (lora and module.merged):
        raise ValueError(f"{name} has a bias or a merged adapter")
    blocks = _verified(layer.weight, _gguf_name(name), gguf)
    adapters = []
    for adapter in module.active_adapters if lora else ():
        if adapter in module.lora_A:
            a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight  # (r, in), (out, r)
            adapters.append((a.detach().t().contiguous(), b.detach().t().contiguous(),
                             float(module.scaling[adapter]), slice(0, b.shape[0])))
    return QuantisedDecode(blocks, adapters)


def _verified(weight: torch.Tensor, gguf_name: str, gguf: dict[str, Blocks]) -> Blocks:
    """The blocks of `weight`, checked to de-quantise to it bit for bit (once per weight and version)."""
    key = (id(weight), weight.data_ptr(), weight._version)
    if key in _VERIFIED:
        return _VERIFIED[key]
    if gguf_name not in gguf:
        raise LookupError(f"the GGUF has no tensor {gguf_name}")
    blocks = gguf[gguf_name]
    with torch.no_grad():
        same = blocks.scales.shape[0] * blocks.scales.shape[1] * _BLOCK == weight.numel() and torch.equal(
            blocks.dequantised().view(torch.int32), weight.detach().reshape(blocks.scales.shape[0], -1)
            .view(torch.int32))
    if not same:
        raise ValueError(f"{gguf_name} in the GGUF is not bit for bit the model's weight")
    _VERIFIED[key] = blocks
    weakref.finalize(weight, _VERIFIED.pop, key, None)
    return blocks


def _unpermuted(blocks: Blocks, heads: int) -> Blocks:
    """Rows in the model's order: GGUF row h*D + 2i + a holds the model's row h*D + a*D/2 + i (D = head size)."""
    rows = blocks.scales.shape[0]
    order = torch.arange(rows).reshape(heads, rows // heads // 2, 2).transpose(1, 2).reshape(-1)
    return Blocks(blocks.kind, blocks.quants[order].contiguous(), blocks.scales[order].contiguous(),
                  None if blocks.mins is None else blocks.mins[order].contiguous())


def _gguf_name(module_name: str) -> str:
    if module_name == "lm_head":
        return "token_embd.weight"  # tied to the input embedding
    match = _LAYER.match(module_name)
    if match is None or match.group(2) not in _PROJECTIONS:
        raise LookupError(f"no GGUF tensor is known for {module_name}")
    return f"blk.{match.group(1)}.{_PROJECTIONS[match.group(2)]}.weight"


def _gguf_path() -> Path:
    from ..errors import ModelLoadError
    from .checkpoint import find_gguf

    try:
        return find_gguf()
    except ModelLoadError as exc:  # no GGUF installed
        raise LookupError(str(exc)) from exc


def _gguf_blocks(path: Path, heads: int, kv_heads: int) -> dict[str, Blocks]:
    """Every Q4_1 / Q8_0 tensor of the GGUF as `Blocks`, rows in the model's order (once per process: ~150 MB)."""
    key = (str(path), heads, kv_heads)
    with _LOCK:
        if key not in _GGUF_BLOCKS:
            found = {}
            for name, (kind, data) in _gguf_tensors(path).items():
                blocks = _blocks(kind, data)
                if name.endswith(("attn_q.weight", "attn_k.weight")):  # llama.cpp interleaves the rotary halves
                    blocks = _unpermuted(blocks, heads if "attn_q" in name else kv_heads)
                found[name] = blocks
            _GGUF_BLOCKS[key] = found
        return _GGUF_BLOCKS[key]


_GGUF_TYPES = {3: ("Q4_1", 20), 8: ("Q8_0", 34)}  # ggml type id -> (name, bytes per block of 32)
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF metadata value types


def _gguf_tensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (type, rows of packed blocks) for the file's Q4_1 / Q8_0 tensors (memory-mapped).

    A minimal reader of the GGUF v2/v3 layout: it skips the metadata (gguf.GGUFReader parses all of it, the
    tokenizer's ~100k strings included: 3-5 s) except `general.alignment`.
    """
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    buffer = memoryview(raw)
    magic, version, tensors, fields = struct.unpack_from("<4sIQQ", buffer, 0)
    if magic != b"GGUF" or version < 2:
        raise ValueError(f"{path} is not a GGUF v2+ file")
    offset, alignment = 24, 32

    def string(at: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<Q", buffer, at)
        return bytes(buffer[at + 8:at + 8 + length]).decode("utf-8", "replace"), at + 8 + length

    def skip(kind: int, at: int) -> int:
        if kind == 8:  # string
            return at + 8 + struct.unpack_from("<Q", buffer, at)[0]
        if kind == 9:  # array: element type, count, elements
            element, count = struct.unpack_from("<IQ", buffer, at)
            at += 12
            if element in _SCALAR_BYTES:
                return at + count * _SCALAR_BYTES[element]
            for _ in range(count):
                at = skip(element, at)
            return at
        return at + _SCALAR_BYTES[kind]

    for _ in range(fields):
        name, offset = string(offset)
        (kind,) = struct.unpack_from("<I", buffer, offset)
        if name == "general.alignment" and kind == 4:
            (alignment,) = struct.unpack_from("<I", buffer, offset + 4)
        offset = skip(kind, offset + 4)
    infos = []
    for _ in range(tensors):
        name, offset = string(offset)
        (dims,) = struct.unpack_from("<I", buffer, offset)
        shape = struct.unpack_from(f"<{dims}Q", buffer, offset + 4)  # innermost dimension first
        kind, start = struct.unpack_from("<IQ", buffer, offset + 4 + 8 * dims)
        offset += 4 + 8 * dims + 12
        infos.append((name, shape, kind, start))
    data_start = -(-offset // alignment) * alignment
    found = {}
    for name, shape, kind, start in infos:
        if kind in _GGUF_TYPES:
            type_name, block_bytes = _GGUF_TYPES[kind]
            rows, width = int(np.prod(shape[1:])), shape[0] // _BLOCK * block_bytes
            found[name] = (type_name, raw[data_start + start:data_start + start + rows * width].reshape(rows, width))
    return found


_LAYOUTS = {"Q4_1": np.dtype([("d", "<f2"), ("m", "<f2"), ("codes", "u1", 16)]),  # ggml's block structs
            "Q8_0": np.dtype([("d", "<f2"), ("codes", "i1", 32)])}


def _blocks(kind: str, data: np.ndarray) -> Blocks:
    """Split the GGUF's packed rows (fp16 d [, fp16 m], codes) into contiguous codes and float32 scales."""
    rows = data.shape[0]
    packed = np.ascontiguousarray(data).view(_LAYOUTS[kind])  # (rows, blocks)

    def scales(name: str) -> torch.Tensor:
        return torch.from_numpy(packed[name].astype(np.float32))

    codes = torch.from_numpy(np.ascontiguousarray(packed["codes"]).reshape(rows, -1))
    return Blocks(kind.lower(), codes, scales("d"), scales("m") if kind == "Q4_1" else None)


def build_kernel() -> str | None:
    """Compile the 4-bit kernel now (or load this machine's cached build), so that the first writer a server loads
    does not pay the ~30-50 s compile. Returns None when it is ready, else why not (also logged, once, as a warning:
    the writer then decodes from float32)."""
    return None if _kernel_ready() else _KERNEL.get("error", "the 4-bit kernel is unavailable")


def _kernel_ready() -> bool:
    """Compile (or load the cached build of) the kernel once per process; False, with one warning, if it fails."""
    with _LOCK:
        if "module" in _KERNEL or "error" in _KERNEL:
            return "module" in _KERNEL
        try:
            from torch.utils.cpp_extension import load_inline

            # load_inline copies the source into the build folder: the build is keyed by the source's content and
            # the CPU, not by the checkout's path (with `load`, every checkout of the repository rebuilt it).
            source = _KERNEL_SOURCE.read_text(encoding="utf-8")
            _KERNEL["module"] = load_inline(name=f"rsft_quant_matvec_{_build_tag(source)}", cpp_sources=[source],
                                            extra_cflags=_CFLAGS, no_implicit_headers=True, verbose=False)
        except Exception as exc:  # no compiler, a failed build: serve from float32
            last_line = (str(exc).strip().splitlines() or [""])[-1]  # a failed build's compiler output is long
            _KERNEL["error"] = f"{type(exc).__name__}: {last_line}"
            log.warning("the writer decodes from float32 weights: the 4-bit kernel did not build (%s)",
                        _KERNEL["error"])
            return False
        if not _KERNEL["module"].vectorised():  # its plain loop is ~10x slower than float32
            _KERNEL["error"] = "no AVX2+FMA or AVX-512 on this CPU"
            log.warning("the writer decodes from float32 weights: %s for the 4-bit kernel", _KERNEL["error"])
            del _KERNEL["module"]
        return "module" in _KERNEL


def _build_tag(source: str) -> str:
    """A short hash of the CPU's feature flags, the compiler flags and the kernel's source: a build with
    -march=native is only reused on a matching CPU, and a changed kernel is a new build (the old one stays valid
    for a checkout that still has the old source)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), text)
    except OSError:
        import platform

        flags = platform.processor() or platform.machine()
    return hashlib.sha256("\n".join([flags, *_CFLAGS, source]).encode()).hexdigest()[:10]
