"""GGUF metadata -> an HF-style ``config.json`` dict, so that ``sources.hf_config.parse_config`` builds the ModelSpec.

Key names are llama.cpp's (gguf-py ``Keys.LLM``/``Keys.Attention``/``Keys.Rope``: ``{arch}.block_count``,
``{arch}.attention.head_count_kv``, ...). Where the metadata is silent the tensor list decides: an ``output.weight``
tensor means untied embeddings, ``token_embd.weight``'s second dimension is the vocabulary, a layer holding
``ffn_gate_inp`` is a MoE layer. Sliding-window layouts that llama.cpp hard-codes per architecture (gemma2: every
other layer; gemma3: 5 local then 1 global; gpt-oss: alternating, local first) are written as the config fields
transformers uses for the same models.

Mapped architectures (``general.architecture`` -> ``model_type``; glm4moe -> glm4_moe too): llama -> llama (mistral when it carries a sliding
window, mixtral when it has experts), mistral3 -> as llama, qwen2, qwen2moe -> qwen2_moe, qwen3,
qwen3moe -> qwen3_moe, gemma, gemma2, gemma3 -> gemma3_text, phi3, deepseek2 -> deepseek_v2 / deepseek_v3 (sigmoid
gating or ``exp_probs_b``), gpt-oss -> gpt_oss, qwen3next / qwen35 / qwen35moe -> the gated-DeltaNet hybrids,
nemotron_h / nemotron_h_moe -> nemotron_h. Other
architectures get the generic keys and ``model_type`` = the
GGUF name (which the HF parser then accepts or refuses).
"""

from __future__ import annotations

from typing import Sequence

from ..errors import InvalidModelSpec
from .gguf import GGUFArray, GGUFFile, all_tensors

# general.architecture -> (model_type, HF architecture class)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "llama": ("llama", "LlamaForCausalLM"),
    "mistral3": ("llama", "LlamaForCausalLM"),  # mistral when it carries a sliding window (see _llama)
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "qwen2moe": ("qwen2_moe", "Qwen2MoeForCausalLM"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM"),
    "qwen3moe": ("qwen3_moe", "Qwen3MoeForCausalLM"),
    "gemma": ("gemma", "GemmaForCausalLM"),
    "gemma2": ("gemma2", "Gemma2ForCausalLM"),
    "gemma3": ("gemma3_text", "Gemma3ForCausalLM"),
    "phi3": ("phi3", "Phi3ForCausalLM"),
    "deepseek2": ("deepseek_v2", "DeepseekV2ForCausalLM"),
    "gpt-oss": ("gpt_oss", "GptOssForCausalLM"),
    "qwen3next": ("qwen3_next", "Qwen3NextForCausalLM"),
    "qwen35": ("qwen3_5_text", "Qwen3_5ForCausalLM"),
    "qwen35moe": ("qwen3_5_moe_text", "Qwen3_5MoeForCausalLM"),
    "nemotron_h": ("nemotron_h", "NemotronHForCausalLM"),
    "nemotron_h_moe": ("nemotron_h", "NemotronHForCausalLM"),
    "glm4moe": ("glm4_moe", "Glm4MoeForCausalLM"),
    "olmo2": ("olmo2", "Olmo2ForCausalLM"),  # Llama's keys; the q/k norms over all heads come from the model type
    "gptneox": ("gpt_neox", "GPTNeoXForCausalLM"),  # one attention.head_count (no GQA), LayerNorms with bias
}

# {arch}.<suffix> -> config key, copied when present (scalars only)
_SIMPLE: tuple[tuple[str, str], ...] = (
    ("context_length", "max_position_embeddings"),
    ("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
    ("attention.layer_norm_epsilon", "layer_norm_eps"),
    ("rope.freq_base", "rope_theta"),
    ("attention.sliding_window", "sliding_window"),
    ("attn_logit_softcapping", "attn_logit_softcapping"),
    ("final_logit_softcapping", "final_logit_softcapping"),
)


class _Meta:
    """Typed getters over GGUF metadata; errors name the key."""

    def __init__(self, md: dict, arch: str):
        self.md, self.arch = md, arch

    def key(self, suffix: str) -> str:
        return f"{self.arch}.{suffix}"

    def get(self, suffix: str):
        return self.md.get(self.key(suffix))

    def int(self, suffix: str, default: int | None = None, *, required: bool = False) -> int | None:
        """A scalar, or a per-layer array reduced to its largest value (what sizes the biggest layer)."""
        v = self.get(suffix)
        if v is None:
            if required:
                raise InvalidModelSpec("required GGUF metadata is missing", field=self.key(suffix))
            return default
        if isinstance(v, GGUFArray):
            raise InvalidModelSpec(f"per-layer array of {v.count:,} values is too long", field=self.key(suffix))
        if isinstance(v, tuple):
            if not v or not all(_is_int(x) for x in v):
                raise InvalidModelSpec("expected integers", field=self.key(suffix))
            return max(v)
        if not _is_int(v):
            raise InvalidModelSpec(f"expected an integer, got {type(v).__name__}", field=self.key(suffix))
        return v

    def layers(self, suffix: str) -> tuple | None:
        v = self.get(suffix)
        return v if isinstance(v, tuple) else None

    def num(self, suffix: str) -> float | int | None:
        v = self.get(suffix)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        return v

    def str(self, suffix: str) -> str | None:
        v = self.get(suffix)
        return v if isinstance(v, str) else None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def gguf_to_config(gguf: GGUFFile | Sequence[GGUFFile]) -> dict:
    """HF-style config dict for a GGUF file (or the parts of a split set; metadata comes from the first)."""
    files = (gguf,) if isinstance(gguf, GGUFFile) else tuple(gguf)
    if not files:
        raise InvalidModelSpec("no GGUF file given")
    md = files[0].metadata
    arch = md.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InvalidModelSpec("GGUF metadata has no architecture", field="general.architecture")
    tensors = {t.name: t for t in all_tensors(files)}
    m = _Meta(md, arch)
    model_type, arch_class = ARCHITECTURES.get(arch, (arch, ""))

    heads = m.int("attention.head_count", required=True)
    kv = m.int("attention.head_count_kv", heads)
    kv_layers = m.layers("attention.head_count_kv")
    if kv_layers and 0 in kv_layers:  # hybrids list 0 KV heads for recurrent layers
        kv = max(kv_layers)
    layers = m.int("block_count", required=True)
    cfg: dict = {
        "model_type": model_type,
        "architectures": [arch_class] if arch_class else [],
        "hidden_size": m.int("embedding_length", required=True),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv or heads,
        "vocab_size": _vocab(md, m, tensors),
        "tie_word_embeddings": "output.weight" not in tensors,
    }
    ffn = m.int("feed_forward_length")
    if ffn is not None:
        cfg["intermediate_size"] = ffn
    key_len = m.int("attention.key_length")
    if key_len is not None and arch != "deepseek2":
        cfg["head_dim"] = key_len
    for suffix, hf_key in _SIMPLE:
        value = m.num(suffix)
        if value is not None:
            cfg[hf_key] = value
    rope = _rope_scaling(m)
    if rope:
        cfg["rope_scaling"] = rope
    name = md.get("general.name")
    if isinstance(name, str):
        cfg["_name_or_path"] = name

    experts = m.int("expert_count", 0) or 0
    if experts:
        cfg["num_local_experts"] = experts
        cfg["num_experts_per_tok"] = m.int("expert_used_count", required=True)
        moe_ffn = m.int("expert_feed_forward_length")
        if moe_ffn is not None:
            cfg["moe_intermediate_size"] = moe_ffn
        cfg.setdefault("intermediate_size", moe_ffn)
    _ARCH_FIXUPS.get(arch, _no_fixup)(cfg, m, tensors, layers)
    return {k: v for k, v in cfg.items() if v is not None}


def _vocab(md: dict, m: _Meta, tensors: dict) -> int:
    emb = tensors.get("token_embd.weight")
    if emb is not None and len(emb.shape) == 2:
        return emb.shape[1]
    v = m.int("vocab_size")
    if v:
        return v
    tokens = md.get("tokenizer.ggml.tokens")
    if isinstance(tokens, (tuple, GGUFArray)) and len(tokens):
        return len(tokens)
    raise InvalidModelSpec("cannot tell the vocabulary size: no token_embd tensor, vocab_size or token list",
                           field="tokenizer.ggml.tokens")


def _rope_scaling(m: _Meta) -> dict | None:
    kind = m.str("rope.scaling.type")
    if not kind or kind == "none":
        return None
    out: dict = {"rope_type": kind, "type": kind}
    factor = m.num("rope.scaling.factor")
    if factor is not None:
        out["factor"] = factor
    orig = m.int("rope.scaling.original_context_length")
    if orig:
        out["original_max_position_embeddings"] = orig
    return out


def _moe_layers(tensors: dict, layers: int) -> list[bool]:
    return [f"blk.{i}.ffn_gate_inp.weight" in tensors for i in range(layers)]


def _no_fixup(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    pass


def _llama(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    if cfg.get("num_local_experts"):
        cfg.update(model_type="mixtral", architectures=["MixtralForCausalLM"])
        cfg["intermediate_size"] = cfg.pop("moe_intermediate_size", None) or cfg.get("intermediate_size")
    elif cfg.get("sliding_window"):
        cfg.update(model_type="mistral", architectures=["MistralForCausalLM"])


def _qwen_moe(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    if not cfg.get("num_local_experts"):
        return
    cfg["num_experts"] = cfg.pop("num_local_experts")
    shared = m.int("expert_shared_feed_forward_length")
    if shared:
        cfg["shared_expert_intermediate_size"] = shared
    mask = _moe_layers(tensors, layers)
    if tensors and any(mask) and not all(mask):
        cfg["mlp_only_layers"] = [i for i, moe in enumerate(mask) if not moe]


def _gemma3(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    pattern = m.get("attention.sliding_window_pattern")
    if isinstance(pattern, tuple) and len(pattern) == layers:
        cfg["layer_types"] = ["sliding_attention" if p else "full_attention" for p in pattern]
    elif _is_int(pattern) and pattern > 0:
        cfg["sliding_window_pattern"] = pattern
    elif cfg.get("sliding_window"):
        cfg["sliding_window_pattern"] = 6  # llama.cpp: hparams.set_swa_pattern(6) for gemma3


def _deepseek2(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    v3 = m.int("expert_gating_func", 0) == 2 or any(n.endswith("exp_probs_b.bias") for n in tensors)
    if v3:
        cfg.update(model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], topk_method="noaux_tc")
    rope = m.int("rope.dimension_count", required=True)
    key_mla = m.int("attention.key_length_mla")
    if key_mla is not None:  # converters since 2025 store the absorbed-MLA lengths separately
        nope, v_dim = key_mla - rope, m.int("attention.value_length_mla", required=True)
    else:
        nope, v_dim = m.int("attention.key_length", required=True) - rope, m.int("attention.value_length",
                                                                                  required=True)
    cfg.update(
        num_key_value_heads=cfg["num_attention_heads"],
        q_lora_rank=m.int("attention.q_lora_rank") or None,
        kv_lora_rank=m.int("attention.kv_lora_rank", required=True),
        qk_rope_head_dim=rope, qk_nope_head_dim=nope, v_head_dim=v_dim,
        first_k_dense_replace=m.int("leading_dense_block_count", 0),
        n_shared_experts=m.int("expert_shared_count", 0),
    )
    if "num_local_experts" in cfg:
        cfg["n_routed_experts"] = cfg.pop("num_local_experts")
    nextn = m.int("nextn_predict_layers", 0) or 0
    if nextn and any(n.startswith(f"blk.{layers - 1}.nextn.") for n in tensors):
        cfg["num_hidden_layers"] = layers - nextn  # the MTP layers are appended to the block count
        cfg["num_nextn_predict_layers"] = nextn


def _glm4moe(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    """GLM-4.5 / 4.6 / 4.7 (llama.cpp's Glm4MoeModel converter): leading dense blocks, routed + shared experts, q/k/v
    biases and q/k norms read from the tensors, the NextN (MTP) layer appended to the block count."""
    cfg.update(first_k_dense_replace=m.int("leading_dense_block_count", 0),
               n_shared_experts=m.int("expert_shared_count", 0), topk_method="noaux_tc",
               attention_bias="blk.0.attn_q.bias" in tensors if tensors else True,
               use_qk_norm="blk.0.attn_q_norm.weight" in tensors if tensors else False)
    if "num_local_experts" in cfg:
        cfg["n_routed_experts"] = cfg.pop("num_local_experts")
    nextn = m.int("nextn_predict_layers", 0) or 0
    if nextn and any(n.startswith(f"blk.{layers - 1}.nextn.") for n in tensors):
        cfg["num_hidden_layers"] = layers - nextn
        cfg["num_nextn_predict_layers"] = nextn


def _gpt_oss(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    if cfg.get("moe_intermediate_size"):
        cfg["intermediate_size"] = cfg.pop("moe_intermediate_size")
    if cfg.get("sliding_window"):  # llama.cpp: set_swa_pattern(2), local layers first
        cfg["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]


def _gemma2(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    pass  # hf_config applies gemma2's fixed alternation from sliding_window


def _gated_deltanet(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    """Qwen3-Next / Qwen3.5 (llama.cpp's converter, conversion/qwen.py): ssm.conv_kernel = linear_conv_kernel_dim,
    ssm.state_size = linear_key_head_dim, ssm.group_count = linear_num_key_heads, ssm.time_step_rank =
    linear_num_value_heads, ssm.inner_size = linear_value_head_dim x linear_num_value_heads. Recurrent layers: the
    attention.recurrent_layers array, else layers with 0 KV heads, else every layer but each full_attention_interval-th.
    The appended NextN (MTP) block, when the GGUF carries one, is not a decoder layer here."""
    v_heads = m.int("ssm.time_step_rank", required=True)
    inner = m.int("ssm.inner_size", required=True)
    if v_heads <= 0 or inner % v_heads:
        raise InvalidModelSpec(f"inner size {inner} is not a multiple of {v_heads} value heads",
                               field=m.key("ssm.inner_size"))
    nextn = m.int("nextn_predict_layers", 0) or 0
    trunk = layers - nextn
    recurrent = m.layers("attention.recurrent_layers")
    kv_layers = m.layers("attention.head_count_kv")
    if recurrent is not None and len(recurrent) >= trunk:
        rec = [bool(x) for x in recurrent[:trunk]]
    elif kv_layers is not None and len(kv_layers) >= trunk:
        rec = [x == 0 for x in kv_layers[:trunk]]
    else:
        every = m.int("full_attention_interval", 4) or 4
        rec = [(i + 1) % every != 0 for i in range(trunk)]
    cfg.update(num_hidden_layers=trunk, layer_types=["linear_attention" if r else "full_attention" for r in rec],
               linear_conv_kernel_dim=m.int("ssm.conv_kernel", 4), linear_key_head_dim=m.int("ssm.state_size", 128),
               linear_num_key_heads=m.int("ssm.group_count", required=True), linear_num_value_heads=v_heads,
               linear_value_head_dim=inner // v_heads, mtp_num_hidden_layers=nextn)
    if cfg.get("num_local_experts"):
        cfg["num_experts"] = cfg.pop("num_local_experts")
        shared = m.int("expert_shared_feed_forward_length")
        if shared:
            cfg["shared_expert_intermediate_size"] = shared
    value_len = m.int("attention.value_length")
    if value_len is not None:
        cfg.setdefault("head_dim", value_len)


def _nemotron_h(cfg: dict, m: _Meta, tensors: dict, layers: int) -> None:
    """Nemotron-H / Nemotron 3 (llama.cpp NEMOTRON_H(_MOE)): a block is attention where its KV head count is non-zero,
    an MLP (or, with expert tensors, a MoE) where its feed-forward length is, else Mamba-2; ssm.inner_size /
    ssm.time_step_rank (the head count) give the head dim, ssm.group_count the groups."""
    kv = m.layers("attention.head_count_kv") or ()
    ff = m.layers("feed_forward_length") or ()
    if len(kv) < layers or len(ff) < layers:
        raise InvalidModelSpec(f"expected per-layer arrays of {layers} entries",
                               field=m.key("attention.head_count_kv" if len(kv) < layers else "feed_forward_length"))
    pattern = []
    for i in range(layers):
        if kv[i]:
            pattern.append("*")
        elif ff[i]:
            pattern.append("E" if f"blk.{i}.ffn_up_exps.weight" in tensors or (not tensors and cfg.get(
                "num_local_experts")) else "-")
        else:
            pattern.append("M")
    heads = m.int("ssm.time_step_rank", required=True)
    inner = m.int("ssm.inner_size", required=True)
    if heads <= 0 or inner % heads:
        raise InvalidModelSpec(f"inner size {inner} is not a multiple of {heads} heads", field=m.key("ssm.inner_size"))
    dense = [f for f, c in zip(ff, pattern) if c == "-"]
    cfg.update(hybrid_override_pattern="".join(pattern), mamba_num_heads=heads, mamba_head_dim=inner // heads,
               n_groups=m.int("ssm.group_count", 1), ssm_state_size=m.int("ssm.state_size", 128),
               conv_kernel=m.int("ssm.conv_kernel", 4), intermediate_size=max(dense) if dense else max(ff))
    if cfg.get("num_local_experts"):
        cfg["n_routed_experts"] = cfg.pop("num_local_experts")
        cfg["moe_intermediate_size"] = m.int("expert_feed_forward_length", required=True)
        shared = m.int("expert_shared_feed_forward_length")
        if shared:
            cfg["moe_shared_expert_intermediate_size"] = shared


_ARCH_FIXUPS = {
    "llama": _llama, "mistral3": _llama, "qwen2moe": _qwen_moe, "qwen3moe": _qwen_moe, "gemma2": _gemma2,
    "gemma3": _gemma3, "deepseek2": _deepseek2, "gpt-oss": _gpt_oss, "qwen3next": _gated_deltanet,
    "qwen35": _gated_deltanet, "qwen35moe": _gated_deltanet, "nemotron_h": _nemotron_h, "nemotron_h_moe": _nemotron_h, "glm4moe": _glm4moe,
}
