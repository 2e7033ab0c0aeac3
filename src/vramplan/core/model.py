"""Model specifications and the exact tensor inventory they imply.

A :class:`ModelSpec` holds the architecture facts that memory depends on (what a ``config.json`` says, once parsed by
``vramplan.sources.hf_config``). :func:`tensor_inventory` lists every weight tensor with its shape and role, grouped by
identical layers, so that parameter counts, quantized weight bytes (including llama.cpp's per-tensor mixes), LoRA
adapter sizes and sharding units all come from one enumeration. Parameter formulas follow
reference/formulas.md section 1 (pinned there against transformers' meta-device counts).

Roles follow GGUF tensor names where one exists: ``token_embd``, ``output`` (lm_head), ``output_norm``, ``attn_q``,
``attn_k``, ``attn_v``, ``attn_output``, ``ffn_gate``, ``ffn_up``, ``ffn_down``, ``ffn_*_exps`` (routed experts, 3-D),
``ffn_*_shexp`` (shared experts), ``ffn_gate_inp`` (router); plus ``norm`` and ``bias`` for 1-D tensors, ``vision``
for a vision tower and ``mtp`` for multi-token-prediction layers.
"""

from __future__ import annotations

from functools import lru_cache
from math import prod
from .records import record

# Layer kinds, as far as memory is concerned.
FULL = "full"  # global attention: KV grows with context
SLIDING = "sliding"  # windowed attention: KV capped at the window
MLA = "mla"  # multi-head latent attention: one compressed latent per token
MAMBA = "mamba"  # recurrent state: constant per sequence (Mamba-1/2 mixers, gated DeltaNet linear attention)
NOMIX = "mlp_only"  # a block with no token mixer at all (Nemotron-H's MLP and MoE blocks): no cache
CSA = "csa"  # DeepSeek-V4 compressed sparse attention: a 128-token window + one entry per 4 tokens (+ indexer keys)
HCA = "hca"  # DeepSeek-V4 heavily compressed attention: a 128-token window + one entry per 128 tokens
LAYER_KINDS = (FULL, SLIDING, MLA, MAMBA, NOMIX, CSA, HCA)
COMPRESS_RATIO = {CSA: 4, HCA: 128}
# Feed-forward part of a layer
DENSE, MOE, NO_MLP = "dense", "moe", "none"
DENSE_MOE = "dense+moe"  # Gemma 4 26B-A4B: a dense MLP and a MoE block side by side, outputs summed
DENSE_WIDE = "dense2x"  # Gemma 4 E2B: KV-sharing layers with a double-wide MLP
# Recurrent mixers (layer kind MAMBA)
MAMBA1, MAMBA2, GATED_DELTANET = "mamba1", "mamba2", "gated_deltanet"
KDA = "kda"  # Kimi Delta Attention (Kimi Linear): a gated delta rule like DeltaNet, with per-channel gates
DELTA_RULE = (GATED_DELTANET, KDA)  # linear attention with a (heads x k_dim x v_dim) state
SHORT_CONV = "short_conv"  # LFM2: gated depthwise short convolution, a conv state and no recurrent state

# Roles of 2-D/3-D weight tensors inside decoder layers: the ones weight-only quantization formats convert.
LINEAR_ROLES = frozenset({
    "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b",
    "ffn_gate", "ffn_up", "ffn_down", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
    "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp", "ssm_in", "ssm_out", "ssm_x", "ssm_dt", "ssm_ba",
    "attn_idx_q", "attn_idx_k", "ffn_latent_in", "ffn_latent_out", "attn_output_a",
    "ssm_f_a", "ssm_f_b", "ssm_g_a", "ssm_g_b", "ssm_beta", "attn_gate_full",
})
EXPERT_ROLES = frozenset({"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
BUFFER_ROLES = frozenset({"hash_table", "buffer"})  # stored in the checkpoint (bytes counted) but not learned parameters


@record
class Tensor:
    """One weight tensor. ``shape`` is (out_features, in_features) for linears, (experts, out, in) for experts."""

    name: str
    role: str
    shape: tuple[int, ...]
    group: str  # the breakdown line it belongs to (attention, mlp, experts, ...)
    dtype_bytes: int = 0  # a fixed storage width (fp32 = 4, int64 = 8) where the checkpoint keeps one; 0: the format's

    @property
    def numel(self) -> int:
        return prod(self.shape)


@record
class LayerGroup:
    """Identical decoder layers: their indices and the tensors each one holds."""

    kind: str
    layers: tuple[int, ...]
    tensors: tuple[Tensor, ...]
    moe: bool = False
    mlp: str = DENSE  # dense | moe | none


@record
class ModelSpec:
    """Architecture facts of a decoder-only transformer (or hybrid), enough to count every byte.

    Sizes use the config's names: h = hidden_size, L = num_layers, n_h = num_heads, n_kv = num_kv_heads,
    d = head_dim, I = intermediate_size, V = vocab_size.
    """

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    architecture: str = ""
    model_type: str = ""
    tie_embeddings: bool = False
    v_head_dim: int = 0  # 0: same as head_dim
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: int = 2
    norm_bias: bool = False  # LayerNorm with bias (Phi-2, GPT-NeoX) instead of RMSNorm
    parametric_norms: bool = True  # OLMo 1: LayerNorm without weight or bias (no stored tensors)
    mlp_gated: bool = True  # SwiGLU/GeGLU: gate, up, down; False: fc1, fc2
    mlp_bias: bool = False
    lm_head_bias: bool = False
    learned_pos_embeddings: int = 0  # rows of a learned position table (GPT-2, OPT)
    layer_kinds: tuple[str, ...] = ()  # one per layer; empty means all FULL
    sliding_window: int = 0
    # Mixture of experts
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0  # total width of the shared expert(s)
    shared_expert_gate: bool = False  # Qwen-MoE: Linear(h, 1) gating the shared expert
    moe_layer_mask: tuple[bool, ...] = ()  # one per layer; empty with num_experts > 0 means every layer
    router_bias: bool = False
    expert_bias: bool = False  # gpt-oss experts carry biases
    score_correction_bias: bool = False  # DeepSeek-V3 e_score_correction_bias (E per MoE layer)
    # Multi-head latent attention (DeepSeek V2/V3)
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    # DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5): a lightning indexer in the MLA layers
    indexer_heads: int = 0
    indexer_head_dim: int = 0
    indexer_layer_mask: tuple[bool, ...] = ()  # one per layer; empty with an indexer means every layer
    # Recurrent (MAMBA-kind) layers: Mamba-1, Mamba-2 or gated DeltaNet mixers
    ssm_state_size: int = 0  # N (Mamba-1/2)
    ssm_conv_kernel: int = 0  # K
    ssm_expand: int = 0
    ssm_dt_rank: int = 0  # Mamba-1
    ssm_variant: str = MAMBA1
    ssm_inner: int = 0  # d_inner when the config states it (Nemotron-H: heads x head_dim); 0: expand x hidden
    ssm_heads: int = 0  # Mamba-2 heads H (head dim = d_inner / H)
    ssm_groups: int = 1  # Mamba-2 B/C groups G
    ssm_conv_bias: bool = True
    ssm_proj_bias: bool = False  # in_proj / out_proj biases
    ssm_gated_norm: bool = True  # Mamba-2 gated RMSNorm over d_inner
    ssm_bcdt_norms: bool = False  # Jamba: RMSNorms on dt, B and C
    ssm_state_bytes: int = 2  # bytes per recurrent-state element (4 where the config asks for an fp32 SSM cache)
    lin_k_heads: int = 0  # gated DeltaNet (Qwen3-Next): key heads, value heads, their head dims
    lin_v_heads: int = 0
    lin_k_dim: int = 0
    lin_v_dim: int = 0
    qk_norm_full: bool = False  # MiniMax-M2: one RMSNorm over all heads' q (and k) instead of one per head
    mtp_shares_embeddings: bool = False  # Qwen3-Next MTP: no copies of the embedding and head
    attn_output_gate: bool = False
    # Gemma 4: full-attention layers use their own head size and KV heads; with k_eq_v they have no v_proj
    global_head_dim: int = 0
    global_kv_heads: int = 0
    global_k_eq_v: bool = False
    layer_scalar: bool = False  # Gemma 4 stores one scalar per layer
    per_layer_input_dim: int = 0  # Gemma 4 E-models: per-layer input embeddings of this width (PLE)
    per_layer_vocab: int = 0
    kv_shared_layers: int = 0  # the last N layers reuse an earlier layer's K/V and cache nothing
    cross_attention_layers: tuple[int, ...] = ()  # Llama 3.2 Vision: layers attending to image tokens, no text KV
    parallel_ssm: bool = False  # Falcon-H1: every attention layer also runs a Mamba-2 mixer on the same input
    ssm_in_proj_bias: bool = False  # Falcon-H1's mamba_proj_bias (in_proj only)
    ssm_out_proj_bias: bool = False  # Falcon-H1's projectors_bias (out_proj only)
    expert_bias_buffer: bool = False  # LFM2-MoE: a per-expert fp32 routing bias, stored but not a parameter
    shared_blocks: int = 0  # Zamba2: transformer blocks shared by the hybrid layers (num_mem_blocks), stored once
    shared_adapter_rank: int = 0  # Zamba2: each hybrid layer's LoRA adapters into the shared block (adapter_rank)
    shared_attention_adapter: bool = False  # Zamba2: q/k/v adapters too (use_shared_attention_adapter)
    layer_intermediate: tuple[int, ...] = ()  # one MLP width per layer where they differ (Nemotron-NAS); 0: default
    norms_follow_blocks: bool = False  # Nemotron-NAS: one norm per present sub-block (no_op blocks have none)
    # DeepSeek-V4: one shared 512-d K=V head, a grouped low-rank output, hyper-connections, hash-routed first layers
    o_groups: int = 0
    o_lora_rank: int = 0
    hc_mult: int = 0
    hash_layers: int = 0
    sliding_num_heads: int = 0  # Step-3.5: sliding layers have more query heads than full ones
    head_gate: bool = False  # Step-3.5: g_proj, one sigmoid gate per head on the attention output
    sliding_sinks: bool = False  # MiMo-V2: sliding layers carry one attention-sink logit per head
    mtp_style: str = ""  # "" (DeepSeek), "step" (own head, dense sliding layer), "mimo" (dense sliding layer)  # Qwen3-Next: q_proj also emits a sigmoid gate for the attention output
    layer_mlp: tuple[str, ...] = ()  # one per layer (dense | moe | none); empty: from moe_layer_mask
    moe_gated: bool = True  # experts with gate/up/down (SwiGLU); False: up/down (Nemotron-H relu^2)
    moe_latent_size: int = 0  # Nemotron 3 Super/Ultra: routed experts work in a smaller latent width
    moe_latent_norm: bool = False  # Kimi-K3: an RMSNorm on the latent (latent_moe_use_norm)
    kda_full_rank_gate: bool = False  # Kimi-K3: a full-rank output gate g_proj instead of g_a / g_b
    mla_output_gate: bool = False  # Kimi-K3: MLA layers carry the same g_proj output gate
    attn_residuals: bool = False  # Kimi-K3 attention residuals: a norm + a 1 x h projection per sub-block
    ssm_a_size: int = 0  # A_log values per recurrent layer where not one per head (Kimi-K3's checkpoint: 128)
    norms_fp32: bool = False  # DeepSeek-V3.2's checkpoint stores every RMSNorm in fp32
    # Extras outside the decoder stack, counted separately: ((name, params), ...)
    extra_params: tuple[tuple[str, int], ...] = ()
    mtp_layers: int = 0  # DeepSeek-V3 multi-token-prediction modules stored in the checkpoint
    attention_sinks: bool = False  # gpt-oss: one learned sink logit per head
    max_position_embeddings: int = 0
    torch_dtype: str = "bfloat16"
    quantization: str = ""  # the checkpoint's own quantization_config, as canonical JSON text
    notes: tuple[str, ...] = ()

    # ----- derived facts -------------------------------------------------------------------------------------
    @property
    def kinds(self) -> tuple[str, ...]:
        if self.layer_kinds:
            return self.layer_kinds
        return ((MLA,) if self.is_mla else (FULL,)) * self.num_layers

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def value_head_dim(self) -> int:
        return self.v_head_dim or self.head_dim

    @property
    def moe_mask(self) -> tuple[bool, ...]:
        if not self.is_moe:
            return (False,) * self.num_layers
        return self.moe_layer_mask or (True,) * self.num_layers

    @property
    def quant_config(self) -> dict:
        if not self.quantization:
            return {}
        import json  # stdlib; only when a checkpoint carries a quantization_config

        return json.loads(self.quantization)

    @property
    def indexer_mask(self) -> tuple[bool, ...]:
        if not self.indexer_heads:
            return (False,) * self.num_layers
        return self.indexer_layer_mask or (True,) * self.num_layers

    def heads_for(self, layer_kind: str) -> int:
        return self.sliding_num_heads if layer_kind == SLIDING and self.sliding_num_heads else self.num_heads

    def head_dim_for(self, layer_kind: str) -> int:
        return self.global_head_dim if layer_kind == FULL and self.global_head_dim else self.head_dim

    def kv_heads_for(self, layer_kind: str) -> int:
        return self.global_kv_heads if layer_kind == FULL and self.global_kv_heads else self.num_kv_heads

    def kv_elements_per_token(self, layer_kind: str) -> int:
        """Cache elements one token adds to one layer of this kind (K and V together; an MLA layer's latent, plus
        the DSA indexer's key where every layer has an indexer; DeepSeek-V4's compressed layers: one shared K=V entry
        (+ an indexer key at ratio 4) per ratio tokens, beside the window :meth:`kv_window_elements` keeps)."""
        if layer_kind in COMPRESS_RATIO:
            r = COMPRESS_RATIO[layer_kind]
            return (self.head_dim + (self.indexer_head_dim if r == 4 else 0)) // r
        if layer_kind == SLIDING and self.o_groups:
            return self.head_dim  # one shared K=V vector
        if layer_kind == MLA:
            idx = self.indexer_head_dim if self.indexer_heads and not self.indexer_layer_mask else 0
            return self.kv_lora_rank + self.qk_rope_head_dim + idx
        if layer_kind in (FULL, SLIDING):
            if self.global_head_dim:  # Gemma 4 / MiMo-V2: per-kind head size and KV heads
                d = self.head_dim_for(layer_kind)
                return self.kv_heads_for(layer_kind) * (d + (self.v_head_dim or d))
            return self.num_kv_heads * (self.head_dim + self.value_head_dim)
        return 0

    @property
    def mlps(self) -> tuple[str, ...]:
        """The feed-forward part of each layer: dense, moe or none."""
        if self.layer_mlp:
            return self.layer_mlp
        return tuple(MOE if m else DENSE for m in self.moe_mask)

    def has_recurrent_state(self, kind: str) -> bool:
        """Whether a layer of this cache kind keeps a recurrent state per sequence: the recurrent layers, and the
        attention layers of parallel hybrids (Falcon-H1, Zamba2), which run a Mamba-2 mixer too."""
        return kind == MAMBA or (self.parallel_ssm and kind in (FULL, SLIDING))

    @property
    def cache_kinds(self) -> tuple[str, ...]:
        """Layer kinds as far as the KV cache goes: layers that reuse another layer's K/V hold nothing (NOMIX)."""
        kinds = self.kinds
        if self.cross_attention_layers:  # their K/V come from the image tokens, not from the text
            cross = set(self.cross_attention_layers)
            kinds = tuple(NOMIX if i in cross else k for i, k in enumerate(kinds))
        if not self.kv_shared_layers:
            return kinds
        first = self.num_layers - self.kv_shared_layers
        return tuple(NOMIX if i >= first else k for i, k in enumerate(kinds))

    @property
    def d_inner(self) -> int:
        if self.ssm_variant in DELTA_RULE:
            return self.lin_v_heads * self.lin_v_dim
        return self.ssm_inner or self.ssm_expand * self.hidden_size

    def ssm_conv_channels(self) -> int:
        """Channels of the causal conv1d (its state holds conv_kernel values of each; KDA: three convs, q, k, v)."""
        if self.ssm_variant in DELTA_RULE:
            return 2 * self.lin_k_heads * self.lin_k_dim + self.lin_v_heads * self.lin_v_dim
        if self.ssm_variant == MAMBA2:
            return self.d_inner + 2 * self.ssm_groups * self.ssm_state_size
        return self.d_inner

    def ssm_recurrent_elements(self) -> int:
        """The recurrent (SSM / delta-rule) state of one layer for one sequence."""
        if self.ssm_variant in DELTA_RULE:
            return self.lin_v_heads * self.lin_k_dim * self.lin_v_dim
        return self.d_inner * self.ssm_state_size  # Mamba-2: H x head_dim x N = d_inner x N

    def ssm_state_bytes_per_seq(self, tp: int = 1, act_bytes: int = 2) -> int:
        """Bytes of one MAMBA-kind layer's state for one sequence on one rank: the conv state at the activation
        width, the recurrent state at ``ssm_state_bytes``."""
        return (self.ssm_conv_channels() * self.ssm_conv_kernel * act_bytes
                + self.ssm_recurrent_elements() * self.ssm_state_bytes) // tp

    def ssm_state_elements(self) -> int:
        """Recurrent state elements per sequence for one MAMBA-kind layer (conv state + SSM state), as transformers'
        caches hold them (conv state = conv_kernel values per channel; vLLM keeps conv_kernel - 1)."""
        return self.ssm_conv_channels() * self.ssm_conv_kernel + self.ssm_recurrent_elements()


# ----- the tensor inventory ----------------------------------------------------------------------------------

def _attention_tensors(s: ModelSpec, indexer: bool = False, kind: str = FULL) -> list[Tensor]:
    h, d, vd = s.hidden_size, s.head_dim, s.value_head_dim
    if s.global_head_dim and s.model_type == "gemma4_text":
        return _gemma4_attention(s, kind)
    if s.o_groups:
        return _dsv4_attention(s, kind)
    t: list[Tensor] = []
    if s.is_mla:
        qk = s.qk_nope_head_dim + s.qk_rope_head_dim
        if s.q_lora_rank:
            t.append(Tensor("self_attn.q_a_proj.weight", "attn_q_a", (s.q_lora_rank, h), "attention"))
            t.append(Tensor("self_attn.q_a_layernorm.weight", "norm", (s.q_lora_rank,), "norms"))
            t.append(Tensor("self_attn.q_b_proj.weight", "attn_q_b", (s.num_heads * qk, s.q_lora_rank), "attention"))
        else:
            t.append(Tensor("self_attn.q_proj.weight", "attn_q", (s.num_heads * qk, h), "attention"))
        t.append(Tensor("self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa",
                        (s.kv_lora_rank + s.qk_rope_head_dim, h), "attention"))
        t.append(Tensor("self_attn.kv_a_layernorm.weight", "norm", (s.kv_lora_rank,), "norms"))
        t.append(Tensor("self_attn.kv_b_proj.weight", "attn_kv_b",
                        (s.num_heads * (s.qk_nope_head_dim + s.v_head_dim), s.kv_lora_rank), "attention"))
        t.append(Tensor("self_attn.o_proj.weight", "attn_output", (h, s.num_heads * s.v_head_dim), "attention"))
        if s.mla_output_gate:  # Kimi-K3: a sigmoid gate on the attention output, as in its KDA layers
            t.append(Tensor("self_attn.g_proj.weight", "attn_gate_full", (s.num_heads * s.v_head_dim, h),
                            "attention"))
        if indexer:
            ni, di = s.indexer_heads, s.indexer_head_dim
            t += [Tensor("self_attn.indexer.wq_b.weight", "attn_idx_q", (ni * di, s.q_lora_rank or h), "attention"),
                  Tensor("self_attn.indexer.wk.weight", "attn_idx_k", (di, h), "attention"),
                  Tensor("self_attn.indexer.k_norm.weight", "norm", (di,), "norms"),
                  Tensor("self_attn.indexer.k_norm.bias", "norm", (di,), "norms"),
                  Tensor("self_attn.indexer.weights_proj.weight", "attn_idx_w", (ni, h), "attention")]
        return t
    nh, kvh = s.heads_for(kind), s.kv_heads_for(kind)
    if s.global_head_dim:  # per-kind head size (MiMo-V2: equal; values keep v_head_dim)
        d = s.head_dim_for(kind)
        vd = s.v_head_dim or d
    q_out, kv_out, v_out = nh * d, kvh * d, kvh * vd
    t.append(Tensor("self_attn.q_proj.weight", "attn_q", ((2 if s.attn_output_gate else 1) * q_out, h),
                    "attention"))
    t.append(Tensor("self_attn.k_proj.weight", "attn_k", (kv_out, h), "attention"))
    t.append(Tensor("self_attn.v_proj.weight", "attn_v", (v_out, h), "attention"))
    t.append(Tensor("self_attn.o_proj.weight", "attn_output", (h, nh * vd), "attention"))
    if s.qkv_bias:
        t.append(Tensor("self_attn.q_proj.bias", "bias", (q_out,), "attention"))
        t.append(Tensor("self_attn.k_proj.bias", "bias", (kv_out,), "attention"))
        t.append(Tensor("self_attn.v_proj.bias", "bias", (v_out,), "attention"))
    if s.o_bias:
        t.append(Tensor("self_attn.o_proj.bias", "bias", (h,), "attention"))
    if s.qk_norm:
        qn, kn = (q_out, kv_out) if s.qk_norm_full else (d, d)
        t.append(Tensor("self_attn.q_norm.weight", "norm", (qn,), "norms"))
        t.append(Tensor("self_attn.k_norm.weight", "norm", (kn,), "norms"))
    if s.attention_sinks or (s.sliding_sinks and kind == SLIDING):
        t.append(Tensor("self_attn.sinks", "bias", (nh,), "attention"))
    if s.head_gate:
        t.append(Tensor("self_attn.g_proj.weight", "attn_gate", (nh, h), "attention"))
    if s.indexer_heads and indexer and not s.is_mla:  # MiniMax-M3 lightning indexer (sparse-attention layers)
        ni, di = s.indexer_heads, s.indexer_head_dim
        t += [Tensor("self_attn.index_q_proj.weight", "attn_idx_q", (ni * di, h), "attention"),
              Tensor("self_attn.index_k_proj.weight", "attn_idx_k", (di, h), "attention"),
              Tensor("self_attn.index_q_norm.weight", "norm", (di,), "norms"),
              Tensor("self_attn.index_k_norm.weight", "norm", (di,), "norms")]
    return t


def _mamba_tensors(s: ModelSpec) -> list[Tensor]:
    """The recurrent mixer of a MAMBA-kind layer: Mamba-1 (transformers MambaMixer / JambaMambaMixer, formulas.md
    1.5), Mamba-2 (Mamba2Mixer: Granite 4.0-H, Bamba, Nemotron-H) or gated DeltaNet (Qwen3-Next / Qwen3.5)."""
    if s.ssm_variant == MAMBA2:
        return _mamba2_tensors(s)
    if s.ssm_variant == GATED_DELTANET:
        return _deltanet_tensors(s)
    if s.ssm_variant == KDA:
        return _kda_tensors(s)
    if s.ssm_variant == SHORT_CONV:
        return _short_conv_tensors(s)
    h, n, k = s.hidden_size, s.ssm_state_size, s.ssm_conv_kernel
    di = s.d_inner
    r = s.ssm_dt_rank or -(-h // 16)
    t = [Tensor("mixer.in_proj.weight", "ssm_in", (2 * di, h), "ssm"),
         Tensor("mixer.conv1d.weight", "ssm_conv1d", (di, 1, k), "ssm")]
    if s.ssm_conv_bias:
        t.append(Tensor("mixer.conv1d.bias", "bias", (di,), "ssm"))
    t += [Tensor("mixer.x_proj.weight", "ssm_x", (r + 2 * n, di), "ssm"),
          Tensor("mixer.dt_proj.weight", "ssm_dt", (di, r), "ssm"),
          Tensor("mixer.dt_proj.bias", "bias", (di,), "ssm"),
          Tensor("mixer.A_log", "ssm_a", (di, n), "ssm"),
          Tensor("mixer.D", "ssm_d", (di,), "ssm"),
          Tensor("mixer.out_proj.weight", "ssm_out", (h, di), "ssm")]
    if s.ssm_proj_bias:
        t += [Tensor("mixer.in_proj.bias", "bias", (2 * di,), "ssm"), Tensor("mixer.out_proj.bias", "bias", (h,), "ssm")]
    if s.ssm_bcdt_norms:
        t += [Tensor("mixer.dt_layernorm.weight", "norm", (r,), "norms"),
              Tensor("mixer.b_layernorm.weight", "norm", (n,), "norms"),
              Tensor("mixer.c_layernorm.weight", "norm", (n,), "norms")]
    return t


def _short_conv_tensors(s: ModelSpec) -> list[Tensor]:
    """LFM2's short convolution (transformers Lfm2ShortConv): in_proj to B, C and x (3 x h), a depthwise conv of
    ``conv_L_cache`` taps over h channels, out_proj; biases on all three only with ``conv_bias``."""
    h, k = s.hidden_size, s.ssm_conv_kernel
    t = [Tensor("conv.in_proj.weight", "ssm_in", (3 * h, h), "ssm"),
         Tensor("conv.conv.weight", "ssm_conv1d", (h, 1, k), "ssm"),
         Tensor("conv.out_proj.weight", "ssm_out", (h, h), "ssm")]
    if s.ssm_conv_bias:
        t += [Tensor("conv.in_proj.bias", "bias", (3 * h,), "ssm"), Tensor("conv.conv.bias", "bias", (h,), "ssm"),
              Tensor("conv.out_proj.bias", "bias", (h,), "ssm")]
    return t


def _zamba2_layer_tensors(s: ModelSpec, kind: str) -> list[Tensor]:
    """Zamba2 (transformers Zamba2MambaDecoderLayer / Zamba2HybridLayer): every layer a Mamba-2 mixer and its input
    norm; a hybrid layer (FULL kind here) also its own h x h linear after the shared block and its adapters into
    that block: the MLP's (h -> r -> 2 x ff) always, q/k/v's (2h -> r -> 2h each) with use_shared_attention_adapter.
    The shared blocks themselves are global tensors, stored once."""
    h, r, ff = s.hidden_size, s.shared_adapter_rank, s.intermediate_size
    t = _mamba_tensors(s) + [Tensor("input_layernorm.weight", "norm", (h,), "norms")]
    if kind == FULL:
        t.append(Tensor("linear.weight", "ffn_up", (h, h), "hybrid_linear"))
        t += [Tensor("mlp_adapter.0.weight", "adapter", (r, h), "adapters"),
              Tensor("mlp_adapter.1.weight", "adapter", (2 * ff, r), "adapters")]
        if s.shared_attention_adapter:
            for x in "qkv":
                t += [Tensor(f"{x}_adapter.0.weight", "adapter", (r, 2 * h), "adapters"),
                      Tensor(f"{x}_adapter.1.weight", "adapter", (2 * h, r), "adapters")]
    return t


def _zamba2_shared_blocks(s: ModelSpec) -> list[Tensor]:
    """Zamba2's shared transformer blocks (Zamba2AttentionDecoderLayer): attention over the concatenation of the
    hidden state and the original embeddings (2h wide in, head_dim = 2h / heads), a gated MLP, two norms."""
    h, ff, d = s.hidden_size, s.intermediate_size, s.head_dim
    t = []
    for b in range(s.shared_blocks):
        p = f"blocks.{b}."
        t += [Tensor(p + "input_layernorm.weight", "norm", (2 * h,), "norms"),
              Tensor(p + "pre_ff_layernorm.weight", "norm", (h,), "norms"),
              Tensor(p + "self_attn.q_proj.weight", "attn_q", (s.num_heads * d, 2 * h), "shared_blocks"),
              Tensor(p + "self_attn.k_proj.weight", "attn_k", (s.num_kv_heads * d, 2 * h), "shared_blocks"),
              Tensor(p + "self_attn.v_proj.weight", "attn_v", (s.num_kv_heads * d, 2 * h), "shared_blocks"),
              Tensor(p + "self_attn.o_proj.weight", "attn_output", (h, s.num_heads * d), "shared_blocks"),
              Tensor(p + "feed_forward.gate_up_proj.weight", "ffn_up", (2 * ff, h), "shared_blocks"),
              Tensor(p + "feed_forward.down_proj.weight", "ffn_down", (h, ff), "shared_blocks")]
        if s.mlp_bias:
            t += [Tensor(p + "feed_forward.gate_up_proj.bias", "bias", (2 * ff,), "shared_blocks"),
                  Tensor(p + "feed_forward.down_proj.bias", "bias", (h,), "shared_blocks")]
    return t


def _mamba2_tensors(s: ModelSpec) -> list[Tensor]:
    """Mamba-2: in_proj -> [z (d_inner), xBC (d_inner + 2GN), dt (H)], depthwise conv over xBC, per-head dt_bias,
    A_log and D, gated RMSNorm over d_inner, out_proj."""
    h, di, heads = s.hidden_size, s.d_inner, s.ssm_heads
    conv = s.ssm_conv_channels()
    proj = di + conv + heads
    t = [Tensor("mixer.in_proj.weight", "ssm_in", (proj, h), "ssm"),
         Tensor("mixer.conv1d.weight", "ssm_conv1d", (conv, 1, s.ssm_conv_kernel), "ssm")]
    if s.ssm_conv_bias:
        t.append(Tensor("mixer.conv1d.bias", "bias", (conv,), "ssm"))
    t += [Tensor("mixer.dt_bias", "ssm_dt_bias", (heads,), "ssm"), Tensor("mixer.A_log", "ssm_a", (heads,), "ssm"),
          Tensor("mixer.D", "ssm_d", (heads,), "ssm")]
    if s.ssm_gated_norm:
        t.append(Tensor("mixer.norm.weight", "norm", (di,), "norms"))
    t.append(Tensor("mixer.out_proj.weight", "ssm_out", (h, di), "ssm"))
    if s.ssm_proj_bias or s.ssm_in_proj_bias:
        t.append(Tensor("mixer.in_proj.bias", "bias", (proj,), "ssm"))
    if s.ssm_proj_bias or s.ssm_out_proj_bias:
        t.append(Tensor("mixer.out_proj.bias", "bias", (h,), "ssm"))
    return t


def _deltanet_tensors(s: ModelSpec) -> list[Tensor]:
    """Gated DeltaNet (Qwen3-Next linear attention): fused q/k/v/z and beta/alpha projections, a depthwise conv over
    q/k/v (no bias), per-value-head dt_bias and A_log, a gated RMSNorm over one value head, out_proj."""
    h, kd, vd = s.hidden_size, s.lin_k_heads * s.lin_k_dim, s.lin_v_heads * s.lin_v_dim
    return [Tensor("linear_attn.in_proj_qkvz.weight", "ssm_in", (2 * kd + 2 * vd, h), "ssm"),
            Tensor("linear_attn.in_proj_ba.weight", "ssm_ba", (2 * s.lin_v_heads, h), "ssm"),
            Tensor("linear_attn.conv1d.weight", "ssm_conv1d", (2 * kd + vd, 1, s.ssm_conv_kernel), "ssm"),
            Tensor("linear_attn.dt_bias", "ssm_dt_bias", (s.lin_v_heads,), "ssm"),
            Tensor("linear_attn.A_log", "ssm_a", (s.lin_v_heads,), "ssm"),
            Tensor("linear_attn.norm.weight", "norm", (s.lin_v_dim,), "norms"),
            Tensor("linear_attn.out_proj.weight", "ssm_out", (h, vd), "ssm")]


def _kda_tensors(s: ModelSpec) -> list[Tensor]:
    """Kimi Delta Attention (vLLM layers/kda.py, the Kimi-Linear checkpoint's tensors): q/k/v projections, one
    depthwise short conv each (no bias), low-rank forget-gate (f_a, f_b) and output-gate (g_a, g_b) projections of
    rank head_dim, a per-head beta projection, A_log per head, dt_bias per channel, a gated RMSNorm over one head,
    o_proj."""
    h, hd, nh = s.hidden_size, s.lin_v_dim, s.lin_v_heads
    p, k = nh * hd, s.ssm_conv_kernel
    t = [Tensor(f"self_attn.{x}_proj.weight", f"attn_{x}", (p, h), "ssm") for x in "qkv"]
    k3 = 4 if s.kda_full_rank_gate else 0  # Kimi-K3's table: fp32 short convs and o_norm (bf16 in Kimi Linear)
    t += [Tensor(f"self_attn.{x}_conv1d.weight", "ssm_conv1d", (p, 1, k), "ssm", k3) for x in "qkv"]
    t += [Tensor("self_attn.f_a_proj.weight", "ssm_f_a", (hd, h), "ssm"),
          Tensor("self_attn.f_b_proj.weight", "ssm_f_b", (p, hd), "ssm"),
          Tensor("self_attn.b_proj.weight", "ssm_beta", (nh, h), "ssm")]
    if s.kda_full_rank_gate:  # Kimi-K3: one full-rank output gate
        t.append(Tensor("self_attn.g_proj.weight", "attn_gate_full", (p, h), "ssm"))
    else:
        t += [Tensor("self_attn.g_a_proj.weight", "ssm_g_a", (hd, h), "ssm"),
              Tensor("self_attn.g_b_proj.weight", "ssm_g_b", (p, hd), "ssm")]
    t += [Tensor("self_attn.A_log", "ssm_a", (s.ssm_a_size or nh,), "ssm", 4),  # fp32 in the checkpoint
          Tensor("self_attn.dt_bias", "ssm_dt_bias", (p,), "ssm", 4),
          Tensor("self_attn.o_norm.weight", "norm", (hd,), "norms", k3),
          Tensor("self_attn.o_proj.weight", "attn_output", (h, p), "ssm")]
    return t


def _gemma4_attention(s: ModelSpec, kind: str) -> list[Tensor]:
    """Gemma 4: q/k/v/o with the layer kind's head size and KV heads, q/k RMSNorms over one head (v's norm has no
    weight); a full layer with attention_k_eq_v takes V from the K projection (no v_proj)."""
    h, d, g = s.hidden_size, s.head_dim_for(kind), s.kv_heads_for(kind)
    t = [Tensor("self_attn.q_proj.weight", "attn_q", (s.num_heads * d, h), "attention"),
         Tensor("self_attn.k_proj.weight", "attn_k", (g * d, h), "attention")]
    if not (kind == FULL and s.global_k_eq_v):
        t.append(Tensor("self_attn.v_proj.weight", "attn_v", (g * d, h), "attention"))
    t += [Tensor("self_attn.o_proj.weight", "attn_output", (h, s.num_heads * d), "attention"),
          Tensor("self_attn.q_norm.weight", "norm", (d,), "norms"), Tensor("self_attn.k_norm.weight", "norm", (d,), "norms")]
    return t


def _dsv4_attention(s: ModelSpec, kind: str) -> list[Tensor]:
    """DeepSeek-V4 attention (modeling_deepseek_v4.py): q through a low-rank latent, one shared K=V vector of
    head_dim per token, a grouped low-rank output (o_groups x o_lora_rank), per-head sink logits; compressed layers add
    a compressor (kv and gate projections, learned position bias, norm; doubled width for the overlapping ratio-4
    windows) and ratio-4 layers a lightning indexer with its own compressor."""
    h, d, nh, qr = s.hidden_size, s.head_dim, s.num_heads, s.q_lora_rank
    og, orank = s.o_groups, s.o_lora_rank
    t = [Tensor("attn.wq_a.weight", "attn_q_a", (qr, h), "attention"),
         Tensor("attn.q_norm.weight", "norm", (qr,), "norms"),
         Tensor("attn.wq_b.weight", "attn_q_b", (nh * d, qr), "attention"),
         Tensor("attn.wkv.weight", "attn_kv_a_mqa", (d, h), "attention"),
         Tensor("attn.kv_norm.weight", "norm", (d,), "norms"),
         Tensor("attn.wo_a.weight", "attn_output_a", (og * orank, nh * d // og), "attention"),
         Tensor("attn.wo_b.weight", "attn_output", (h, og * orank), "attention"),
         Tensor("attn.attn_sink", "bias", (nh,), "attention", 4)]
    r = COMPRESS_RATIO.get(kind, 0)
    if r:
        c = (2 if r == 4 else 1) * d
        t += [Tensor("attn.compressor.wkv.weight", "attn_comp", (c, h), "attention"),
              Tensor("attn.compressor.wgate.weight", "attn_comp", (c, h), "attention"),
              Tensor("attn.compressor.ape", "bias", (r, c), "attention", 4),
              Tensor("attn.compressor.norm.weight", "norm", (d,), "norms")]
    if r == 4:
        ni, di = s.indexer_heads, s.indexer_head_dim
        t += [Tensor("attn.indexer.wq_b.weight", "attn_idx_q", (ni * di, qr), "attention"),
              Tensor("attn.indexer.weights_proj.weight", "attn_idx_w", (ni, h), "attention"),
              Tensor("attn.indexer.compressor.wkv.weight", "attn_comp", (2 * di, h), "attention"),
              Tensor("attn.indexer.compressor.wgate.weight", "attn_comp", (2 * di, h), "attention"),
              Tensor("attn.indexer.compressor.ape", "bias", (4, 2 * di), "attention", 4),
              Tensor("attn.indexer.compressor.norm.weight", "norm", (di,), "norms")]
    return t


def _hyper_connection_tensors(s: ModelSpec, prefixes: tuple[str, ...]) -> list[Tensor]:
    """Manifold-constrained hyper-connections: per mixing site a projection of the hc x h stream to (2 + hc) x hc
    mixing weights, their base and 3 scales (fp32 in the checkpoint)."""
    m, h = s.hc_mult, s.hidden_size
    out = []
    for p in prefixes:
        out += [Tensor(f"hc_{p}_fn", "hc", ((2 + m) * m, m * h), "hyper_connections", 4),
                Tensor(f"hc_{p}_base", "hc", ((2 + m) * m,), "hyper_connections", 4),
                Tensor(f"hc_{p}_scale", "hc", (3,), "hyper_connections", 4)]
    return out


def _gemma4_moe(s: ModelSpec) -> list[Tensor]:
    """Gemma 4's MoE block beside the dense MLP: router (proj, scale, per-expert scale), fused experts, 3 norms."""
    h, e, w = s.hidden_size, s.num_experts, s.moe_intermediate_size
    return [Tensor("router.proj.weight", "ffn_gate_inp", (e, h), "router"),
            Tensor("router.scale", "norm", (h,), "router"), Tensor("router.per_expert_scale", "bias", (e,), "router"),
            Tensor("experts.gate_proj", "ffn_gate_exps", (e, w, h), "experts"),
            Tensor("experts.up_proj", "ffn_up_exps", (e, w, h), "experts"),
            Tensor("experts.down_proj", "ffn_down_exps", (e, h, w), "experts"),
            Tensor("pre_feedforward_layernorm_2.weight", "norm", (h,), "norms"),
            Tensor("post_feedforward_layernorm_1.weight", "norm", (h,), "norms"),
            Tensor("post_feedforward_layernorm_2.weight", "norm", (h,), "norms")]


def _dense_mlp(s: ModelSpec, width: int, prefix: str, suffix: str, group: str, gated: bool | None = None
               ) -> list[Tensor]:
    h = s.hidden_size
    gated = s.mlp_gated if gated is None else gated
    if gated:
        t = [Tensor(f"{prefix}.gate_proj.weight", f"ffn_gate{suffix}", (width, h), group),
             Tensor(f"{prefix}.up_proj.weight", f"ffn_up{suffix}", (width, h), group),
             Tensor(f"{prefix}.down_proj.weight", f"ffn_down{suffix}", (h, width), group)]
    else:
        t = [Tensor(f"{prefix}.fc1.weight", f"ffn_up{suffix}", (width, h), group),
             Tensor(f"{prefix}.fc2.weight", f"ffn_down{suffix}", (h, width), group)]
    if s.mlp_bias:
        if gated:
            t.append(Tensor(f"{prefix}.gate_proj.bias", "bias", (width,), group))
        t.append(Tensor(f"{prefix}.up_proj.bias", "bias", (width,), group))
        t.append(Tensor(f"{prefix}.down_proj.bias", "bias", (h,), group))
    return t


def _moe_tensors(s: ModelSpec, hashed: bool = False) -> list[Tensor]:
    h, e, w = s.hidden_size, s.num_experts, s.moe_intermediate_size
    # MiniMax-M2.x stores its router in fp32 (the M2.7 checkpoint's tensor table)
    # MiniMax-M2.x and ERNIE 4.5 store their routers in fp32 (the M2.7 tensor table; ERNIE's
    # _keep_in_fp32_modules and its HF safetensors summary)
    t = [Tensor("mlp.gate.weight", "ffn_gate_inp", (e, h), "router",
                4 if s.model_type in ("minimax_m2", "ernie4_5_moe") else 0)]
    x = s.moe_latent_size or h  # the experts' input / output width
    if s.moe_latent_size and s.moe_latent_norm:
        # Kimi-K3: latent projections and norm beside the experts; its MXFP4 release keeps them bf16 (the
        # checkpoint's tensor table), so their role is not one a weight format converts
        t += [Tensor("mlp.routed_expert_down_proj.weight", "moe_latent_proj", (x, h), "moe_latent"),
              Tensor("mlp.routed_expert_up_proj.weight", "moe_latent_proj", (h, x), "moe_latent"),
              Tensor("mlp.routed_expert_norm.weight", "norm", (x,), "norms")]
    elif s.moe_latent_size:
        t += [Tensor("mlp.fc1_latent_proj.weight", "ffn_latent_in", (x, h), "moe_latent"),
              Tensor("mlp.fc2_latent_proj.weight", "ffn_latent_out", (h, x), "moe_latent")]
    if s.router_bias:
        t.append(Tensor("mlp.gate.bias", "bias", (e,), "router"))
    if s.expert_bias_buffer:
        t.append(Tensor("feed_forward.expert_bias", "buffer", (e,), "router", 4))
    if s.score_correction_bias and not hashed:  # DeepSeek-V4's hash-routed layers have a token->expert table instead
        # fp32 in the checkpoints' tensor tables (DeepSeek-V3/R1/V3.1/V3.2/V4, GLM-4.5/4.7/5.x, MiniMax, Kimi-K3);
        # bf16 in Kimi Linear's
        wide = 0 if s.architecture == "KimiLinearForCausalLM" and not s.kda_full_rank_gate else 4
        t.append(Tensor("mlp.gate.e_score_correction_bias", "bias", (e,), "router", wide))
    if hashed:  # DeepSeek-V4: the token id -> top-k experts table of a hash-routed layer, int64
        t.append(Tensor("mlp.gate.tid2eid", "hash_table", (s.vocab_size, s.experts_per_token), "router", 8))
    if s.moe_gated:
        t.append(Tensor("mlp.experts.gate_proj", "ffn_gate_exps", (e, w, x), "experts"))
    t.append(Tensor("mlp.experts.up_proj", "ffn_up_exps", (e, w, x), "experts"))
    t.append(Tensor("mlp.experts.down_proj", "ffn_down_exps", (e, x, w), "experts"))
    if s.expert_bias:
        t.append(Tensor("mlp.experts.gate_up_proj_bias", "bias", (e, 2 * w), "experts"))
        t.append(Tensor("mlp.experts.down_proj_bias", "bias", (e, h), "experts"))
    if s.shared_expert_intermediate_size:
        t += _dense_mlp(s, s.shared_expert_intermediate_size, "mlp.shared_experts", "_shexp", "shared_experts",
                        gated=s.moe_gated)
        if s.shared_expert_gate:
            t.append(Tensor("mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp", (1, h), "shared_experts"))
    return t


def _norm_tensors(s: ModelSpec) -> list[Tensor]:
    h = s.hidden_size
    names = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
             "post_feedforward_layernorm")[: s.norms_per_layer]
    t = [Tensor(f"{n}.weight", "norm", (h,), "norms") for n in names]
    if s.norm_bias:
        t += [Tensor(f"{n}.bias", "norm", (h,), "norms") for n in names]
    return t


def _layer_tensors(s: ModelSpec, kind: str, mlp: str | bool, indexer: bool = False, width: int = 0,
                   hashed: bool = False) -> tuple[Tensor, ...]:
    if isinstance(mlp, bool):
        mlp = MOE if mlp else DENSE
    if s.shared_blocks:
        return tuple(_zamba2_layer_tensors(s, kind))
    t = _mamba_tensors(s) if kind == MAMBA else [] if kind == NOMIX else _attention_tensors(s, indexer, kind)
    if s.parallel_ssm and kind in (FULL, SLIDING):  # Falcon-H1: the Mamba-2 mixer beside the attention
        t += _mamba_tensors(s)
    if mlp == MOE:
        t += _moe_tensors(s, hashed)
    elif mlp in (DENSE, DENSE_MOE, DENSE_WIDE):
        t += _dense_mlp(s, (width or s.intermediate_size) * (2 if mlp == DENSE_WIDE else 1), "mlp", "", "mlp")
        if mlp == DENSE_MOE:
            t += _gemma4_moe(s)
    if s.norms_follow_blocks:
        n = (kind != NOMIX) + (mlp != NO_MLP)
        t += _norm_tensors(s._replace(norms_per_layer=n)) if n else []
    else:
        t += _norm_tensors(s)
    if s.layer_scalar:
        t.append(Tensor("layer_scalar", "norm", (1,), "norms"))
    if s.hc_mult:
        t += _hyper_connection_tensors(s, ("attn", "ffn"))
    if s.attn_residuals:  # Kimi-K3: per sub-block an RMSNorm and a 1 x h projection (attention over residuals)
        h = s.hidden_size
        for sub in ("self_attention", "mlp"):
            t += [Tensor(f"{sub}_res_norm.weight", "norm", (h,), "norms"),
                  Tensor(f"{sub}_res_proj.weight", "attn_res", (1, h), "attn_residuals")]
    if s.per_layer_input_dim:
        p, h = s.per_layer_input_dim, s.hidden_size
        t += [Tensor("per_layer_input_gate.weight", "ple_gate", (p, h), "per_layer_embedding"),
              Tensor("per_layer_projection.weight", "ple_proj", (h, p), "per_layer_embedding"),
              Tensor("post_per_layer_input_norm.weight", "norm", (h,), "norms")]
    if s.norms_fp32:
        t = [x._replace(dtype_bytes=4) if x.role == "norm" else x for x in t]
    return tuple(t)


@lru_cache(maxsize=256)
def layer_groups(spec: ModelSpec) -> tuple[LayerGroup, ...]:
    """Decoder layers grouped by (kind, dense/MoE/no MLP), each group with its per-layer tensors."""
    buckets: dict[tuple[str, str, bool, int, bool], list[int]] = {}
    widths = spec.layer_intermediate or (0,) * spec.num_layers
    for i, (kind, mlp, idx, w) in enumerate(zip(spec.kinds, spec.mlps, spec.indexer_mask, widths)):
        buckets.setdefault((kind, mlp, idx, w, i < spec.hash_layers), []).append(i)
    return tuple(LayerGroup(kind, tuple(idx), _layer_tensors(spec, kind, mlp, has_idx, w, hashed),
                            mlp in (MOE, DENSE_MOE), mlp)
                 for (kind, mlp, has_idx, w, hashed), idx in buckets.items())


@lru_cache(maxsize=256)
def global_tensors(spec: ModelSpec) -> tuple[Tensor, ...]:
    """Tensors outside the decoder layers: embeddings, final norm, lm_head, extras."""
    h, v = spec.hidden_size, spec.vocab_size
    t = [Tensor("embed_tokens.weight", "token_embd", (v, h), "embedding")]
    if spec.per_layer_input_dim:  # Gemma 4 E-models: a second embedding table feeding every layer
        lp = spec.num_layers * spec.per_layer_input_dim
        t += [Tensor("embed_tokens_per_layer.weight", "token_embd_per_layer", (spec.per_layer_vocab or v, lp),
                     "per_layer_embedding_table"),
              Tensor("per_layer_model_projection.weight", "ple_model_proj", (lp, h), "per_layer_embedding"),
              Tensor("per_layer_projection_norm.weight", "norm", (spec.per_layer_input_dim,), "norms")]
    if spec.learned_pos_embeddings:
        t.append(Tensor("embed_positions.weight", "pos_embd", (spec.learned_pos_embeddings, h), "embedding"))
    if spec.shared_blocks:
        t += _zamba2_shared_blocks(spec)
    if spec.parametric_norms:
        t.append(Tensor("norm.weight", "output_norm", (h,), "norms", 4 if spec.norms_fp32 else 0))
    if spec.attn_residuals:
        t += [Tensor("output_attn_res_norm.weight", "norm", (h,), "norms"),
              Tensor("output_attn_res_proj.weight", "attn_res", (1, h), "attn_residuals")]
    if spec.norm_bias:
        t.append(Tensor("norm.bias", "output_norm", (h,), "norms"))
    if not spec.tie_embeddings:
        t.append(Tensor("lm_head.weight", "output", (v, h), "lm_head"))
    if spec.lm_head_bias:
        t.append(Tensor("lm_head.bias", "bias", (v,), "lm_head"))
    if spec.hc_mult:  # DeepSeek-V4: the hyper-connection streams are mixed down once more before the head
        m = spec.hc_mult
        t += [Tensor("hc_head_fn", "hc", (m, m * h), "hyper_connections", 4),
              Tensor("hc_head_base", "hc", (m,), "hyper_connections", 4),
              Tensor("hc_head_scale", "hc", (1,), "hyper_connections", 4)]
    for name, n in spec.extra_params:
        t.append(Tensor(name, "vision" if "vision" in name or "projector" in name else "extra", (n,), name))
    return tuple(t)


@lru_cache(maxsize=256)
def mtp_tensors(spec: ModelSpec) -> tuple[Tensor, ...]:
    """DeepSeek-V3's multi-token-prediction module(s), stored in the checkpoint but not used for plain decoding.

    Per module: enorm + hnorm (2h), eh_proj (h x 2h), one MoE decoder layer, shared_head.norm (h); the checkpoint
    also stores copies of the embedding and head (formulas.md 1.4), counted here as ``mtp`` too.
    """
    if not spec.mtp_layers:
        return ()
    h, v = spec.hidden_size, spec.vocab_size
    if spec.hc_mult:  # DeepSeek-V4: separate e/h projections, its own hc head, a sliding-window layer
        m = spec.hc_mult
        # e/h projections are FP8 linears in the checkpoint (role attn_q_a: a linear the format converts); the hc
        # head and the layer's fp32 tensors keep their stored width
        one = [Tensor("e_proj.weight", "attn_q_a", (h, h), "mtp"), Tensor("h_proj.weight", "attn_q_a", (h, h), "mtp"),
               Tensor("enorm.weight", "norm", (h,), "mtp"), Tensor("hnorm.weight", "norm", (h,), "mtp"),
               Tensor("norm.weight", "norm", (h,), "mtp"), Tensor("hc_head_fn", "hc", (m, m * h), "mtp", 4),
               Tensor("hc_head_base", "hc", (m,), "mtp", 4), Tensor("hc_head_scale", "hc", (1,), "mtp", 4)]
        layer = [Tensor(x.name, x.role, x.shape, "mtp", x.dtype_bytes) for x in _layer_tensors(spec, SLIDING, True)]
        return tuple(one + layer) * spec.mtp_layers
    nb = 4 if spec.norms_fp32 else 0
    one = [Tensor("enorm.weight", "norm", (h,), "mtp", nb), Tensor("hnorm.weight", "norm", (h,), "mtp", nb),
           Tensor("eh_proj.weight", "mtp_proj", (h, 2 * h), "mtp"),
           Tensor("shared_head.norm.weight", "norm", (h,), "mtp", nb)]
    if spec.mtp_style in ("step", "mimo"):  # a sliding-window layer with a dense MLP; Step also keeps its own head
        if spec.mtp_style == "step":
            one.append(Tensor("shared_head.output.weight", "mtp_head", (v, h), "mtp"))
        layer = [Tensor(x.name, x.role, x.shape, "mtp", x.dtype_bytes) for x in _layer_tensors(spec, SLIDING, DENSE)]
        return tuple(one + layer) * spec.mtp_layers
    if not spec.mtp_shares_embeddings:
        one += [Tensor("embed_tokens.weight", "mtp_embd", (v, h), "mtp"),
                Tensor("shared_head.head.weight", "mtp_head", (v, h), "mtp")]
    last = FULL if spec.kinds[-1] == MAMBA else spec.kinds[-1]  # hybrids: the MTP layer is full attention
    layer = [Tensor(x.name, x.role, x.shape, "mtp", x.dtype_bytes)
             for x in _layer_tensors(spec, last, spec.is_moe, bool(spec.indexer_heads))]
    return tuple(one + layer) * spec.mtp_layers


def group_mlp_width(spec: ModelSpec, g: LayerGroup) -> tuple[int, int]:
    """(dense + shared-expert width, routed width one token runs through) of one layer group's feed-forward part, from
    its tensors (per-layer widths, double-wide MLPs and a dense MLP beside the experts included)."""
    dense = sum(t.shape[0] for t in g.tensors if t.role in ("ffn_up", "ffn_up_shexp") and len(t.shape) == 2)
    routed = spec.experts_per_token * spec.moe_intermediate_size if g.moe else 0
    return dense, routed


# ----- counts ------------------------------------------------------------------------------------------------

@record
class ParamCount:
    """Parameters by named group; ``total`` is their sum, ``active`` what one token uses (MoE: top-k experts)."""

    groups: tuple[tuple[str, int], ...]
    total: int
    active: int
    active_groups: tuple[tuple[str, int], ...] = ()
    mtp: int = 0  # stored in the checkpoint only (not in total)

    def as_dict(self) -> dict[str, int]:
        return dict(self.groups)


@lru_cache(maxsize=256)
def count_params(spec: ModelSpec) -> ParamCount:
    groups: dict[str, int] = {}
    active: dict[str, int] = {}
    for g in layer_groups(spec):
        n = len(g.layers)
        for t in g.tensors:
            if t.role in BUFFER_ROLES:
                continue
            groups[t.group] = groups.get(t.group, 0) + n * t.numel
            frac_num, frac_den = 1, 1
            if t.role in EXPERT_ROLES or (t.group == "experts" and t.role == "bias"):
                frac_num, frac_den = spec.experts_per_token, spec.num_experts
            active[t.group] = active.get(t.group, 0) + n * t.numel * frac_num // frac_den
    for t in global_tensors(spec):
        groups[t.group] = groups.get(t.group, 0) + t.numel
        active[t.group] = active.get(t.group, 0) + t.numel
    order = ["embedding", "attention", "mlp", "router", "experts", "shared_experts", "ssm", "norms", "lm_head"]
    keys = [k for k in order if k in groups] + [k for k in groups if k not in order]
    total = sum(groups.values())
    mtp = sum(t.numel for t in mtp_tensors(spec))
    return ParamCount(tuple((k, groups[k]) for k in keys), total, sum(active.values()),
                      tuple((k, active[k]) for k in keys), mtp)


def iter_tensors(spec: ModelSpec):
    """Every tensor once per layer it lives in: yields (layer_index or -1, Tensor). For per-layer rules (GGUF)."""
    for g in layer_groups(spec):
        for i in g.layers:
            for t in g.tensors:
                yield i, t
    for t in global_tensors(spec):
        yield -1, t


def kv_layers(spec: ModelSpec) -> dict[str, int]:
    """How many layers of each kind."""
    out: dict[str, int] = {}
    for k in spec.kinds:
        out[k] = out.get(k, 0) + 1
    return out
