"""Training activations: what autograd keeps per token of each layer, the loss tensors, and checkpointing.

The model lists the tensors a Hugging Face decoder layer saves for backward, tensor by tensor, from the model's real
shapes (formulas.md 5.2). For full fine-tuning with bf16 weights and SDPA/flash attention it reproduces the
saved-tensor-hook measurement on HF Llama to the byte::

    bytes/token/layer = 8*I + 16*h + 4*n_h*d + 4*n_kv*d + 4*n_h + 8      (Llama-3.1-8B: 200,840)

What is saved depends on what requires grad, because autograd keeps a linear layer's input only when its weight is
trained. So the same rules give frozen-base PEFT runs (LoRA, DoRA, IA3, prompt tuning) their own, smaller figure:

- RMSNorm (HF ``LlamaRMSNorm``): an fp32 copy of its input (4h) and rsqrt (4 B); the normalized input (in the
  residual dtype; fp32 for Gemma's norms, which scale by ``1 + w`` in fp32) only when the norm weight is trained.
- Linear layers: their input when the weight is trained; under torch autocast each linear saves its own 16-bit cast.
- LoRA/DoRA (PEFT): each adapted module casts its input to the adapter dtype (fp32 by default,
  ``autocast_adapter_dtype=True``) and ``lora_A`` keeps that copy; ``lora_B`` keeps the rank-r intermediate. DoRA
  also keeps the base output and the LoRA output for the magnitude gradient.
- IA3: scaled outputs keep the base output; scaled inputs (feed-forward modules) keep an fp32 copy of the input.
- The other PEFT methods (:mod:`vramplan.core.peft_methods`): what each adapted module keeps per token, plus the
  weight-shaped tensors it builds in the forward and keeps (delta weights, rotations: per module and layer, whatever
  the batch), adaption prompt's gated attention, prefix tuning's key/value positions and trainable tokens' merged
  embedding.
- Attention: Q (post-RoPE), K and V (repeated to every query head when a padding mask makes transformers call
  ``repeat_kv`` before SDPA, or with eager attention), the output and the fp32 log-sum-exp. Eager attention also
  keeps the fp32 softmax (4 n_h s) and its 16-bit copy (2 n_h s) per token: the s^2 score tensors.
- SwiGLU MLP: gate output (kept by SiLU), SiLU output and up output (kept by the product), and the product when
  down_proj is trained (8I for full fine-tuning, 6I for a frozen MLP).
- The model forward also returns a KV cache (``use_cache`` defaults to True in HF configs; gradient checkpointing
  turns it off); a training loop that keeps ``outputs`` alive keeps those K/V and the logits.

The loss (transformers ``ForCausalLMLoss``) upcasts the logits to fp32; cross-entropy keeps the fp32 log-softmax.
Backward of the log-softmax holds the incoming fp32 gradient and its own fp32 output at once, so the peak around
the loss is (logits dtype, if the loop keeps the outputs) + 4 + 4 + 4 bytes x V per token. Chunked and fused
(Liger FusedLinearCrossEntropy, Cut Cross-Entropy; Wijmans et al. 2024, arXiv:2411.09009) losses avoid that:
Liger computes the logits in chunks of about N*h/V tokens (``fused_linear_cross_entropy.py``: ``inc_factor =
cdiv(V, H)``), so its working set is ~N*h values plus the input gradient and a weight gradient in the weight dtype.

Gradient checkpointing (HF, per decoder layer) keeps each layer's input (residual dtype x h per token) and, during
backward, one layer's full saved set plus its gradient buffers.

Values are bytes per token of the micro-batch (batch x sequence) unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import peft_methods as pm
from .model import (DENSE, DENSE_MOE, FULL, GATED_DELTANET, KDA, MAMBA, MAMBA2, MLA, MOE, NO_MLP, NOMIX, SHORT_CONV, SLIDING, ModelSpec,
                    group_mlp_width, layer_groups)
from .peft import AdapterPlan, AdapterTarget

ATTENTION_IMPLS = ("sdpa", "flash", "eager")
LOSS_IMPLS = ("full", "chunked", "fused")
LOSS_CHUNK_TOKENS = 1024
"""Tokens per chunk of a chunked cross-entropy (torchtune's CEWithChunkedOutputLoss-style): the fp32 working set
of one chunk is live at a time while the 16-bit logits of every token are kept for backward."""


@dataclass(frozen=True, slots=True)
class ActivationModel:
    """How one training step stores activations (all sizes in bytes per element)."""

    act_bytes: int = 2  # dtype of linear outputs (bf16/fp16: 2, fp32: 4)
    residual_bytes: int = 2  # residual stream dtype (4 under torch AMP with fp32 weights)
    norm_out_bytes: int = 2  # dtype of a norm's output (the residual dtype in HF RMSNorm)
    logits_bytes: int = 2
    full: bool = True  # every base weight trained (full fine-tuning)
    norms_trainable: bool = False
    lm_head_trainable: bool = False
    adapter: AdapterPlan | None = None
    adapter_bytes: int = 4  # PEFT creates adapters in fp32 by default
    autocast: bool = False  # torch.autocast: each linear casts its input to act_bytes
    attention: str = "sdpa"
    expand_kv: bool = False  # repeat_kv before attention (eager; SDPA with a padding mask)
    use_cache: bool = True  # the forward builds the KV cache it returns (off with checkpointing)
    keep_outputs: bool = False  # the loop keeps `outputs` (logits + KV cache) alive through backward and step
    fused_kernels: bool = False  # Liger-style fused RMSNorm / SwiGLU (minimal saves)
    loss: str = "full"
    checkpointing: bool = False
    norm_scale_fp32: bool = False  # Gemma's RMSNorm scales by (1 + w) in fp32: its weight grad keeps fp32 inputs

    @property
    def cache_on(self) -> bool:
        return self.use_cache and not self.checkpointing


@dataclass(frozen=True, slots=True)
class Activations:
    """Per-token activation figures of one micro-batch, and the peaks they give at ``tokens`` tokens."""

    tokens: int
    per_layer: tuple[tuple[str, int], ...]  # (group label, bytes/token/layer) per layer group
    layer_terms: tuple[tuple[str, int], ...]  # the first group's terms, for explanations
    layers_bytes_per_token: int  # all decoder layers, saved tensors (no checkpointing)
    final_bytes_per_token: int  # final norm + lm_head input
    checkpoint_bytes_per_token: int  # all layers' inputs (checkpointing)
    layer_work_bytes_per_token: int  # one layer's saved set + backward buffers (checkpointing)
    cache_bytes_per_token: int  # KV cache the forward returns (0 when it is the tensors attention saves)
    logits_bytes_per_token: int
    loss_forward_bytes: int  # at the loss in the forward (whole micro-batch)
    loss_backward_bytes: int  # at the log-softmax backward
    saved_bytes: int  # everything the layers save for backward at the end of the forward (whole micro-batch)
    forward_peak_bytes: int
    backward_peak_bytes: int
    retained_after_step_bytes: int  # outputs kept by the loop after the step (logits, KV cache)
    eager_scores_bytes: int = 0  # the s^2 part held at once (all layers; one layer with checkpointing)
    adapter_fixed_bytes: int = 0  # weight-shaped tensors adapted modules keep (delta weights, rotations, copies)
    loss_saved_bytes: int = 0  # the plain cross-entropy's fp32 log-softmax output, saved for its backward
    notes: tuple[str, ...] = field(default=())

    @property
    def peak_bytes(self) -> int:
        return max(self.forward_peak_bytes, self.backward_peak_bytes)


def _norm_terms(width: int, m: ActivationModel, label: str) -> list[tuple[str, int]]:
    if m.fused_kernels:  # Liger RMSNorm keeps X and the fp32 rstd
        return [(f"{label} (fused: input + rstd)", m.residual_bytes * width + 4)]
    t = [(f"{label}: fp32 input + rsqrt", 4 * width + 4)]
    if m.full or m.norms_trainable:
        t.append((f"{label}: normalized input (weight grad)", _norm_saved_bytes(m) * width))
    return t


def _norm_saved_bytes(m: ActivationModel) -> int:
    """Bytes per element of the normalized input a trained norm weight keeps: the residual dtype (HF LlamaRMSNorm
    casts before scaling), fp32 for Gemma's norms, which scale by (1 + w) before casting back."""
    return 4 if m.norm_scale_fp32 else m.residual_bytes


def _targets_on(m: ActivationModel, roles: tuple[str, ...]) -> list[AdapterTarget]:
    if m.adapter is None or m.adapter.kind in ("prompt", "ln"):
        return []
    return [t for t in m.adapter.targets if set(t.roles) & set(roles)]


def _linear_inputs(width: int, x_bytes: int, roles: tuple[str, ...], m: ActivationModel, label: str,
                   base_trained: bool) -> list[tuple[str, int]]:
    """What the linears reading one input of ``width`` keep: the input itself, casts, adapter copies."""
    a, ad = m.act_bytes, m.adapter_bytes
    shared = False
    terms: list[tuple[str, int]] = []
    if base_trained:
        if m.autocast and x_bytes != a:
            terms.append((f"{label}: {len(roles)} autocast copies of the input", len(roles) * a * width))
        else:
            shared = True
    for t in _targets_on(m, roles):
        kind = m.adapter.kind
        if kind in ("lora", "dora"):
            if m.autocast:
                terms.append((f"{t.name} LoRA: autocast copy of x + rank-r", a * width + a * m.adapter.rank))
            elif ad != x_bytes:
                terms.append((f"{t.name} LoRA: fp32 copy of x + rank-r", ad * width + ad * m.adapter.rank))
            else:
                shared = True
                terms.append((f"{t.name} LoRA: rank-r intermediate", ad * m.adapter.rank))
            if kind == "dora":
                terms.append((f"{t.name} DoRA: base and LoRA outputs", (a + ad) * t.out_features))
        elif kind == "ia3":
            if t.input_scaled:
                if ad != x_bytes:
                    terms.append((f"{t.name} IA3: fp32 copy of the input", ad * width))
                else:
                    shared = True
            else:
                terms.append((f"{t.name} IA3: base output", a * t.out_features))
        else:  # the methods of peft_methods: what PEFT's forward keeps, per token (fixed parts: activations())
            sv = _method_saved(m, t, x_bytes)
            shared = shared or sv.shares_input
            if sv.token:
                terms.append((f"{t.name} {kind}: {sv.label}", sv.token))
    if shared:
        terms.insert(0, (f"{label}: input", x_bytes * width))
    return terms


def _method_saved(m: ActivationModel, t: AdapterTarget, x_bytes: int) -> pm.Saved:
    c = m.act_bytes if m.autocast else m.adapter_bytes
    return pm.module_saved(m.adapter.kind, t.in_features, t.out_features, m.adapter.opts,
                           pm.Dtypes(a=m.act_bytes, c=c, x=x_bytes))


def _method_extras(spec: ModelSpec, m: ActivationModel) -> tuple[int, int, int, int, bool]:
    """For a peft_methods adapter: (fixed bytes kept by all adapted modules, bytes per token per adapted layer of an
    adaption prompt, its layer count, fixed bytes outside the layers, lm_head input kept)."""
    if m.adapter is None or m.adapter.kind not in pm.METHODS:
        return 0, 0, 0, 0, False
    kind, o = m.adapter.kind, m.adapter.opts
    fixed = sum(_method_saved(m, t, m.norm_out_bytes).fixed * t.layers for t in m.adapter.targets)
    per_tok, layers = pm.attention_extra(kind, o, spec, m.act_bytes)
    glob, lm_in = pm.global_saved(kind, spec, m.act_bytes)
    return fixed, per_tok, layers, glob, lm_in


def _attention_terms(spec: ModelSpec, kind: str, m: ActivationModel, seq_len: int) -> list[tuple[str, int]]:
    a = m.act_bytes
    h, nh, nkv, d, vd = spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim, spec.value_head_dim
    if kind in (FULL, SLIDING):  # per-kind sizes (Gemma 4 full layers, Step-3.5 sliding layers, MiMo-V2)
        nh, nkv, d = spec.heads_for(kind), spec.kv_heads_for(kind), spec.head_dim_for(kind)
        if spec.global_head_dim:
            vd = spec.v_head_dim or d
    t: list[tuple[str, int]] = []
    if kind == MLA:
        qk = spec.qk_nope_head_dim + spec.qk_rope_head_dim
        if spec.q_lora_rank:
            t += _norm_terms(spec.q_lora_rank, m, "q latent norm")
            t += _linear_inputs(spec.q_lora_rank, m.norm_out_bytes, ("attn_q_b",), m, "q_b_proj", m.full)
        t += _norm_terms(spec.kv_lora_rank, m, "kv latent norm")
        t += _linear_inputs(spec.kv_lora_rank, m.norm_out_bytes, ("attn_kv_b",), m, "kv_b_proj", m.full)
        t.append(("attention: Q, K (nope+rope), V, output", a * nh * (2 * qk + 2 * spec.v_head_dim)))
        t.append(("attention: fp32 log-sum-exp", 4 * nh))
        return t
    if spec.qk_norm:
        t.append(("q/k norms: fp32 inputs + rsqrt", 4 * (nh + nkv) * d + 4 * (nh + nkv)))
        if m.full or m.norms_trainable:
            t.append(("q/k norms: normalized", _norm_saved_bytes(m) * (nh + nkv) * d))
    if m.attention == "eager":
        t.append(("attention: Q, K and V repeated to every head", a * nh * (2 * d + vd)))
        scores = (4 + a) * nh * seq_len
        t.append((f"attention: fp32 softmax + {8 * a}-bit probs (s^2)", scores))
    else:
        heads = nh if m.expand_kv else nkv
        t.append(("attention: Q (post-RoPE)", a * nh * d))
        t.append(("attention: K, V" + (" repeated to every head (padding mask)" if m.expand_kv else ""),
                  a * heads * (d + vd)))
        t.append(("attention: output", a * nh * vd))
        t.append(("attention: fp32 log-sum-exp", 4 * nh))
    return t


def _mlp_terms(spec: ModelSpec, moe: bool, m: ActivationModel, width: int = 0, with_moe: bool = False
               ) -> list[tuple[str, int]]:
    a, h = m.act_bytes, spec.hidden_size
    t: list[tuple[str, int]] = []

    def dense(width: int, suffix: str, roles_in: tuple[str, ...], role_down: str) -> None:
        t.extend(_linear_inputs(h, m.norm_out_bytes, roles_in, m, f"mlp{suffix} in", m.full))
        if spec.mlp_gated:
            n = 2 if m.fused_kernels else 3
            t.append((f"mlp{suffix}: gate/act/up outputs", n * a * width))
        else:
            t.append((f"mlp{suffix}: activation input", a * width))
        t.extend(_linear_inputs(width, a, (role_down,), m, f"down_proj{suffix} in", m.full))

    if not moe:
        dense(width or spec.intermediate_size, "", ("ffn_gate", "ffn_up"), "ffn_down")
        if not with_moe:
            return t
    e, k, w = spec.num_experts, spec.experts_per_token, spec.moe_intermediate_size
    t.extend(_linear_inputs(h, m.norm_out_bytes, ("ffn_gate_inp",), m, "router in", m.full))
    t.append(("router: fp32 probabilities", 4 * e))
    per_routed = (2 if m.fused_kernels else 3) * a * w + a * h  # act/mul saves + expert output (routing weight)
    if m.full:
        per_routed += a * h + a * w  # gathered expert input, down_proj input
    t.append((f"experts: {k} routed x (act/up outputs, output)", k * per_routed))
    if spec.shared_expert_intermediate_size:
        dense(spec.shared_expert_intermediate_size, " shared", ("ffn_gate_shexp", "ffn_up_shexp"), "ffn_down_shexp")
    return t


def _ssm_in_width(spec: ModelSpec) -> int:
    di = spec.d_inner
    if spec.ssm_variant == GATED_DELTANET:
        return 2 * spec.lin_k_heads * spec.lin_k_dim + 2 * di + 2 * spec.lin_v_heads
    if spec.ssm_variant == KDA:  # q, k, v, the two gate low-rank pairs' outputs, beta
        return 3 * di + 2 * (spec.lin_v_dim + di) + spec.lin_v_heads
    if spec.ssm_variant == MAMBA2:
        return di + spec.ssm_conv_channels() + spec.ssm_heads
    if spec.ssm_variant == SHORT_CONV:  # B, C and x
        return 3 * di
    return 2 * di


def _mamba_terms(spec: ModelSpec, m: ActivationModel) -> list[tuple[str, int]]:
    """Recurrent mixer (Mamba-1/2, gated DeltaNet), approximate: in_proj output, conv input and output, the scan's
    saved input and output, and its fp32 per-channel saves."""
    a, di = m.act_bytes, spec.d_inner
    t = _norm_terms(spec.hidden_size, m, "norm")
    t += _linear_inputs(spec.hidden_size, m.norm_out_bytes, ("ssm_in",), m, "in_proj in", m.full)
    saved = a * (_ssm_in_width(spec) + 2 * spec.ssm_conv_channels() + 2 * di) + 4 * di
    t.append((f"{spec.ssm_variant}: in_proj output, conv and scan saves (approximate)", saved))
    t += _linear_inputs(di, a, ("ssm_out",), m, "out_proj in", m.full)
    return t


def layer_terms(spec: ModelSpec, kind: str, moe: bool, m: ActivationModel, seq_len: int,
                mlp: str | None = None, width: int = 0) -> list[tuple[str, int]]:
    """Saved bytes per token of one decoder layer, as named terms (``width``: the layer's dense MLP width where it
    differs from intermediate_size)."""
    mlp = mlp or (MOE if moe else DENSE)
    h = spec.hidden_size
    if kind in (MAMBA, NOMIX):
        t = _mamba_terms(spec, m) if kind == MAMBA else _norm_terms(h, m, "input norm")
        if mlp != NO_MLP:
            if kind == MAMBA and spec.norms_per_layer > 1:
                t += _norm_terms(h, m, "post-mixer norm")
            t += _mlp_terms(spec, mlp == MOE, m, width)
        return t
    t = _norm_terms(h, m, "input norm")
    if spec.parallel_ssm and kind in (FULL, SLIDING):  # Falcon-H1's Mamba-2 mixer on the same normed input
        t += [(n, b) for n, b in _mamba_terms(spec, m) if not n.startswith("norm")]
    if kind == MLA:
        t += _linear_inputs(h, m.norm_out_bytes, ("attn_q_a", "attn_q", "attn_kv_a_mqa"), m, "q/kv_a in", m.full)
    else:
        t += _linear_inputs(h, m.norm_out_bytes, ("attn_q", "attn_k", "attn_v"), m, "q/k/v in", m.full)
    t += _attention_terms(spec, kind, m, seq_len)
    vd = spec.v_head_dim if kind == MLA else spec.value_head_dim
    if spec.global_head_dim and kind in (FULL, SLIDING):
        vd = spec.v_head_dim or spec.head_dim_for(kind)
    o_width = spec.heads_for(kind) * vd
    # SDPA/flash return the output in (b, s, heads, d) memory order: o_proj's input is the saved output itself.
    o_base = m.full and m.attention == "eager"
    t += _linear_inputs(o_width, m.act_bytes, ("attn_output",), m, "o_proj in", o_base)
    if mlp == NO_MLP:
        return t
    for i in range(max(spec.norms_per_layer - 1, 1)):
        t += _norm_terms(h, m, "post-attention norm" if i == 0 else f"extra norm {i}")
    if mlp == DENSE_MOE:  # Gemma 4 26B-A4B: the dense MLP and the experts side by side
        return t + _mlp_terms(spec, False, m, width, with_moe=True)
    t += _mlp_terms(spec, moe and mlp == MOE, m, 0 if mlp == MOE else width)
    return t


def _mlp_width(spec: ModelSpec, moe: bool, mlp: str = "") -> int:
    if mlp == NO_MLP:
        return 2 * spec.d_inner if spec.ssm_state_size or spec.lin_v_heads else 0
    if moe:
        return spec.moe_intermediate_size * spec.experts_per_token + spec.shared_expert_intermediate_size
    if spec.ssm_expand and not spec.intermediate_size:
        return 2 * spec.ssm_expand * spec.hidden_size
    return spec.intermediate_size


def loss_bytes_per_token(spec: ModelSpec, m: ActivationModel) -> tuple[int, int, int]:
    """(forward peak, backward peak, kept logits) bytes per token at the loss; V = vocab size."""
    v, lb, h, a = spec.vocab_size, m.logits_bytes, spec.hidden_size, m.act_bytes
    if m.loss == "fused":
        # Liger FusedLinearCrossEntropy: logits in chunks of ~N*h/V tokens (~N*h values) + the input's gradient
        work = 2 * a * h
        return work, work, 0
    kept = lb * v if m.keep_outputs else 0
    if m.loss == "chunked":
        return lb * v, lb * v, kept  # the fixed fp32 chunk working set is added by the caller
    upcast = 0 if lb == 4 else 4 * v
    fwd = lb * v + upcast + 4 * v  # logits, fp32 copy, log-softmax output
    bwd = kept + 12 * v  # (kept logits) + saved log-softmax + its incoming grad + its output grad
    return fwd, bwd, kept


def activations(spec: ModelSpec, m: ActivationModel, batch: int, seq_len: int, virtual_tokens: int = 0
                ) -> Activations:
    """Activation memory of one micro-batch of ``batch`` sequences of ``seq_len`` tokens (+ virtual tokens)."""
    s = seq_len + virtual_tokens
    n = batch * s
    h, a = spec.hidden_size, m.act_bytes
    per_group: list[tuple[str, int]] = []
    layers_total = 0
    first_terms: list[tuple[str, int]] = []
    max_layer = 0
    max_width = 0
    cache = 0
    scores = 0
    for g in layer_groups(spec):
        terms = layer_terms(spec, g.kind, g.moe, m, s, g.mlp, 0 if g.mlp == MOE else group_mlp_width(spec, g)[0])
        per_tok = sum(b for _, b in terms)
        if not first_terms:
            first_terms = terms
        label = f"{len(g.layers)} x {g.kind}{' MoE' if g.moe else ''} layer"
        per_group.append((label, per_tok))
        layers_total += per_tok * len(g.layers)
        max_layer = max(max_layer, per_tok)
        max_width = max(max_width, _mlp_width(spec, g.moe, g.mlp), group_mlp_width(spec, g)[0] if g.mlp != MOE else 0)
        if g.kind not in (MAMBA, NOMIX) and m.cache_on and (m.expand_kv or m.attention == "eager"):
            kv = spec.kv_elements_per_token(g.kind) if g.kind == MLA else \
                spec.num_kv_heads * (spec.head_dim + spec.value_head_dim)
            cache += a * kv * len(g.layers)
        if m.attention == "eager" and g.kind not in (MAMBA, NOMIX):
            scores += (4 + a) * spec.num_heads * s * len(g.layers)
    ad_fixed, ap_tok, ap_layers, glob_fixed, lm_in = _method_extras(spec, m)
    if ap_layers:  # adaption prompt: a gated attention over the adapter tokens in the top layers
        per_group.append((f"+ adaption prompt in {ap_layers} layers", ap_tok))
        first_terms = first_terms + [(f"adaption prompt (top {ap_layers} layers): query + scores", ap_tok)]
        layers_total += ap_tok * ap_layers
        max_layer += ap_tok
    final = sum(b for _, b in _norm_terms(h, m, "final norm"))
    if m.full or m.lm_head_trainable or lm_in:
        final += (a if m.autocast and m.norm_out_bytes != a else m.norm_out_bytes) * h
    ckpt = m.residual_bytes * h * spec.num_layers
    work = max_layer + a * (2 * max_width + 2 * h)  # one layer's saves + its backward gradient buffers
    kv_saved, kv_cache = _prefix_kv(spec, m, batch, s, m.adapter.kv_virtual_tokens if m.adapter else 0)
    layer_fixed = (ad_fixed + kv_saved) // max(spec.num_layers, 1)  # one layer's share (checkpointing)
    loss_f, loss_b, kept_logits = loss_bytes_per_token(spec, m)
    chunk_fixed = 12 * spec.vocab_size * min(n, LOSS_CHUNK_TOKENS) if m.loss == "chunked" else 0
    # the lm_head weight gradient it accumulates (weight dtype) while the weight is trained
    fused_fixed = a * spec.vocab_size * h if (m.loss == "fused" and (m.full or m.lm_head_trainable)) else 0
    held = ckpt if m.checkpointing else layers_total
    # + weight-shaped tensors kept by adapted modules (per layer: only the recomputed one with checkpointing)
    saved = n * (held + final) + glob_fixed + (0 if m.checkpointing else ad_fixed + kv_saved)
    cache_total = n * cache + kv_cache
    prev_outputs = n * kept_logits + cache_total if m.keep_outputs else 0  # previous step's outputs, same shape
    fwd = saved + n * loss_f + chunk_fixed + fused_fixed + cache_total + prev_outputs
    bwd = saved + n * loss_b + chunk_fixed + fused_fixed + (cache_total if m.keep_outputs else 0)
    if m.checkpointing:  # first recomputed layer: checkpoints + kept logits + one layer's working set
        bwd = max(bwd, n * (ckpt + final + kept_logits + work) + layer_fixed + glob_fixed)
    else:  # last layer's backward: everything saved + kept logits + its gradient buffers
        bwd = max(bwd, n * (layers_total + final + kept_logits + a * (2 * max_width + 2 * h))
                  + ad_fixed + kv_saved + glob_fixed + (cache_total if m.keep_outputs else 0))
    retained = n * kept_logits + cache_total if m.keep_outputs else 0
    notes = []
    if ad_fixed or glob_fixed:
        notes.append(f"{m.adapter.kind} keeps weight-shaped tensors for backward: {ad_fixed + glob_fixed:,} B "
                     f"(delta weights, rotations or merged matrices built in the forward)")
    if kv_saved or kv_cache:
        notes.append(f"prefix tuning: {m.adapter.kv_virtual_tokens} key/value positions prepended in every layer "
                     f"({kv_saved + kv_cache:,} B with the cache)")
    if m.expand_kv and m.attention != "eager":
        notes.append("a padding mask makes transformers repeat K/V to every query head before SDPA (no GQA "
                     "saving in the saved tensors)")
    return Activations(tokens=n, per_layer=tuple(per_group), layer_terms=tuple(first_terms),
                       layers_bytes_per_token=layers_total, final_bytes_per_token=final,
                       checkpoint_bytes_per_token=ckpt, layer_work_bytes_per_token=work,
                       cache_bytes_per_token=cache, logits_bytes_per_token=kept_logits,
                       loss_forward_bytes=n * loss_f + chunk_fixed + fused_fixed,
                       loss_backward_bytes=n * loss_b + chunk_fixed + fused_fixed,
                       saved_bytes=saved, forward_peak_bytes=fwd, backward_peak_bytes=bwd,
                       loss_saved_bytes=n * 4 * spec.vocab_size if m.loss == "full" else 0,
                       retained_after_step_bytes=retained,
                       eager_scores_bytes=n * (scores // max(spec.num_layers, 1) if m.checkpointing else scores),
                       adapter_fixed_bytes=ad_fixed + glob_fixed, notes=tuple(notes))


def _prefix_kv(spec: ModelSpec, m: ActivationModel, batch: int, s: int, vt: int) -> tuple[int, int]:
    """Prefix tuning (peft_model.get_prompt): every attention layer starts from ``vt`` trainable key/value positions
    in a DynamicCache and concatenates its own. Returns (bytes the attention keeps for the prefix positions, bytes of
    the cache that are not already those kept tensors), for the whole micro-batch and all attention layers. The cache
    is PEFT's object, filled whatever ``use_cache`` says."""
    if not vt:
        return 0, 0
    a = m.act_bytes
    layers = sum(len(g.layers) for g in layer_groups(spec) if g.kind not in (MAMBA, MLA, NOMIX))
    dv = spec.head_dim + spec.value_head_dim
    separate = m.expand_kv or m.attention == "eager"  # the attention keeps repeated copies, the cache its own
    heads = spec.num_heads if separate else spec.num_kv_heads
    saved = a * heads * dv * batch * vt * layers
    if m.attention == "eager":  # every query also scores the prefix: fp32 softmax + its 16-bit copy
        saved += (4 + a) * spec.num_heads * vt * batch * s * layers
    kv = a * spec.num_kv_heads * dv * layers
    if separate:
        cache = kv * batch * (vt + (0 if m.cache_on else s))
    else:
        cache = kv * batch * (s + vt) if m.checkpointing else 0
    return saved, cache


def full_ft_bytes_per_token_layer(spec: ModelSpec, attention: str = "sdpa", seq_len: int = 0) -> int:
    """formulas.md 5.2's verified per-token, per-layer figure for full fine-tuning in bf16 (first layer group)."""
    m = ActivationModel(full=True, attention=attention, use_cache=False)
    g = layer_groups(spec)[0]
    return sum(b for _, b in layer_terms(spec, g.kind, g.moe, m, seq_len, g.mlp,
                                         0 if g.mlp == MOE else group_mlp_width(spec, g)[0]))
