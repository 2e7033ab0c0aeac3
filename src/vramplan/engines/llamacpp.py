"""llama.cpp's memory: model buffers per device, the padded KV cache per layer, the reserved compute buffers.

What llama.cpp allocates (``src/llama-model.cpp`` load_tensors, ``src/llama-kv-cache*.cpp``, ``src/llama-context.cpp``
graph_reserve; formulas.md 3.5 and 4.4), per device:

* **model buffer**: the tensors of the layers on that device. ``-ngl N`` offloads the *last* N repeating layers
  (layer ``il`` is on the GPU when ``il >= n_layer - N``); the output layer (``output.weight``, ``output_norm``) goes
  to the GPU only when ``N > n_layer``; ``token_embd`` stays in host memory (``CPU_Mapped`` with mmap). Several GPUs
  split the offloaded layers by cumulative fractions (``--tensor-split``, even by default).
* **KV cache**: ``cells x (n_embd_k_gqa x bytes(type_k) + n_embd_v_gqa x bytes(type_v))`` per layer, on the layer's
  device (``--no-kv-offload`` keeps it on the host). ``cells`` is ``n_ctx`` padded (32 without flash attention and 256
  with it in 2024-25 builds, 256 always after PR #17046); sliding-window layers of iSWA models hold
  ``min(n_ctx, PAD(n_swa x n_seq + n_ubatch, pad))`` cells; MLA models cache one latent (K only) since the 2025 MLA
  rework (earlier builds cached decompressed K and V). Quantized types use ggml block sizes (q8_0: 34 B per 32).
* **compute buffer**: ggml-alloc reserves the worst-case graph for one u-batch of ``n_tokens = min(n_ctx, n_ubatch)``
  tokens with every token an output. Its size is the largest of three phases:
  attention (without flash attention the f32 ``KQ`` scores ``n_kv x n_tokens x n_head x 4`` plus the f32 mask and a few
  ``n_embd``-wide activations; with flash attention only the mask and the activations), the FFN, and the output
  (``n_vocab x n_tokens x 4`` logits plus the final norm). With partial offload on CUDA the output matrix, left on the
  host, is copied into the GPU buffer for the batched matmul ("op offload"), so the GPU buffer grows by its size.
* host: the input embeddings and the mask (``CUDA_Host compute buffer``), and the output buffer for the logits
  (``n_vocab x n_seq x 4``) and embeddings of the last tokens.

The activation multipliers (4 ``n_embd``-wide f32 activations live at the KQ product for architectures with separate
Q/K/V projections, 6 for fused-QKV ones such as GPT-NeoX or Phi-3; 3 in early-2024 builds) are read off the
groundtruth logs and named where used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..core.gguf_mix import GGUF_MIXES, ggml_nbytes, gguf_tensor_types
from ..core.memory import partial_indexer
from ..core.model import FULL, MAMBA, MLA, SLIDING, ModelSpec, iter_tensors
from ..errors import InvalidRequest, UnknownName, suggest

MiB = 1 << 20
GiB = 1 << 30
CUDA_CONTEXT_BYTES = 512 * MiB  # formulas.md 4.3 (0.3-0.6 GiB per process per GPU); core/memory.py uses the same


@dataclass(frozen=True, slots=True)
class LlamaCppRules:
    build: int
    label: str
    ubatch: bool  # n_ubatch exists (before: one batch of n_batch tokens)
    pad_no_fa: int  # KV cells padding without flash attention
    pad_fa: int
    attn_acts_separate: float  # n_embd-wide f32 activations live at the KQ product (separate Q/K/V)
    attn_acts_fused: float  # the same with a fused QKV projection
    host_partial_ffn: bool  # with partial offload the host compute buffer holds an n_ff-wide activation
    mla_latent: bool  # MLA cached as one latent (K only) instead of decompressed K and V
    flash_attn_default: bool
    source: str


LLAMACPP_RULES: tuple[LlamaCppRules, ...] = (
    LlamaCppRules(1000, "b1000", False, 1, 1, 3, 5, False, False, False,
                  "ggml-org/ci b1832 logs (Jan 2024): one batch of n_batch tokens, 'VRAM scratch buffer'"),
    LlamaCppRules(2000, "b2000", False, 32, 32, 4, 6, False, False, False,
                  "KV cells padded to 32 (llama_kv_cache get_padding)"),
    LlamaCppRules(2900, "b2900", True, 32, 256, 4, 6, False, False, False,
                  "n_ubatch (default 512) and flash attention (-fa): padding 256 with FA (formulas.md 3.5)"),
    LlamaCppRules(4500, "b4500", True, 32, 256, 4, 6, True, False, False,
                  "ggml-org/ci b4775 logs: partial offload puts an n_ff-wide activation in CUDA_Host"),
    LlamaCppRules(5100, "b5100", True, 32, 256, 4, 6, True, True, False,
                  "MLA caches the compressed latent, K only (formulas.md 3.2; April-May 2025)"),
    LlamaCppRules(6100, "b6100", True, 32, 256, 4, 6, True, True, True,
                  "flash attention 'auto' by default where the backend supports it (approximate build)"),
    LlamaCppRules(7000, "b7000", True, 256, 256, 4, 6, True, True, True,
                  "PR #17046: n_ctx padded to 256 regardless of flash attention (approximate build)"),
)
VERSIONS = tuple(r.label for r in LLAMACPP_RULES)
DEFAULT_VERSION = LLAMACPP_RULES[-1].label
OP_OFFLOAD_MIN_BATCH = 32  # ggml-cuda offloads host-weight matmuls for batches of at least 32 tokens
KQ_MASK_PAD = 64  # GGML_KQ_MASK_PAD: the mask's token dimension is padded (64 in 2024-25 builds)
FUSED_QKV_TYPES = frozenset({"gpt_neox", "gptneox", "phi3", "phi", "phi2", "falcon", "gpt2", "bloom", "mpt",
                             "starcoder", "stablelm", "gptj", "persimmon", "refact"})


def parse_build(text) -> int:
    """'b4343', '4343', 'b4343 (0006f5a74)' -> 4343."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = re.match(r"^\s*b?(\d+)", str(text))
    if not m:
        raise UnknownName("llama.cpp build", str(text), list(VERSIONS))
    return int(m.group(1))


def rules_for(version) -> LlamaCppRules:
    from . import newest_rules_not_after

    parsed = None if version in (None, "", "latest") else parse_build(version)
    return newest_rules_not_after(LLAMACPP_RULES, version, parsed, lambda r: r.build, "llama.cpp build", VERSIONS)


def pad(n: int, p: int) -> int:
    return -(-n // p) * p if p > 1 else n


# ----- tensors and their devices -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PlacedTensor:
    layer: int  # >= 0 decoder layer; -1 input (token_embd and friends); -2 the output layer
    name: str
    ggml_type: str
    nbytes: int


_BLK = re.compile(r"^blk\.(\d+)\.")


def tensors_from_gguf(gguf) -> list[PlacedTensor]:
    """The exact tensor table of a parsed GGUF file (or a split set)."""
    files = gguf if isinstance(gguf, (list, tuple)) else (gguf,)
    out = []
    for f in files:
        for t in f.tensors:
            m = _BLK.match(t.name)
            if m:
                layer = int(m.group(1))
            elif t.name.startswith(("output.", "output_norm.")):
                layer = -2
            else:
                layer = -1
            out.append(PlacedTensor(layer, t.name, t.ggml_type_name, t.nbytes))
    return out


def mix_for(fmt, is_moe: bool = True) -> str:
    """The llama.cpp mix closest to a weight format (GGUF mixes by name; 16-bit formats as F16/BF16; MXFP4 expert
    formats as MXFP4_MOE on MoE models)."""
    name = str(getattr(fmt, "name", fmt)).upper().replace("-", "_")
    if name in GGUF_MIXES:
        return name
    if name in ("BF16", "BFLOAT16"):
        return "BF16"
    if name in ("FP32", "F32", "FLOAT32"):
        return "F32"
    if name in ("FP16", "F16", "FLOAT16"):
        return "F16"
    if name in ("FP8", "INT8") or name.startswith(("FP8", "INT8")):
        return "Q8_0"
    if name.startswith(("INT4", "GPTQ", "AWQ", "BNB", "NF4")):
        return "Q4_K_M"
    if is_moe and ("MXFP4" in name or (name.startswith("COMPRESSED_TENSORS_FP4")
                                       and getattr(fmt, "group_size", 0) == 32)):
        return "MXFP4_MOE"  # MXFP4 experts (gpt-oss, Kimi-K3): llama.cpp's MXFP4 experts + Q8_0 rest
    bits = getattr(fmt, "bits", 16)  # other quantized formats (compressed-tensors, MXFP4, NVFP4, ...) by width
    if isinstance(bits, (int, float)) and bits <= 4:
        return "Q4_K_M"
    if isinstance(bits, (int, float)) and bits <= 8:
        return "Q8_0"
    return "F16"


# llama-quant.cpp gives a fused attn_qkv tensor its own type under the _M/_L K-quant mixes (no per-layer attn_v bump)
_FUSED_QKV_TYPE = {"Q3_K_M": "Q4_K", "Q3_K_L": "Q4_K", "Q4_K_M": "Q5_K", "Q5_K_M": "Q6_K"}


def tensors_from_spec(spec: ModelSpec, mix: str, fused_qkv: bool = False, logits: bool = True) -> list[PlacedTensor]:
    """llama.cpp's quantizer types for every tensor of ``spec`` under ``mix`` (core/gguf_mix.py), placed. For
    fused-QKV architectures the Q, K and V parts take the fused tensor's type. ``logits=False`` (embedding models)
    drops the output head."""
    out = []
    for (layer, name, typ, nbytes), (_, t) in zip(gguf_tensor_types(spec, mix), iter_tensors(spec)):
        if t.role in ("vision", "extra"):  # vision / audio towers go to a separate mmproj GGUF (--mmproj)
            continue
        if layer < 0 and (t.role in ("output", "output_norm") or (t.role == "bias" and t.group == "lm_head")):
            if not logits and t.role != "output_norm":
                continue
            layer = -2
        if fused_qkv and t.role in ("attn_q", "attn_k", "attn_v") and typ not in ("F32", "F16", "BF16"):
            typ = _FUSED_QKV_TYPE.get(mix, GGUF_MIXES[mix])
            nbytes = ggml_nbytes(typ, t.numel)
        out.append(PlacedTensor(layer, name, typ, nbytes))
    return out


def layer_devices(n_layer: int, ngl: int, n_gpus: int = 1, split: tuple[float, ...] = ()) -> list[int]:
    """Device of each repeating layer (-1 host, else GPU index) and, last, of the output layer: the last ``ngl``
    layers are offloaded, split over the GPUs by cumulative fractions (llama-model.cpp get_layer_buft_list)."""
    ngl = max(0, ngl)
    act = min(ngl, n_layer + 1)
    start = max(n_layer - ngl, 0)
    fr = list(split) if split else [1.0] * n_gpus
    total = sum(fr)
    cum = []
    acc = 0.0
    for f in fr:
        acc += f / total
        cum.append(acc)
    out = []
    for il in range(n_layer + 1):  # the output layer is index n_layer
        if il < start or (il - start) >= act or n_gpus == 0:
            out.append(-1)
            continue
        x = (il - start) / act
        dev = next((i for i, c in enumerate(cum) if x < c), len(cum) - 1)
        out.append(dev)
    return out


# ----- KV cache ----------------------------------------------------------------------------------------------------

KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def kv_type(name: str) -> str:
    n = (name or "f16").lower()
    n = {"auto": "f16", "fp16": "f16", "float16": "f16", "bfloat16": "bf16", "fp32": "f32", "float32": "f32",
         "fp8": "q8_0", "int8": "q8_0"}.get(n, n)
    if n not in KV_TYPES:
        raise UnknownName("llama.cpp KV cache type", name, suggest(name, KV_TYPES))
    return n


def row_bytes(typ: str, n: int) -> int:
    """Bytes of ``n`` elements of ggml type ``typ`` (ggml_row_size)."""
    return ggml_nbytes(typ.upper(), n)


def kv_layer_bytes_per_cell(spec: ModelSpec, kind: str, type_k: str, type_v: str, mla_latent: bool) -> int:
    if kind == MLA:
        # DSA models (DeepSeek-V3.2, GLM-5) keep a second, K-only cache of indexer keys in type_k
        idx = row_bytes(type_k, spec.indexer_head_dim) if spec.indexer_heads and not spec.indexer_layer_mask else 0
        if mla_latent:
            return row_bytes(type_k, spec.kv_lora_rank + spec.qk_rope_head_dim) + idx
        k = spec.num_heads * (spec.qk_nope_head_dim + spec.qk_rope_head_dim)
        return row_bytes(type_k, k) + row_bytes(type_v, spec.num_heads * spec.value_head_dim) + idx
    if kind in (FULL, SLIDING):
        if spec.global_head_dim:  # Gemma 4 / MiMo-V2: per-kind head size and KV heads
            d, g = spec.head_dim_for(kind), spec.kv_heads_for(kind)
            return row_bytes(type_k, g * d) + row_bytes(type_v, g * (spec.v_head_dim or d))
        return (row_bytes(type_k, spec.num_kv_heads * spec.head_dim)
                + row_bytes(type_v, spec.num_kv_heads * spec.value_head_dim))
    return 0


def kv_cells(n_ctx: int, n_seq: int, rules: LlamaCppRules, flash_attn: bool, unified: bool = True) -> int:
    """Cells of the (non-SWA) KV cache: n_ctx padded; with separate per-sequence streams each is padded."""
    p = rules.pad_fa if flash_attn else rules.pad_no_fa
    if not unified and n_seq > 1 and rules.build >= 7000:
        return n_seq * pad(n_ctx // n_seq, 256)
    return pad(n_ctx, p)


def swa_cells(spec: ModelSpec, n_ctx_cells: int, n_seq: int, n_ubatch: int, rules: LlamaCppRules,
              flash_attn: bool, unified: bool = True, swa_full: bool = False) -> int:
    """llama-kv-cache-iswa.cpp: min(n_ctx, PAD(n_swa x (unified ? n_seq : 1) + n_ubatch, pad))."""
    if swa_full or not spec.sliding_window:
        return n_ctx_cells
    p = rules.pad_fa if flash_attn else rules.pad_no_fa
    return min(n_ctx_cells, pad(spec.sliding_window * (n_seq if unified else 1) + n_ubatch, p))


def recurrent_state_bytes_per_cell(spec: ModelSpec) -> int:
    """One recurrent layer's state for one sequence (``llama-hparams.cpp`` n_embd_r / n_embd_s, f32 always):
    R = (d_conv - 1) x (d_inner + 2 x n_group x d_state) conv values, S = d_state x d_inner (gated DeltaNet maps
    these onto its key / value heads: S = value heads x d_k x d_v)."""
    return 4 * ((spec.ssm_conv_kernel - 1) * spec.ssm_conv_channels() + spec.ssm_recurrent_elements())


# ----- compute buffers ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ComputeBuffers:
    gpu_bytes: int
    host_bytes: int
    attention_bytes: int
    ffn_bytes: int
    output_bytes: int
    offloaded_output_bytes: int
    n_tokens: int


def compute_buffers(spec: ModelSpec, *, n_kv: int, n_tokens: int, flash_attn: bool, rules: LlamaCppRules,
                    fused_qkv: bool, logits: bool = True, pooling_mean: bool = False, output_on_host: bool = False,
                    output_weight_bytes: int = 0, gpu: bool = True, partial: bool = False,
                    op_offload: bool = True) -> ComputeBuffers:
    """The reserved compute buffers (f32 activations of one u-batch) on the GPU and in host memory."""
    E, H, V = spec.hidden_size, spec.num_heads, spec.vocab_size
    F = spec.intermediate_size
    if spec.is_moe and all(spec.moe_mask):
        F = spec.moe_intermediate_size * spec.experts_per_token + spec.shared_expert_intermediate_size
    n = n_tokens
    f32 = 4
    mask = n_kv * pad(n, KQ_MASK_PAD if rules.ubatch else 1) * f32
    acts = rules.attn_acts_fused if fused_qkv else rules.attn_acts_separate
    embd = E * n * f32
    if flash_attn:
        attn = mask + n_kv * n * 2 + int(acts * embd)  # the f32 mask, its f16 cast, the activations
    else:
        attn = n_kv * n * H * f32 + mask + int(acts * embd)
    # FFN: the residual and the normed input, then gate and up (the SiLU and the product run in place);
    # ungated MLPs hold one n_ff-wide activation
    ffn = n * f32 * (2 * E + (2 if spec.mlp_gated else 1) * F)
    out_rows = n if logits else 0
    # mean pooling: the transposed copy of the final hidden states and the pooled result on the device, and a
    # small n_tokens x n_seq averaging matrix on the host
    pool = 2 * embd if pooling_mean else 0
    output = out_rows * V * f32 + embd + pool
    offloaded = 0
    if output_on_host and logits and op_offload and n >= OP_OFFLOAD_MIN_BATCH:
        offloaded = output_weight_bytes + out_rows * V * f32 + embd
    gpu_bytes = max(attn, ffn, offloaded if output_on_host else output) if gpu else 0
    # host inputs: the token embeddings looked up on the host (and learned position embeddings), the f32 mask
    host = embd * (2 if spec.learned_pos_embeddings else 1) + mask + (n * f32 if pooling_mean else 0)
    if partial:
        host += n * f32 * (F if rules.host_partial_ffn else E)
    if not gpu:  # CPU only: the whole graph lives in the host buffer
        host = max(attn, ffn, output) + ((embd + mask) if rules.ubatch else 0)
    return ComputeBuffers(gpu_bytes, host, attn, ffn, output, offloaded, n)


# ----- the plan ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeviceMemory:
    name: str
    model_bytes: int
    kv_bytes: int
    compute_bytes: int
    output_bytes: int = 0
    kv_layers: int = 0

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.kv_bytes + self.compute_bytes + self.output_bytes


@dataclass(frozen=True, slots=True)
class LlamaCppPlan:
    rules: LlamaCppRules
    n_ctx: int
    cells: int
    swa_cells: int
    n_seq: int
    n_ubatch: int
    flash_attn: bool
    type_k: str
    type_v: str
    ngl: int
    gpus: tuple[DeviceMemory, ...]
    host: DeviceMemory
    compute: ComputeBuffers
    kv_bytes_per_cell: int
    notes: tuple[str, ...] = field(default=())


PIPELINE_COPIES = 4
"""GGML_SCHED_MAX_COPIES (ggml-backend.cpp, compile-time default 4): graph buffer copies with pipeline parallelism; a
multi-GPU Qwen3.5-27B log shows 1,597 MiB of compute per GPU against 404 MiB for one copy."""


def llamacpp_memory(spec: ModelSpec, tensors: list[PlacedTensor], *, n_ctx: int, n_seq: int = 1,
                    n_ubatch: int = 512, n_batch: int = 2048, n_gpu_layers: int | None = None,
                    flash_attn: bool | None = None, type_k: str = "f16", type_v: str | None = None,
                    version=None, n_gpus: int = 1, tensor_split: tuple[float, ...] = (),
                    no_kv_offload: bool = False, kv_unified: bool = True, swa_full: bool = False,
                    embeddings: bool = False, pooling_mean: bool = False, logits: bool = True,
                    fused_qkv: bool | None = None, backend: str = "cuda", n_cpu_moe: int = 0,
                    rules: LlamaCppRules | None = None) -> LlamaCppPlan:
    """Pure accounting of one llama.cpp context on ``n_gpus`` devices plus the host. ``rules`` replaces the
    build's rules (the accuracy benchmark uses it to show the model without its log-read multipliers)."""
    rules = rules or rules_for(version)
    notes: list[str] = []
    if n_ctx < 1:
        raise InvalidRequest("n_ctx must be at least 1", field="max_model_len")
    n_layer = spec.num_layers
    ngl = n_layer + 1 if n_gpu_layers is None or n_gpu_layers < 0 else int(n_gpu_layers)
    if n_gpus == 0 or backend == "cpu":
        ngl = 0
    fa = rules.flash_attn_default and ngl > 0 if flash_attn is None else bool(flash_attn)
    tk = kv_type(type_k)
    tv = kv_type(type_v or type_k)
    if tv not in ("f16", "bf16", "f32") and not fa:
        raise InvalidRequest(f"a quantized V cache ({tv}) needs flash attention in llama.cpp: turn flash attention "
                             f"on or keep type_v f16", field="kv_cache_dtype")
    ub = min(n_ubatch, n_batch) if rules.ubatch else n_batch
    cells = kv_cells(n_ctx, n_seq, rules, fa, kv_unified)
    sw_cells = swa_cells(spec, cells, n_seq, ub, rules, fa, kv_unified, swa_full)
    devs = layer_devices(n_layer, ngl, max(n_gpus, 1) if ngl else 0, tensor_split)
    n_dev = max(n_gpus, 1)
    if logits and not any(t.layer == -2 and t.name.startswith(("output.weight", "lm_head")) for t in tensors):
        # tied embeddings: llama.cpp loads token_embd a second time as the output matrix, on the output layer's
        # device (TENSOR_DUPLICATED), while the original stays on the host for the input lookup
        emb = [t for t in tensors if t.name.startswith(("token_embd.weight", "embed_tokens"))]
        if emb:
            tensors = list(tensors) + [PlacedTensor(-2, "output.weight (tied)", emb[0].ggml_type, emb[0].nbytes)]
    model = [0] * n_dev
    host_model = 0
    out_weight = 0
    moe_host = 0
    for t in tensors:
        if t.layer == -2 and t.name.startswith(("output.weight", "lm_head")):
            out_weight += t.nbytes
        if 0 <= t.layer < n_cpu_moe and ("_exps" in t.name or ".experts." in t.name):
            host_model += t.nbytes  # --n-cpu-moe / --cpu-moe: the routed experts of these layers stay in host RAM
            moe_host += t.nbytes
            continue
        if t.layer >= 0:
            d = devs[t.layer] if t.layer < n_layer else -1
        elif t.layer == -2:
            d = devs[n_layer]
        else:
            d = -1
        if d < 0:
            host_model += t.nbytes
        else:
            model[d] += t.nbytes
    output_on_host = devs[n_layer] < 0
    kv = [0] * n_dev
    kv_layers = [0] * n_dev
    host_kv = 0
    per_cell_total = 0
    rs_cells = max(1, n_seq)
    rs_layer = recurrent_state_bytes_per_cell(spec) if MAMBA in spec.kinds else 0
    rs_total = 0
    for il, kind in enumerate(spec.cache_kinds):
        c = sw_cells if kind == SLIDING else cells
        b = c * kv_layer_bytes_per_cell(spec, kind, tk, tv, rules.mla_latent)
        if kind == MAMBA:
            b = rs_cells * rs_layer
            rs_total += b
        elif partial_indexer(spec) and spec.indexer_mask[il]:  # index keys of the layers that keep their own
            b += c * row_bytes(tk, spec.indexer_head_dim)
        per_cell_total += kv_layer_bytes_per_cell(spec, kind, tk, tv, rules.mla_latent)
        d = -1 if no_kv_offload else devs[il]
        if d < 0:
            host_kv += b
        else:
            kv[d] += b
            kv_layers[d] += 1
    if fused_qkv is None:
        names = {t.name for t in tensors}
        fused_qkv = any(".attn_qkv." in n for n in names) or spec.model_type.lower() in FUSED_QKV_TYPES
    n_tok = min(cells, ub)
    partial = 0 < ngl <= n_layer
    any_gpu = ngl > 0
    cb = compute_buffers(spec, n_kv=cells, n_tokens=n_tok, flash_attn=fa, rules=rules, fused_qkv=fused_qkv,
                         logits=logits, pooling_mean=pooling_mean, output_on_host=output_on_host,
                         output_weight_bytes=out_weight, gpu=any_gpu, partial=partial,
                         op_offload=backend == "cuda")
    out_buf = ((spec.vocab_size if logits else 0) + (spec.hidden_size if embeddings else 0)) * max(n_seq, 1) * 4
    gname = {"cuda": "CUDA", "metal": "Metal", "rocm": "ROCm", "vulkan": "Vulkan"}.get(backend, backend.upper())
    # llama-context.cpp: pipeline parallelism (the scheduler keeps GGML_SCHED_MAX_COPIES = 4 copies of the graph
    # buffers) when several GPUs hold every layer (-ngl > n_layer) with the layer split, the KV cache offloaded and no
    # tensor overrides (--n-cpu-moe is one)
    pipeline = n_dev > 1 and ngl > n_layer and not no_kv_offload and not n_cpu_moe and backend != "cpu"
    copies = PIPELINE_COPIES if pipeline else 1
    gpus = tuple(DeviceMemory(f"{gname}{i}", model[i], kv[i], copies * cb.gpu_bytes
                              if any_gpu and (i == 0 or kv_layers[i]) else 0, 0, kv_layers[i])
                 for i in range(n_dev)) if any_gpu else ()
    host = DeviceMemory("host", host_model, host_kv, cb.host_bytes, out_buf)
    if moe_host:
        notes.append(f"--n-cpu-moe {min(n_cpu_moe, n_layer)}: the routed experts of the first {min(n_cpu_moe, n_layer)} "
                     f"layers ({moe_host / 2**20:,.2f} MiB) stay in host RAM and run on the CPU; attention, shared "
                     "experts and the KV cache stay on the GPU")
    if rs_total:
        notes.append(f"recurrent layers: llama_memory_recurrent keeps R (conv) and S (SSM) states in f32 for "
                     f"{rs_cells} sequence(s): {rs_total / 2**20:.2f} MiB (RS buffer), counted with the KV cache")
    if n_gpus > 1:
        notes.append("compute buffers on GPUs after the first are taken equal to the first (an upper bound)"
                     + (f"; pipeline parallelism is on (every layer on the GPUs, layer split), so each holds "
                        f"{PIPELINE_COPIES} copies" if pipeline else ""))
    if spec.is_moe:
        notes.append("MoE compute buffer approximated with the active experts' width")
    return LlamaCppPlan(rules, n_ctx, cells, sw_cells, n_seq, ub, fa, tk, tv, ngl, gpus, host, cb, per_cell_total,
                        tuple(notes))


def _cpu_moe_layers(options: dict, spec: ModelSpec) -> int:
    """--cpu-moe (every layer) or --n-cpu-moe N (the first N layers)."""
    if options.get("cpu_moe"):
        return spec.num_layers
    n = options.get("n_cpu_moe")
    if n is None:
        return 0
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidRequest(f"n_cpu_moe must be a whole number of layers >= 0, got {n!r}", field="n_cpu_moe")
    if n and not spec.is_moe:
        raise InvalidRequest(f"{spec.name} has no routed experts to keep in host RAM", field="n_cpu_moe")
    return n


def _gguf_of(lm):
    extra = getattr(lm, "extra", None) or {}
    return extra.get("gguf")


def plan(*, lm, fmt, wb, context: int, batch: int = 1, kv_dtype: str = "auto", tp: int = 1, pp: int = 1, gpu=None,
         engine_version=None, gpu_memory_utilization=None, max_num_batched_tokens=None, max_num_seqs=None,
         **options) -> dict:
    """CONTRACT.md inference dict for ``--engine llama.cpp``: memory per GPU (device 0), the host RAM it needs."""
    spec = lm.spec
    gguf = _gguf_of(lm)
    if gguf is not None:
        tensors = tensors_from_gguf(gguf)
        source = "the GGUF file's tensor table"
    else:
        mix = mix_for(fmt, spec.is_moe)
        tensors = tensors_from_spec(spec, mix, spec.model_type.lower() in FUSED_QKV_TYPES,
                                    logits=not bool(options.get("embedding_model", False)))
        source = f"llama.cpp's {mix} mix (core/gguf_mix.py)"
        if spec.extra_params:
            towers = sum(n for _, n in spec.extra_params)
            source += (f"; the {towers:,}-parameter vision/audio towers are left out: llama.cpp keeps them in a "
                       f"separate mmproj GGUF, loaded only with --mmproj")
        own = str(getattr(fmt, "name", fmt)).upper().replace("-", "_")
        if own not in GGUF_MIXES and mix not in ("BF16", "F16", "F32"):
            source += (f"; llama.cpp loads GGUF files only, so {getattr(fmt, 'name', fmt)} weights are planned as the "
                       f"nearest GGUF mix, {mix} (convert and llama-quantize the model)")
    fa_opt = options.get("flash_attn")
    fa = None if fa_opt in (None, "auto") else (fa_opt in (True, "on", "1", 1, "true"))
    n_gpus = int(options.get("n_gpus", max(tp, 1)))
    backend = options.get("backend") or ("metal" if gpu is not None and getattr(gpu, "unified_memory", False)
                                         else "cuda")
    n_ctx = int(options.get("n_ctx") or context * max(batch, 1))
    p = llamacpp_memory(spec, tensors, n_ctx=n_ctx, n_seq=max(batch, 1),
                        n_ubatch=int(options.get("ubatch_size") or 512), n_batch=int(options.get("n_batch") or 2048),
                        n_gpu_layers=options.get("n_gpu_layers"), flash_attn=fa,
                        type_k=options.get("type_k") or kv_dtype, type_v=options.get("type_v"),
                        version=engine_version, n_gpus=n_gpus,
                        no_kv_offload=bool(options.get("no_kv_offload", False)),
                        kv_unified=bool(options.get("kv_unified", True)), swa_full=bool(options.get("swa_full", False)),
                        embeddings=bool(options.get("embeddings", False)), backend=backend,
                        n_cpu_moe=_cpu_moe_layers(options, spec))
    # the table is per GPU: the busiest device's (with a layer split the devices differ)
    g0 = max(p.gpus, key=lambda d: d.model_bytes + d.kv_bytes + d.compute_bytes) if p.gpus \
        else DeviceMemory("none", 0, 0, 0)
    runtime = CUDA_CONTEXT_BYTES if p.gpus and backend == "cuda" else 0
    memory = {"weights": g0.model_bytes, "kv_cache": g0.kv_bytes, "activations": g0.compute_bytes,
              "runtime": runtime}
    memory["total"] = sum(memory.values())
    host = {"weights": p.host.model_bytes, "kv_cache": p.host.kv_bytes, "compute": p.host.compute_bytes,
            "output": p.host.output_bytes}
    host["total"] = sum(host.values())
    capacity = {"kv_cache_tokens": p.cells, "max_concurrency": round(p.cells / max(context, 1), 2),
                "kv_cache_cells": p.cells}
    total_gpu = options.get("gpu_memory_bytes") or (gpu.memory_total_bytes if gpu is not None else None)
    if total_gpu:
        capacity["gpu_memory_bytes"] = int(total_gpu)
        capacity["fits"] = memory["total"] <= int(total_gpu)
    devices = [{"name": d.name, "weights": d.model_bytes, "kv_cache": d.kv_bytes, "compute": d.compute_bytes,
                "kv_layers": d.kv_layers, "total": d.total_bytes} for d in p.gpus]
    return {"memory": memory, "host_memory": host, "capacity": capacity, "devices": devices,
            "engine": {"name": "llama.cpp", "version": str(engine_version or p.rules.label), "rules": p.rules.label,
                       "n_ctx": p.n_ctx, "kv_cells": p.cells, "swa_cells": p.swa_cells, "n_ubatch": p.n_ubatch,
                       "n_gpu_layers": p.ngl, "flash_attn": p.flash_attn, "type_k": p.type_k, "type_v": p.type_v,
                       "tensors_from": source},
            "kv_bytes_per_token": p.kv_bytes_per_cell,
            "explain": explain(p, spec, source) + ([f"the table shows {g0.name}, the busiest GPU"]
                                                   if len(p.gpus) > 1 else [])}


def explain(p: LlamaCppPlan, spec: ModelSpec, source: str) -> list[str]:
    m = lambda b: f"{b / MiB:.2f} MiB"  # noqa: E731
    lines = [f"llama.cpp {p.rules.label} rules; tensor sizes from {source}",
             f"n_ctx {p.n_ctx:,} -> {p.cells:,} KV cells (padding {p.rules.pad_fa if p.flash_attn else p.rules.pad_no_fa}"
             + (f"; sliding-window layers {p.swa_cells:,} cells" if p.swa_cells != p.cells else "") + ")",
             f"-ngl {p.ngl}: " + ", ".join(f"{d.name} model {m(d.model_bytes)}, KV {m(d.kv_bytes)} "
                                           f"({d.kv_layers} layers), compute {m(d.compute_bytes)}" for d in p.gpus),
             f"host: model {m(p.host.model_bytes)} (token_embd and non-offloaded layers; memory-mapped), KV "
             f"{m(p.host.kv_bytes)}, compute {m(p.host.compute_bytes)}, output buffer {m(p.host.output_bytes)}",
             f"compute buffer for {p.compute.n_tokens} tokens ({'flash attention' if p.flash_attn else 'no flash attention: f32 KQ scores'}): "
             f"attention {m(p.compute.attention_bytes)}, FFN {m(p.compute.ffn_bytes)}, output {m(p.compute.output_bytes)}"
             + (f", host output matrix copied for the GPU {m(p.compute.offloaded_output_bytes)}"
                if p.compute.offloaded_output_bytes else "")]
    return lines + list(p.notes)
