"""Hugging Face ``config.json`` (a parsed dict) -> :class:`vramplan.core.model.ModelSpec`.

Untrusted input: every field is read with a typed getter that names its path on error
(``expected int, got str in 'text_config.num_key_value_heads'``). Key aliases are a table; per-model-type
defaults (what transformers' config classes fill in when a config.json leaves a field out) are a table too.
"""

from __future__ import annotations

import json


from ..core.model import (CSA, DENSE, DENSE_MOE, DENSE_WIDE, FULL, HCA, GATED_DELTANET, KDA, MAMBA, MAMBA2, MLA, MOE, NO_MLP, NOMIX, SHORT_CONV, SLIDING,
                          ModelSpec)
from ..errors import InvalidModelSpec

# Other spellings of the same field, first match wins.
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "n_kv_heads", "multi_query_group_num"),
    "intermediate_size": ("intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim"),
    "vocab_size": ("vocab_size", "padded_vocab_size", "n_vocab"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
                                "model_max_length"),
    "num_local_experts": ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"),
    "num_experts_per_tok": ("num_experts_per_tok", "experts_per_token", "num_experts_per_token", "moe_top_k", "top_k",
                            "moe_k"),
}

# What transformers' config classes default to when config.json omits a field (per model_type).
# Source: the defaults in transformers' configuration_<model>.py for each model type (v4.50-5.x).
MODEL_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {"vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
                    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "sliding_window": 4096,
                    "sliding_window_pattern": 6, "max_position_embeddings": 131072, "tie_word_embeddings": True},
    "gemma2": {"vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
               "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "sliding_window": 4096,
               "max_position_embeddings": 8192, "tie_word_embeddings": True},
    "gemma": {"vocab_size": 256000, "head_dim": 256, "tie_word_embeddings": True},
    "siglip_vision_model": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                            "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 16},
    "llama": {"tie_word_embeddings": False},
    "cohere": {"tie_word_embeddings": True},
    "cohere2": {"tie_word_embeddings": True, "sliding_window": 4096},
    "olmo3": {"sliding_window": 4096},
    "gpt_neox": {"tie_word_embeddings": False, "attention_bias": True},
    "ernie4_5_moe": {"tie_word_embeddings": True, "num_local_experts": 64, "num_experts_per_tok": 6,
                     "moe_intermediate_size": 1536,
                     "moe_layer_start_index": 1, "moe_layer_end_index": -1, "moe_layer_interval": 1,
                     "moe_num_shared_experts": 2},
    "phimoe": {"tie_word_embeddings": False, "num_local_experts": 16, "num_experts_per_tok": 2},
    "exaone4": {"sliding_window": 4096, "sliding_window_pattern": 4},
    "lfm2_moe": {"intermediate_size": 7168, "moe_intermediate_size": 1792, "num_local_experts": 32,
                 "num_experts_per_tok": 4, "num_dense_layers": 2, "use_expert_bias": True},
    "zamba2": {"vocab_size": 32000, "hidden_size": 2560, "num_hidden_layers": 54, "mamba_d_state": 64,
               "mamba_d_conv": 4, "mamba_expand": 2, "mamba_ngroups": 1, "n_mamba_heads": 8, "num_attention_heads": 32,
               "num_mem_blocks": 1, "adapter_rank": 128, "tie_word_embeddings": True},
    "falcon_h1": {"mamba_d_ssm": 1024, "mamba_n_heads": 128, "mamba_d_state": 256, "mamba_d_conv": 4,
                  "mamba_n_groups": 1},
    "mllama_text_model": {"cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38]},
    "mllama_vision_model": {"num_global_layers": 8, "max_num_tiles": 4,
                            "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1],
                                                        [4, 1]]},
    "mistral": {"sliding_window": 4096},
}

# model_type -> family traits. Unknown model types are refused rather than guessed.
_LLAMA_LIKE = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "granite",
               "granitemoe", "gemma", "gemma2", "gemma3_text", "deepseek_v2", "deepseek_v3", "gpt_oss", "phi",
               "mamba", "falcon_mamba", "starcoder2", "olmo", "yi", "internlm2", "cohere", "exaone", "minicpm",
               "helium", "smollm3", "ernie4_5", "glm", "seed_oss", "llama4_text", "hunyuan_v1_dense", "arcee",
               "nemotron", "solar", "qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "granitemoehybrid", "bamba",
               "jamba", "nemotron_h", "mamba2", "kimi_k2", "minimax_m2", "deepseek_v32", "glm_moe_dsa", "gemma4_text", "nemotron-nas", "deepseek_v4", "step3p5",
               "step3p7", "mimo_v2_flash", "minimax_m3", "kimi_linear", "glm4_moe", "glm4_moe_lite",
               "olmo2", "olmo3", "cohere2", "exaone4", "gpt_neox", "phimoe", "ernie4_5_moe", "lfm2", "falcon_h1",
               "zamba2", "lfm2_moe"}
_RENAMED = {"mimo_v2", "minimax_m3_vl", "kimi_k3", "glm4v_moe", "deepseek_vl_v2"}  # read as another model type (parse_config says which)
_RECURRENT_LAYER_TYPES = {"qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "granitemoehybrid", "bamba", "jamba",
                          "nemotron_h", "kimi_linear", "minimax_m3", "mimo_v2_flash", "step3p5", "step3p7"}
"""Model types whose layer_types may name recurrent layers ("mamba", "linear_attention"); elsewhere they are refused
rather than turned into recurrent layers without a recurrent mixer's fields."""
_HYBRID = {"qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "granitemoehybrid", "bamba", "jamba", "nemotron_h"}
SUPPORTED_MODEL_TYPES = tuple(sorted(_LLAMA_LIKE | _RENAMED | {"gemma3", "llama4", "mistral3", "llava", "qwen3_5", "qwen3_5_moe",
                                                    "qwen3_vl", "qwen3_vl_moe", "gemma4", "qwen2_vl",
                                                    "qwen2_5_vl", "mllama"}))

_ARCH_TO_TYPE = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "MixtralForCausalLM": "mixtral",
    "Qwen2ForCausalLM": "qwen2", "Qwen2MoeForCausalLM": "qwen2_moe", "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3_moe", "Phi3ForCausalLM": "phi3", "PhiForCausalLM": "phi",
    "GemmaForCausalLM": "gemma", "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3_text",
    "Gemma3ForConditionalGeneration": "gemma3", "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3", "GptOssForCausalLM": "gpt_oss", "GraniteForCausalLM": "granite",
    "GraniteMoeForCausalLM": "granitemoe", "MambaForCausalLM": "mamba", "Starcoder2ForCausalLM": "starcoder2",
    "Qwen3NextForCausalLM": "qwen3_next", "GraniteMoeHybridForCausalLM": "granitemoehybrid",
    "BambaForCausalLM": "bamba", "JambaForCausalLM": "jamba", "NemotronHForCausalLM": "nemotron_h",
    "Mamba2ForCausalLM": "mamba2", "DeciLMForCausalLM": "nemotron-nas", "DeepseekV4ForCausalLM": "deepseek_v4",
    "Step3p5ForCausalLM": "step3p5", "MiMoV2FlashForCausalLM": "mimo_v2_flash", "MiMoV2ForCausalLM": "mimo_v2", "MiniMaxM3ForCausalLM": "minimax_m3",
    "MiniMaxM3SparseForConditionalGeneration": "minimax_m3_vl", "DeepseekV32ForCausalLM": "deepseek_v32", "GlmMoeDsaForCausalLM": "glm_moe_dsa",
    "KimiLinearForCausalLM": "kimi_linear", "Glm4MoeForCausalLM": "glm4_moe",
    "Glm4MoeLiteForCausalLM": "glm4_moe_lite", "OlmoForCausalLM": "olmo", "Olmo2ForCausalLM": "olmo2",
    "Olmo3ForCausalLM": "olmo3", "CohereForCausalLM": "cohere", "Cohere2ForCausalLM": "cohere2",
    "Exaone4ForCausalLM": "exaone4", "GPTNeoXForCausalLM": "gpt_neox", "PhimoeForCausalLM": "phimoe",
    "Ernie4_5_MoeForCausalLM": "ernie4_5_moe", "Qwen2VLForConditionalGeneration": "qwen2_vl", "Lfm2ForCausalLM": "lfm2",
    "FalconH1ForCausalLM": "falcon_h1", "Zamba2ForCausalLM": "zamba2", "Lfm2MoeForCausalLM": "lfm2_moe",
    "Qwen2_5_VLForConditionalGeneration": "qwen2_5_vl", "MllamaForConditionalGeneration": "mllama", "Glm4vMoeForConditionalGeneration": "glm4v_moe", "KimiK3ForConditionalGeneration": "kimi_k3",
}

MAX_DIM = 1 << 22  # 4M: no real hidden size, vocabulary or width is larger
MAX_LAYERS = 4096
MAX_EXPERTS = 8192


class _Reader:
    """Typed getters over one config dict, reporting field paths like 'text_config.hidden_size'."""

    def __init__(self, cfg: dict, prefix: str = "", defaults: dict | None = None):
        self.cfg, self.prefix, self.defaults = cfg, prefix, defaults or {}

    def path(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def raw(self, key: str, default: Any = None) -> Any:
        explicit_null = None
        for k in KEY_ALIASES.get(key, (key,)):
            if k in self.cfg:
                if self.cfg[k] is not None:
                    return k, self.cfg[k]
                explicit_null = explicit_null or k
        if explicit_null:  # "sliding_window": null means no window, not the model type's default
            return explicit_null, default
        if key in self.defaults:
            return key, self.defaults[key]
        return key, default

    def int(self, key: str, default: int | None = None, *, required: bool = False, lo: int = 1,
            hi: int = MAX_DIM) -> int | None:
        k, v = self.raw(key, None)
        if v is None:
            if required and default is None:
                raise InvalidModelSpec("required field is missing", field=self.path(key))
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise InvalidModelSpec(f"expected int, got {type(v).__name__} {_short(v)}", field=self.path(k))
        v = int(v)
        if not lo <= v <= hi:
            raise InvalidModelSpec(f"value {v} is out of range [{lo}, {hi}]", field=self.path(k))
        return v

    def bool(self, key: str, default: bool = False) -> bool:
        k, v = self.raw(key, None)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise InvalidModelSpec(f"expected true/false, got {type(v).__name__} {_short(v)}", field=self.path(k))
        return v

    def str(self, key: str, default: str = "") -> str:
        k, v = self.raw(key, None)
        if v is None:
            return default
        if not isinstance(v, str):
            raise InvalidModelSpec(f"expected string, got {type(v).__name__}", field=self.path(k))
        return v

    def list(self, key: str) -> list | None:
        k, v = self.raw(key, None)
        if v is None:
            return None
        if not isinstance(v, list):
            raise InvalidModelSpec(f"expected a list, got {type(v).__name__}", field=self.path(k))
        return v


def _context_length(r: "_Reader") -> int:
    """max_position_embeddings (or an alias); a tokenizer-style model_max_length sentinel (1e30) counts as unset."""
    k, v = r.raw("max_position_embeddings")
    if k == "model_max_length" and isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 <= v <= 1 << 30:
        return 0
    return r.int("max_position_embeddings", 0, lo=0, hi=1 << 30) or 0


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _model_type(cfg: dict, prefix: str = "") -> str:
    mt = cfg.get("model_type")
    if mt is not None and not isinstance(mt, str):
        raise InvalidModelSpec(f"expected string, got {type(mt).__name__}", field=f"{prefix}model_type")
    archs = cfg.get("architectures")
    if archs is not None and (not isinstance(archs, list) or not all(isinstance(a, str) for a in archs)):
        raise InvalidModelSpec("expected a list of strings", field=f"{prefix}architectures")
    if not mt and archs:
        mt = _ARCH_TO_TYPE.get(archs[0], "")
    return mt or ""


def parse_config(cfg: Any, name: str = "model", quantize_config: dict | None = None) -> ModelSpec:
    """Parse a config.json dict. ``quantize_config`` is a separate quantize_config.json (old GPTQ repos)."""
    if not isinstance(cfg, dict):
        raise InvalidModelSpec(f"a config must be a JSON object, got {type(cfg).__name__}")
    mt = _model_type(cfg)
    top_mt = mt
    archs = cfg.get("architectures") or []
    arch = archs[0] if archs else ""
    top = cfg
    extra: list[tuple[str, int]] = []
    cross: list[int] = []  # Llama 3.2 Vision's cross-attention layers
    prefix = ""
    if mt == "deepseek_vl_v2" and isinstance(cfg.get("language_config"), dict):  # DeepSeek-OCR / VL2
        extra += _deepseek_ocr_vision_params(cfg)
        cfg = {**cfg["language_config"]}
        cfg.setdefault("model_type", "deepseek_v2")
        mt = _model_type(cfg, "language_config.")
        prefix = "language_config."
    if mt in ("qwen2_vl", "qwen2_5_vl"):  # Qwen2-VL / Qwen2.5-VL: a Qwen2 text model (top level or text_config)
        if not isinstance(cfg.get("vision_config"), dict):  # the tower is part of the checkpoint: never drop it
            raise InvalidModelSpec("expected the vision tower's settings (an object)", field="vision_config")
        extra += _qwen2_vl_vision_params(cfg["vision_config"], mt)
        if isinstance(cfg.get("text_config"), dict):
            prefix = "text_config."
            outer = {k: v for k, v in cfg.items() if k not in ("text_config", "vision_config")}
            cfg = {**outer, **cfg["text_config"]}
            if "tie_word_embeddings" in outer:  # the top-level flag is the one transformers ties the head by
                cfg["tie_word_embeddings"] = outer["tie_word_embeddings"]
        cfg = {**cfg, "model_type": "qwen2"}
        mt = "qwen2"
    if isinstance(cfg.get("text_config"), dict) and mt not in _LLAMA_LIKE:
        text = dict(cfg["text_config"])
        prefix = "text_config."
        tmt = _model_type(text, prefix) or {"gemma3": "gemma3_text", "llama4": "llama4_text",
                                            "gemma4": "gemma4_text", "minimax_m3_vl": "minimax_m3"}.get(mt, "")
        tmt = {"qwen3_vl_text": "qwen3", "qwen3_vl_moe_text": "qwen3_moe",  # the same text towers
               "glm4v_moe_text": "glm4_moe", "mllama_text_model": "llama"}.get(tmt, tmt)
        if mt == "mllama":
            cross = _mllama_cross_layers(_Reader(text, prefix))
            extra += _mllama_text_extras(text, prefix, cross)
        text.setdefault("model_type", tmt)
        if isinstance(cfg.get("vision_config"), dict):
            extra += _vision_params(cfg, text)
        if isinstance(cfg.get("audio_config"), dict) and cfg["audio_config"].get("model_type") == "gemma4_audio":
            extra += _gemma4_audio_params(cfg["audio_config"], text)
        cfg, mt = text, tmt
    elif "text_config" in cfg and not isinstance(cfg["text_config"], dict) and cfg["text_config"] is not None:
        raise InvalidModelSpec("expected an object", field="text_config")
    if mt == "mimo_v2":  # MiMo-V2.5 / V2.5-Pro: MiMo-V2-Flash's text stack, V2.5 with vision and audio towers
        mt = "mimo_v2_flash"
        if isinstance(cfg.get("vision_config"), dict):
            extra += _mimo_vision_params(cfg["vision_config"])
        if isinstance(cfg.get("audio_config"), dict):
            extra += _mimo_audio_params(cfg["audio_config"])
    if not mt:
        raise InvalidModelSpec("cannot tell the architecture: no 'model_type' or known 'architectures'",
                               field="model_type")
    if mt not in _LLAMA_LIKE:
        raise InvalidModelSpec(f"unsupported architecture {mt!r}"
                               f"{' (' + arch + ')' if arch else ''}; supported model types: "
                               + ", ".join(SUPPORTED_MODEL_TYPES), field=f"{prefix}model_type")
    r = _Reader(cfg, prefix, MODEL_TYPE_DEFAULTS.get(mt))
    nas = _nas_blocks(r, cfg) if mt == "nemotron-nas" else None
    if nas is not None:  # per-layer blocks set the KV heads and MLP widths the top level leaves null
        cfg = {**cfg, "num_key_value_heads": nas[0], "intermediate_size": max(nas[3] or [0]) or 1}
        r = _Reader(cfg, prefix, MODEL_TYPE_DEFAULTS.get(mt))
    if mt == "nemotron_h" and "num_hidden_layers" not in cfg:  # transformers derives it from the block pattern
        cfg = {**cfg, "num_hidden_layers": len(_nemotron_pattern(r)) or None}
        r = _Reader(cfg, prefix, MODEL_TYPE_DEFAULTS.get(mt))
    dtype = r.str("torch_dtype") or r.str("dtype") or _Reader(top).str("torch_dtype") or _Reader(top).str("dtype")
    qcfg = top.get("quantization_config") if isinstance(top.get("quantization_config"), dict) else None
    if qcfg is None and isinstance(cfg.get("quantization_config"), dict):
        qcfg = cfg["quantization_config"]
    if quantize_config and not qcfg:
        qcfg = dict(quantize_config)
        qcfg.setdefault("quant_method", "gptq")
    if (qcfg and str(mt).startswith("qwen") and str(qcfg.get("quant_method", "")).lower() == "fp8"
            and qcfg.get("weight_block_size") and "scale_dtype" not in qcfg):
        qcfg = {**qcfg, "scale_dtype": "bfloat16"}  # Qwen's FP8 releases store weight_scale_inv in bf16
    quant_json = json.dumps(qcfg, sort_keys=True, default=str) if qcfg else ""

    if mt in ("mamba", "falcon_mamba"):
        return _parse_mamba(r, name, arch, mt, dtype, quant_json)
    if mt == "mamba2":
        return _parse_mamba2(r, name, arch, dtype, quant_json)
    if mt in ("step3p5", "step3p7", "mimo_v2_flash", "minimax_m3"):
        return _parse_moe_2026(r, mt, name, arch, dtype, quant_json, extra)
    if mt == "deepseek_v4":
        if qcfg is not None:
            # both V4 releases store MXFP4 routed experts (packed int8 + e8m0 scales per 32) and e8m0 block scales
            # for the FP8 linears, whether or not the config says so (the checkpoints' tensor tables)
            ed = cfg.get("expert_dtype") if isinstance(cfg.get("expert_dtype"), str) else "fp4"
            qcfg = {**qcfg, "expert_dtype": ed}
            if str(qcfg.get("scale_fmt", "")).lower() == "ue8m0":
                qcfg.setdefault("scale_dtype", "e8m0")
            quant_json = json.dumps(qcfg, sort_keys=True, default=str)
        return _parse_dsv4(r, name, arch, dtype, quant_json)
    dsa = None
    if mt in ("deepseek_v32", "glm_moe_dsa"):  # DeepSeek-V3's layout + a DSA lightning indexer in the MLA layers
        dsa = mt
        mt = "deepseek_v3"
    if mt in ("kimi_k2", "glm4_moe_lite"):  # DeepSeek-V3's architecture under another model_type (Kimi K2; GLM-4.7-
        mt = "deepseek_v3"                   # Flash: MLA + MoE, its MTP layer storing its own embedding and head)

    h = r.int("hidden_size", required=True)
    layers = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS)
    heads = r.int("num_attention_heads", required=True)
    kv = r.int("num_key_value_heads", heads)
    if heads % kv:
        raise InvalidModelSpec(f"{heads} attention heads are not a multiple of {kv} KV heads",
                               field=r.path("num_key_value_heads"))
    head_dim = r.int("head_dim") or (h // heads if h % heads == 0 else None)
    if head_dim is None and (mt == "kimi_linear" or r.int("kv_lora_rank")):  # MLA sets its own head sizes
        # (Kimi-K3: 7168 / 96 heads; GLM-4.7-Flash: 2048 / 20)
        head_dim = (r.int("qk_nope_head_dim", 0, lo=0) or 0) + (r.int("qk_rope_head_dim", 0, lo=0) or 0) or None
    if head_dim is None:
        raise InvalidModelSpec(f"hidden size {h} is not divisible by {heads} heads and no head_dim is given",
                               field=r.path("head_dim"))
    inter = (_lfm2_ff_width(r) if mt == "lfm2" else
             r.int("intermediate_size_mlp" if mt == "llama4_text" else "intermediate_size", None))
    if mt == "zamba2":
        inter = inter or 4 * h  # Zamba2Config: 4 x hidden
        head_dim = 2 * h // heads  # attention over [hidden, original embeddings]: 2h wide
    if inter is None:
        inter = 4 * h if mt in ("phi", "starcoder2") else 0 if mt == "qwen3_5_moe_text" else None
    if inter is None:
        raise InvalidModelSpec("required field is missing", field=r.path("intermediate_size"))
    vocab = r.int("vocab_size", required=True)
    tie = r.bool("tie_word_embeddings", mt in ("gemma", "gemma2", "gemma3_text", "gemma4_text"))
    if mt in ("lfm2", "lfm2_moe"):  # Lfm2Config: tie_embedding (alias of tie_word_embeddings), True by default
        tie = r.bool("tie_embedding", r.bool("tie_word_embeddings", True))
    if mt in ("gemma3_text", "gemma4_text") and "tie_word_embeddings" in top and top is not cfg:
        tie = _Reader(top).bool("tie_word_embeddings", tie)

    kw: dict[str, Any] = dict(
        name=name, hidden_size=h, num_layers=layers, num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
        intermediate_size=inter, vocab_size=vocab, architecture=arch, model_type=mt, tie_embeddings=tie,
        max_position_embeddings=_context_length(r),
        torch_dtype=dtype or "bfloat16", quantization=quant_json, extra_params=tuple(extra),
    )
    # attention biases and norms
    if mt == "qwen2" or mt == "qwen2_moe":
        kw["qkv_bias"] = True
    elif mt in ("phi", "starcoder2"):
        kw.update(qkv_bias=True, o_bias=True, norm_bias=True, mlp_gated=False, mlp_bias=True)
        if mt == "phi":
            kw.update(norms_per_layer=1, lm_head_bias=True)
    elif mt == "gpt_neox":  # fused query_key_value (+ bias), dense (+ bias), LayerNorms with bias, GELU MLP with bias
        bias = r.bool("attention_bias", True)
        kw.update(qkv_bias=bias, o_bias=bias, norm_bias=True, mlp_gated=False, mlp_bias=True)
    elif mt == "phimoe":  # Mixtral's layout with LayerNorms (bias) and, in Phi-3.5-MoE, attention and lm_head biases
        kw.update(norm_bias=True, qkv_bias=r.bool("attention_bias"), o_bias=r.bool("attention_bias"),
                  lm_head_bias=r.bool("lm_head_bias"))
    elif mt == "ernie4_5_moe" and r.bool("use_bias"):
        kw.update(qkv_bias=True, o_bias=True, mlp_bias=True, lm_head_bias=True)
    elif r.bool("attention_bias"):
        kw.update(qkv_bias=True, o_bias=mt != "glm4_moe")  # GLM-4.5: q/k/v biases, o_proj without one
    if mt == "glm4_moe":
        kw["qk_norm"] = r.bool("use_qk_norm")
    if mt in ("qwen3", "qwen3_moe", "gemma3_text"):
        kw["qk_norm"] = True  # (Llama 4's use_qk_norm is a parameter-free L2 norm)
    if mt in ("olmo2", "olmo3"):  # RMSNorm over all heads' q (and k), after the projections; post-norms only
        kw.update(qk_norm=True, qk_norm_full=True)
    if mt == "exaone4":  # OLMo 2's post-norm layer with per-head q/k RMSNorms
        kw["qk_norm"] = True
    if mt == "falcon_h1":
        _falcon_h1(r, kw)
    if mt in ("lfm2", "lfm2_moe"):  # short-convolution layers beside attention layers with per-head q/k norms
        kw.update(qk_norm=True, ssm_variant=SHORT_CONV, ssm_inner=h, ssm_state_size=0,
                  ssm_conv_kernel=r.int("conv_L_cache", 3, lo=2, hi=64), ssm_conv_bias=r.bool("conv_bias"))
    if mt == "olmo":  # OLMo 1: non-parametric LayerNorm, nothing stored
        kw.update(norms_per_layer=0, parametric_norms=False)
    if mt in ("cohere", "cohere2"):  # one LayerNorm (weight only) feeding attention and MLP in parallel
        kw["norms_per_layer"] = 1
        if mt == "cohere" and r.bool("use_qk_norm"):  # Command R+: LayerNorms over (heads, head_dim)
            kw.update(qk_norm=True, qk_norm_full=True)
    if mt in ("gemma2", "gemma3_text", "gemma4_text"):
        kw["norms_per_layer"] = 4
    if mt == "gpt_oss":
        kw.update(attention_sinks=True, router_bias=True, expert_bias=True)
    if r.bool("mlp_bias"):
        kw["mlp_bias"] = True

    if top_mt == "mllama":  # cross-attention layers (transformers' default list where the config has none); the
        # head is never tied to the (vocab + 8)-row embedding
        kw["cross_attention_layers"] = tuple(sorted(set(cross)))
        kw["tie_embeddings"] = False
    if mt == "llama4_text":
        kw["layer_kinds"], kw["sliding_window"] = _llama4_kinds(r, layers)
    else:
        kw["layer_kinds"], kw["sliding_window"] = _layer_kinds(r, mt, layers)
    if mt == "minimax_m2":
        kw.update(qk_norm=r.bool("use_qk_norm"), qk_norm_full=r.str("qk_norm_type", "per_layer") == "per_layer",
                  score_correction_bias=r.bool("use_routing_bias"))
    if nas is not None:
        kw.update(layer_kinds=nas[1], layer_mlp=nas[2], layer_intermediate=tuple(nas[3]), norms_follow_blocks=True)
    if mt == "gemma4_text":
        _gemma4(r, layers, kw)
    elif mt == "zamba2":
        _zamba2(r, layers, kw)
    elif mt in _HYBRID:
        _hybrid(r, mt, layers, kw)
        ssm_dtype = r.str("mamba_ssm_cache_dtype") or r.str("mamba_ssm_dtype")
        if ssm_dtype in ("float32", "fp32"):
            kw["ssm_state_bytes"] = 4
    else:
        _moe(r, mt, layers, inter, kw)
    if mt in ("deepseek_v2", "deepseek_v3") and r.int("kv_lora_rank"):
        _mla(r, kw)
        kw["layer_kinds"] = (MLA,) * layers
        if dsa:
            _dsa(r, dsa, layers, kw)
            kw["norms_fp32"] = dsa == "deepseek_v32"  # V3.2's tensor table: every RMSNorm in fp32
    if mt == "kimi_linear":
        _kimi_linear(r, layers, kw)
    spec = ModelSpec(**kw)
    return spec


def _every_nth_global(layers: int, period: int) -> tuple[str, ...]:
    """Sliding-window layers with every ``period``-th layer global (1-based), the default of several configs."""
    return tuple(SLIDING if (i + 1) % period else FULL for i in range(layers))


def _layer_kinds(r: _Reader, mt: str, layers: int) -> tuple[tuple[str, ...], int]:
    window = r.int("sliding_window", 0, lo=0, hi=1 << 30) or 0
    types = r.list("layer_types")
    if types is not None:
        if len(types) != layers:
            raise InvalidModelSpec(f"has {len(types)} entries for {layers} layers", field=r.path("layer_types"))
        kinds = []
        for i, t in enumerate(types):
            if t in ("full_attention", "attention", "global", "deepseek_sparse_attention"):
                kinds.append(FULL)
            elif t in ("sliding_attention", "chunked_attention", "local"):
                kinds.append(SLIDING)
            elif ((t in ("mamba", "linear_attention") and mt in _RECURRENT_LAYER_TYPES)
                  or (t == "conv" and mt in ("lfm2", "lfm2_moe"))):
                kinds.append(MAMBA)
            else:
                raise InvalidModelSpec(f"unknown layer type {t!r}", field=f"{r.path('layer_types')}[{i}]")
        if SLIDING in kinds and not window:
            raise InvalidModelSpec("sliding layers need a window", field=r.path("sliding_window"))
        return tuple(kinds), window
    if mt in ("lfm2", "lfm2_moe"):  # full_attn_idxs; without it (and without layer_types) every layer is attention
        if r.list("full_attn_idxs") is None:
            return (FULL,) * layers, 0
        return _recurrent_kinds(r, layers, "full_attn_idxs"), 0
    if not window:
        return (), 0
    if mt == "gemma2":
        return tuple(SLIDING if (i + 1) % 2 else FULL for i in range(layers)), window
    if mt == "gemma3_text":
        return _every_nth_global(layers, r.int("sliding_window_pattern", 6)), window
    if mt == "qwen2" or mt == "qwen2_moe" or mt == "qwen3" or mt == "qwen3_moe":
        if not r.bool("use_sliding_window"):
            return (), 0
        first = r.int("max_window_layers", layers, lo=0, hi=MAX_LAYERS)
        return tuple(SLIDING if i >= first else FULL for i in range(layers)), window
    if mt in ("mistral", "mixtral", "starcoder2", "phi3"):
        return (SLIDING,) * layers, window
    if mt in ("olmo3", "cohere2"):  # transformers' default pattern when layer_types is absent: every 4th is global
        pattern = r.int("sliding_window_pattern", 4) if mt == "cohere2" else 4  # (Olmo3Config has no such field)
        return _every_nth_global(layers, pattern), window
    if mt == "exaone4":  # an int period, or a string such as "LLLG" repeated from layer 0 (the last layer global)
        k, pattern = r.raw("sliding_window_pattern", 4)
        if isinstance(pattern, str) and pattern and set(pattern.upper()) <= {"L", "G"}:
            kinds = [SLIDING if pattern.upper()[i % len(pattern)] == "L" else FULL for i in range(layers)]
            kinds[-1] = FULL
            return tuple(kinds), window
        if isinstance(pattern, bool) or not isinstance(pattern, int) or pattern < 1:
            raise InvalidModelSpec(f"expected a period or a string of L and G, got {_short(pattern)}", field=r.path(k))
        return _every_nth_global(layers, pattern), window
    if mt == "phimoe":
        return (SLIDING,) * layers, window
    return (), 0


def _falcon_h1(r: _Reader, kw: dict) -> None:
    """Falcon-H1: every layer runs GQA attention and a Mamba-2 mixer side by side on one normed input, then an MLP
    (transformers FalconH1DecoderLayer). Mamba width ``mamba_d_ssm`` (else ``mamba_expand`` x hidden; transformers'
    own default is 1024), ``mamba_n_heads`` heads, the gated RMSNorm only with ``mamba_rms_norm``, an in_proj bias
    with ``mamba_proj_bias`` and an out_proj bias with ``projectors_bias``. The muP multipliers are constants."""
    kw.update(_mamba2_fields(r, kw["hidden_size"], heads="mamba_n_heads", head_dim="mamba_d_head",
                             groups="mamba_n_groups", state="mamba_d_state", conv="mamba_d_conv",
                             expand="mamba_expand", conv_bias="mamba_conv_bias", proj_bias="mamba_proj_bias",
                             inner=r.int("mamba_d_ssm") or 0))
    # separate in_proj / out_proj bias flags instead of one for both
    kw.update(parallel_ssm=True, ssm_proj_bias=False, ssm_in_proj_bias=kw["ssm_proj_bias"],
              ssm_out_proj_bias=r.bool("projectors_bias"), ssm_gated_norm=r.bool("mamba_rms_norm"))


ZAMBA2_DEFAULT_LAYERS = (("mamba",) + (("mamba",) * 5 + ("hybrid",)) * 7 + ("mamba",) * 4 + ("hybrid",)
                         + ("mamba",) * 3 + ("hybrid",) + ("mamba",) * 2)
"""Zamba2Config's layers_block_type when the config has none (54 layers, Zamba2-2.7B's)."""


def _zamba2(r: _Reader, layers: int, kw: dict) -> None:
    """Zamba2: Mamba-2 in every layer; the "hybrid" layers also run one of ``num_mem_blocks`` shared transformer
    blocks (stored once) through their own linear and adapters, and only they cache K/V."""
    k, types = r.raw("layers_block_type")
    if types is None:
        k, types = r.raw("layer_types")
    if types is None:
        types = list(ZAMBA2_DEFAULT_LAYERS)
    if not isinstance(types, list) or len(types) != layers:
        raise InvalidModelSpec(f"expected a list of {layers} layer types", field=r.path(k))
    kinds = []
    for i, t in enumerate(types):
        if t not in ("mamba", "linear_attention", "hybrid"):
            raise InvalidModelSpec(f"unknown layer type {_short(t)}", field=f"{r.path(k)}[{i}]")
        kinds.append(FULL if t == "hybrid" else MAMBA)
    kw.update(_mamba2_fields(r, kw["hidden_size"], heads="n_mamba_heads", head_dim="mamba_headdim",
                             groups="mamba_ngroups", state="mamba_d_state", conv="mamba_d_conv",
                             expand="mamba_expand", conv_bias="use_conv_bias", proj_bias="add_bias_linear"))
    kw.update(layer_kinds=tuple(kinds), layer_mlp=(NO_MLP,) * layers, norms_per_layer=1, parallel_ssm=True,
              ssm_conv_bias=True,  # hard-coded in Zamba2's mixer whatever use_conv_bias says
              mlp_bias=r.bool("add_bias_linear"), shared_blocks=r.int("num_mem_blocks", 1, hi=64),
              shared_adapter_rank=r.int("adapter_rank", 128),
              shared_attention_adapter=r.bool("use_shared_attention_adapter"))


def _lfm2_ff_width(r: _Reader) -> int:
    """LFM2's feed-forward width as transformers computes it: ``block_ff_dim`` (else ``intermediate_size``), then,
    with ``block_auto_adjust_ff_dim`` (default on), 2/3 of it, and with ``block_ffn_dim_multiplier`` (default 1.0)
    that times the multiplier, rounded up to ``block_multiple_of`` (default 256)."""
    width = r.int("block_ff_dim") or r.int("intermediate_size", required=True)
    if r.bool("block_auto_adjust_ff_dim", True):
        width = int(2 * width / 3)
        k, mult = r.raw("block_ffn_dim_multiplier", 1.0)
        if mult is not None:
            if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not 0 < mult <= 64:
                raise InvalidModelSpec(f"expected a positive number, got {_short(mult)}", field=r.path(k))
            width = int(mult * width)
            step = r.int("block_multiple_of", 256)
            width = step * ((width + step - 1) // step)
    return width


def _llama4_kinds(r: _Reader, layers: int) -> tuple[tuple[str, ...], int]:
    """Llama 4: RoPE layers use chunked local attention (attention_chunk_size); every 4th layer is global NoPE."""
    chunk = r.int("attention_chunk_size", 0, lo=0, hi=1 << 30) or 0
    if not chunk:
        return (), 0
    flags = r.list("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(layers)]
    if len(flags) != layers:
        raise InvalidModelSpec(f"has {len(flags)} entries for {layers} layers", field=r.path("no_rope_layers"))
    return tuple(SLIDING if f else FULL for f in flags), chunk


def _moe(r: _Reader, mt: str, layers: int, inter: int, kw: dict) -> None:
    experts = r.int("num_local_experts", 0, lo=0, hi=MAX_EXPERTS) or 0
    if not experts:
        return
    top_k = r.int("num_experts_per_tok", required=True, hi=experts)
    kw.update(num_experts=experts, experts_per_token=top_k)
    if mt in ("mixtral", "gpt_oss", "granitemoe", "minimax_m2", "phimoe"):
        kw["moe_intermediate_size"] = inter
        return
    if mt == "lfm2_moe":  # dense MLPs (intermediate_size, as written) in the first num_dense_layers, MoE after
        kw["moe_intermediate_size"] = r.int("moe_intermediate_size", required=True)
        dense = r.int("num_dense_layers", 2, lo=0, hi=MAX_LAYERS) or 0
        kw.update(moe_layer_mask=tuple(i >= dense for i in range(layers)), expert_bias_buffer=r.bool("use_expert_bias"))
        return
    if mt == "ernie4_5_moe":  # MoE from moe_layer_start_index to moe_layer_end_index every moe_layer_interval
        kw["moe_intermediate_size"] = r.int("moe_intermediate_size", required=True)
        start = r.int("moe_layer_start_index", 0, lo=0, hi=MAX_LAYERS) or 0
        end = r.int("moe_layer_end_index", -1, lo=-1, hi=MAX_LAYERS)
        end = layers - 1 if end is None or end < 0 else end
        step = r.int("moe_layer_interval", 1)
        kw["moe_layer_mask"] = tuple((i + 1) % step == 0 and start <= i <= end for i in range(layers))
        shared = r.int("moe_num_shared_experts", 0, lo=0) or 0
        kw["shared_expert_intermediate_size"] = shared * kw["moe_intermediate_size"]
        kw["score_correction_bias"] = True  # moe_statics.e_score_correction_bias, fp32
        return
    if mt == "llama4_text":  # experts and the one shared expert use intermediate_size; dense layers _mlp
        width = r.int("intermediate_size", required=True)
        step = r.int("interleave_moe_layer_step", 1)
        kw.update(moe_intermediate_size=width, shared_expert_intermediate_size=width,
                  moe_layer_mask=tuple((i + 1) % step == 0 for i in range(layers)))
        return
    kw["moe_intermediate_size"] = r.int("moe_intermediate_size", required=True)
    if mt in ("qwen2_moe", "qwen3_moe"):
        step = r.int("decoder_sparse_step", 1)
        only = r.list("mlp_only_layers") or []
        kw["moe_layer_mask"] = tuple((i not in only) and (i + 1) % step == 0 for i in range(layers))
        shared = r.int("shared_expert_intermediate_size", 0, lo=0) or 0
        if shared:
            kw.update(shared_expert_intermediate_size=shared, shared_expert_gate=True)
    elif mt in ("deepseek_v2", "deepseek_v3", "kimi_linear", "glm4_moe"):
        first = r.int("first_k_dense_replace", 0, lo=0, hi=MAX_LAYERS) or 0
        freq = r.int("moe_layer_freq", 1)
        kw["moe_layer_mask"] = tuple(i >= first and i % freq == 0 for i in range(layers))
        n_shared = r.int("num_shared_experts" if mt == "kimi_linear" else "n_shared_experts", 0, lo=0) or 0
        kw["shared_expert_intermediate_size"] = n_shared * kw["moe_intermediate_size"]
        # Kimi Linear's sigmoid router always carries the correction bias (the checkpoint's e_score_correction_bias)
        kw["score_correction_bias"] = r.str("topk_method") == "noaux_tc" or mt in ("kimi_linear", "glm4_moe")
        kw["mtp_layers"] = r.int("num_nextn_predict_layers", 0, lo=0, hi=16) or 0


def _mamba2_fields(r: _Reader, h: int, *, heads: str, head_dim: str, groups: str, state: str, conv: str,
                   expand: str, conv_bias: str, proj_bias: str, inner: int = 0) -> dict:
    """Mamba-2 mixer fields under a model's own config names (Bamba/Granite: mamba_n_heads ...; Nemotron-H:
    mamba_num_heads ...; Mamba2: num_heads ...)."""
    n_heads = r.int(heads, 128)
    if not inner:
        inner = r.int(expand, 2) * h
    d_head = r.raw(head_dim)[1]
    if d_head not in (None, "auto"):
        if isinstance(d_head, bool) or not isinstance(d_head, int) or d_head <= 0:
            raise InvalidModelSpec(f"expected int or 'auto', got {_short(d_head)}", field=r.path(head_dim))
        if d_head * n_heads != inner:
            raise InvalidModelSpec(f"{n_heads} heads x {d_head} = {n_heads * d_head}, but the mixer's inner width is "
                                   f"{inner}", field=r.path(head_dim))
    if inner % n_heads:
        raise InvalidModelSpec(f"inner width {inner} is not a multiple of {n_heads} heads", field=r.path(heads))
    g = r.int(groups, 1)
    if n_heads % g:
        raise InvalidModelSpec(f"{n_heads} heads are not a multiple of {g} groups", field=r.path(groups))
    return dict(ssm_variant=MAMBA2, ssm_inner=inner, ssm_heads=n_heads, ssm_groups=g, ssm_state_size=r.int(state, 128),
                ssm_conv_kernel=r.int(conv, 4), ssm_conv_bias=r.bool(conv_bias, True),
                ssm_proj_bias=r.bool(proj_bias, False))


def _recurrent_kinds(r: _Reader, layers: int, field: str) -> tuple[str, ...]:
    """Attention at the layer indices listed under ``field``, recurrent layers elsewhere."""
    raw = r.list(field) or []
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        raise InvalidModelSpec("expected a list of layer indices", field=r.path(field))
    attn = set(raw)
    bad = [i for i in attn if not 0 <= i < layers]
    if bad:
        raise InvalidModelSpec(f"layer {bad[0]} is outside 0..{layers - 1}", field=r.path(field))
    return tuple(FULL if i in attn else MAMBA for i in range(layers))


def _nas_blocks(r: _Reader, cfg: dict) -> tuple[int, tuple[str, ...], tuple[str, ...], list[int]]:
    """Nemotron-NAS (DeciLM: Llama-3.3-Nemotron-Super-49B, Llama-3.1-Nemotron-Ultra-253B): block_configs give each
    layer its own attention (kept with num_heads / n_heads_in_group KV heads, or no_op) and MLP (no_op, or
    ffn_mult: width int(2 x ffn_mult x hidden / 3) rounded up to a multiple of 256, as modeling_decilm.py computes
    it). -> (KV heads, layer kinds, feed-forward kinds, widths)."""
    blocks = r.list("block_configs")
    layers = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS)
    h = r.int("hidden_size", required=True)
    heads = r.int("num_attention_heads", required=True)
    if blocks is None or len(blocks) != layers:
        raise InvalidModelSpec(f"expected one block per layer ({layers})", field=r.path("block_configs"))
    kinds, mlps, widths, groups = [], [], [], set()
    for i, b in enumerate(blocks):
        where = f"{r.path('block_configs')}[{i}]"
        a = b.get("attention") if isinstance(b, dict) else None
        f = b.get("ffn") if isinstance(b, dict) else None
        if not isinstance(a, dict) or not isinstance(f, dict):
            raise InvalidModelSpec("expected an object with 'attention' and 'ffn'", field=where)
        if a.get("replace_with_linear") or f.get("replace_with_linear"):
            raise InvalidModelSpec("blocks replaced by a single linear layer are not modelled", field=where)
        if a.get("no_op"):
            kinds.append(NOMIX)
        else:
            n = a.get("n_heads_in_group")
            if isinstance(n, bool) or not isinstance(n, int) or n <= 0 or heads % n:
                raise InvalidModelSpec(f"n_heads_in_group must divide {heads} heads, got {_short(n)}",
                                       field=f"{where}.attention.n_heads_in_group")
            groups.add(heads // n)
            kinds.append(FULL)
        if f.get("no_op"):
            mlps.append(NO_MLP)
            widths.append(0)
        else:
            m = f.get("ffn_mult")
            if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m < 1e4:
                raise InvalidModelSpec(f"expected a positive number, got {_short(m)}", field=f"{where}.ffn.ffn_mult")
            w = int(2 * m * h / 3)
            mlps.append(DENSE)
            widths.append(-(-w // 256) * 256)
    if len(groups) > 1:
        raise InvalidModelSpec("attention layers with different KV head counts are not modelled",
                               field=r.path("block_configs"))
    return (groups.pop() if groups else heads), tuple(kinds), tuple(mlps), widths


_NEMOTRON_BLOCKS = {"mamba": "M", "attention": "*", "mlp": "-", "moe": "E"}


def _nemotron_pattern(r: _Reader) -> str:
    """Nemotron-H's block pattern: hybrid_override_pattern ("M*-E" characters) or, in newer configs,
    layers_block_type as a list of mamba / attention / mlp / moe."""
    pattern = r.str("hybrid_override_pattern")
    if pattern:
        return pattern
    blocks = r.list("layers_block_type")
    if blocks is None:
        return ""
    out = []
    for i, b in enumerate(blocks):
        if not isinstance(b, str) or b not in _NEMOTRON_BLOCKS:
            raise InvalidModelSpec(f"unknown block {_short(b)}; expected mamba, attention, mlp or moe",
                                   field=f"{r.path('layers_block_type')}[{i}]")
        out.append(_NEMOTRON_BLOCKS[b])
    return "".join(out)


def _hybrid(r: _Reader, mt: str, layers: int, kw: dict) -> None:
    """Attention + recurrent hybrids: which layers are which, their mixers and their feed-forward parts."""
    h = kw["hidden_size"]
    kinds = kw.get("layer_kinds") or ()
    if mt in ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text"):
        if not kinds:
            every = r.int("full_attention_interval", 4)
            kinds = tuple(FULL if (i + 1) % every == 0 else MAMBA for i in range(layers))
        kw.update(layer_kinds=kinds, ssm_variant=GATED_DELTANET, qk_norm=True,
                  attn_output_gate=r.bool("attn_output_gate", True),
                  lin_k_heads=r.int("linear_num_key_heads", 16), lin_v_heads=r.int("linear_num_value_heads", 32),
                  lin_k_dim=r.int("linear_key_head_dim", 128), lin_v_dim=r.int("linear_value_head_dim", 128),
                  ssm_conv_kernel=r.int("linear_conv_kernel_dim", 4),
                  # Qwen3-Next checkpoints store one MTP layer though its config has no field for it
                  mtp_layers=r.int("mtp_num_hidden_layers", 1 if mt == "qwen3_next" else 0, lo=0, hi=16) or 0,
                  mtp_shares_embeddings=True)
        if kw["lin_v_heads"] % kw["lin_k_heads"]:
            raise InvalidModelSpec(f"{kw['lin_v_heads']} value heads are not a multiple of {kw['lin_k_heads']} key "
                                   "heads", field=r.path("linear_num_value_heads"))
        experts = r.int("num_experts", 0, lo=0, hi=MAX_EXPERTS) or 0
        if experts:
            step = r.int("decoder_sparse_step", 1)
            only = r.list("mlp_only_layers") or []
            kw.update(num_experts=experts, experts_per_token=r.int("num_experts_per_tok", required=True, hi=experts),
                      moe_intermediate_size=r.int("moe_intermediate_size", required=True),
                      moe_layer_mask=tuple((i not in only) and (i + 1) % step == 0 for i in range(layers)))
            shared = r.int("shared_expert_intermediate_size", 0, lo=0) or 0
            if shared:
                kw.update(shared_expert_intermediate_size=shared, shared_expert_gate=True)
        return
    if mt in ("granitemoehybrid", "bamba"):
        if not kinds:
            if mt == "bamba":
                kinds = _recurrent_kinds(r, layers, "attn_layer_indices")
            else:
                kinds = (MAMBA,) * layers
        kw.update(layer_kinds=kinds, **_mamba2_fields(
            r, h, heads="mamba_n_heads", head_dim="mamba_d_head", groups="mamba_n_groups", state="mamba_d_state",
            conv="mamba_d_conv", expand="mamba_expand", conv_bias="mamba_conv_bias", proj_bias="mamba_proj_bias"))
        if mt == "granitemoehybrid":
            experts = r.int("num_local_experts", 0, lo=0, hi=MAX_EXPERTS) or 0
            shared = r.int("shared_intermediate_size", 0, lo=0) or 0
            if experts:  # intermediate_size is the per-expert width; the shared MLP runs beside the experts
                kw.update(num_experts=experts, experts_per_token=r.int("num_experts_per_tok", required=True,
                                                                        hi=experts),
                          moe_intermediate_size=kw["intermediate_size"], shared_expert_intermediate_size=shared)
            else:  # dense Granite 4.0-H micro: the "shared" MLP is the layer's only MLP
                kw["intermediate_size"] = shared
        return
    if mt == "jamba":
        period, offset = r.int("attn_layer_period", 8), r.int("attn_layer_offset", 4, lo=0)
        kinds = tuple(FULL if i % period == offset else MAMBA for i in range(layers))
        experts = r.int("num_experts", 16, lo=0, hi=MAX_EXPERTS) or 0
        e_period, e_offset = r.int("expert_layer_period", 2), r.int("expert_layer_offset", 1, lo=0)
        dt_rank = r.raw("mamba_dt_rank")[1]
        if dt_rank in (None, "auto"):
            dt_rank = -(-h // 16)
        elif isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank <= 0:
            raise InvalidModelSpec(f"expected int or 'auto', got {_short(dt_rank)}", field=r.path("mamba_dt_rank"))
        kw.update(layer_kinds=kinds, ssm_state_size=r.int("mamba_d_state", 16), ssm_conv_kernel=r.int("mamba_d_conv", 4),
                  ssm_expand=r.int("mamba_expand", 2), ssm_dt_rank=dt_rank, ssm_conv_bias=r.bool("mamba_conv_bias", True),
                  ssm_proj_bias=r.bool("mamba_proj_bias", False), ssm_bcdt_norms=True)
        if experts > 1:
            kw.update(num_experts=experts, experts_per_token=r.int("num_experts_per_tok", 2, hi=experts),
                      moe_intermediate_size=kw["intermediate_size"],
                      moe_layer_mask=tuple(i % e_period == e_offset for i in range(layers)))
        return
    if mt == "nemotron_h":
        pattern = _nemotron_pattern(r)
        if not pattern:
            raise InvalidModelSpec("required field is missing", field=r.path("hybrid_override_pattern"))
        codes = {"M": (MAMBA, NO_MLP), "*": (FULL, NO_MLP), "-": (NOMIX, DENSE), "E": (NOMIX, MOE)}
        bad = [c for c in pattern if c not in codes]
        if bad:
            raise InvalidModelSpec(f"unknown block {bad[0]!r}; expected M (Mamba-2), * (attention), - (MLP) or "
                                   "E (MoE)", field=r.path("hybrid_override_pattern"))
        if len(pattern) != layers:
            raise InvalidModelSpec(f"has {len(pattern)} blocks for {layers} layers",
                                   field=r.path("hybrid_override_pattern"))
        kw.update(layer_kinds=tuple(codes[c][0] for c in pattern), layer_mlp=tuple(codes[c][1] for c in pattern),
                  norms_per_layer=1, mlp_gated=False, moe_gated=False, head_dim=r.int("head_dim", 0) or r.int(
                      "attention_head_dim", kw["head_dim"]))
        n_heads = r.int("mamba_num_heads", 128)
        kw.update(_mamba2_fields(r, h, heads="mamba_num_heads", head_dim="mamba_head_dim", groups="n_groups",
                                 state="ssm_state_size", conv="conv_kernel", expand="expand", conv_bias="use_conv_bias",
                                 proj_bias="use_bias", inner=n_heads * r.int("mamba_head_dim", 64)))
        if "E" in pattern:
            experts = r.int("n_routed_experts", required=True, hi=MAX_EXPERTS)
            kw.update(num_experts=experts, experts_per_token=r.int("num_experts_per_tok", required=True, hi=experts),
                      moe_intermediate_size=r.int("moe_intermediate_size", required=True),
                      shared_expert_intermediate_size=(r.int("moe_shared_expert_intermediate_size", 0, lo=0) or 0)
                      * (r.int("n_shared_experts", 1, lo=0) or 0), score_correction_bias=True,
                      moe_latent_size=r.int("moe_latent_size", 0, lo=0) or 0)
        return


def _flags(r: _Reader, key: str, layers: int) -> list[bool] | None:
    """A per-layer 0/1 list (MiMo hybrid_layer_pattern, moe_layer_freq, MiniMax sparse_attention_freq)."""
    v = r.list(key)
    if v is None:
        return None
    if len(v) < layers or not all(x in (0, 1) and not isinstance(x, float) for x in v[:layers]):
        raise InvalidModelSpec(f"expected {layers} entries of 0 or 1", field=r.path(key))
    return [bool(x) for x in v[:layers]]


def _parse_moe_2026(r: _Reader, mt: str, name: str, arch: str, dtype: str, quant: str,
                    extra: list[tuple[str, int]]) -> ModelSpec:
    """Step-3.5 / 3.7 (Flash), MiMo-V2-Flash and MiniMax-M3: GQA MoE models with per-layer variations.

    Step: full layers (64 q heads) and 512-token sliding layers (attention_other_setting: 96 q heads), a head-wise
    output gate (g_proj), first_k_dense_replace dense layers, a shared expert of share_expert_dim, a router bias; 3
    MTP layers each with its own head. MiMo: sliding (hybrid_layer_pattern 1: 8 KV heads, sinks) and full (4 KV heads)
    layers, head_dim 192 / v_head_dim 128, moe_layer_freq, no shared expert; 3 MTP layers with a dense MLP. MiniMax-M3:
    all global attention, per-head q/k norms, a lightning indexer (index_q/index_k) on the sparse layers, dense layers
    of dense_intermediate_size, a shared expert; its MTP weights are not released (not counted)."""
    h = r.int("hidden_size", required=True)
    layers = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS)
    heads = r.int("num_attention_heads", required=True)
    kv = r.int("num_key_value_heads", None) or r.int("num_attention_groups", heads)
    d = r.int("head_dim", h // heads)
    experts = r.int("num_local_experts", required=True, hi=MAX_EXPERTS)
    if mt == "minimax_m3" and r.raw("moe_intermediate_size")[1] is None and r.raw("dense_intermediate_size")[1]:
        width = r.int("intermediate_size", required=True)  # the VL release's text_config names the expert width so
    else:
        width = r.int("moe_intermediate_size", required=True)
    kw: dict[str, Any] = dict(
        name=name, hidden_size=h, num_layers=layers, num_heads=heads, num_kv_heads=kv, head_dim=d, vocab_size=r.int(
            "vocab_size", required=True), architecture=arch, model_type=mt, tie_embeddings=r.bool("tie_word_embeddings"),
        num_experts=experts, experts_per_token=r.int("num_experts_per_tok", required=True, hi=experts),
        moe_intermediate_size=width, max_position_embeddings=_context_length(r),
        torch_dtype=dtype or "bfloat16", quantization=quant, extra_params=tuple(extra),
        sliding_window=r.int("sliding_window", 0, lo=0, hi=1 << 30) or 0)
    if mt in ("step3p5", "step3p7"):
        types = r.list("layer_types") or []
        if len(types) < layers:
            raise InvalidModelSpec(f"expected at least {layers} entries", field=r.path("layer_types"))
        kinds = tuple(SLIDING if t == "sliding_attention" else FULL for t in types[:layers])
        other = r.raw("attention_other_setting")[1]
        sliding_heads = other.get("num_attention_heads", 0) if isinstance(other, dict) else 0
        dense = r.int("first_k_dense_replace", 0, lo=0, hi=layers) or 0
        kw.update(layer_kinds=kinds, qk_norm=True, head_gate=r.bool("use_head_wise_attn_gate"),
                  sliding_num_heads=sliding_heads if isinstance(sliding_heads, int) else 0,
                  intermediate_size=r.int("intermediate_size", required=True),
                  moe_layer_mask=tuple(i >= dense for i in range(layers)),
                  shared_expert_intermediate_size=(r.int("share_expert_dim", 0, lo=0) or 0)
                  * (r.int("n_shared_experts", 1, lo=0) or 0), score_correction_bias=r.bool("use_moe_router_bias"),
                  mtp_layers=r.int("num_nextn_predict_layers", 0, lo=0, hi=16) or 0, mtp_style="step")
    elif mt == "mimo_v2_flash":
        pattern = _flags(r, "hybrid_layer_pattern", layers) or [not (i == 0 or (i + 1) % 6 == 0) for i in range(layers)]
        moe = _flags(r, "moe_layer_freq", layers) or [True] * layers
        window = r.int("sliding_window_size", 0, lo=0) or kw["sliding_window"]
        kw.update(layer_kinds=tuple(SLIDING if x else FULL for x in pattern), moe_layer_mask=tuple(moe),
                  num_kv_heads=r.int("swa_num_key_value_heads", kv), global_kv_heads=kv, global_head_dim=d,
                  v_head_dim=r.int("v_head_dim", d), intermediate_size=r.int("intermediate_size", required=True),
                  sliding_window=window, sliding_sinks=r.bool("add_swa_attention_sink_bias"),
                  score_correction_bias=True, mtp_layers=3, mtp_style="mimo", mtp_shares_embeddings=True)
    else:  # minimax_m3
        moe = _flags(r, "moe_layer_freq", layers)
        if moe is None:
            dense = r.int("first_k_dense_replace", 0, lo=0, hi=layers) or 0
            moe = [i >= dense for i in range(layers)]
        sparse_cfg = r.raw("sparse_attention_config")[1]
        sparse = sparse_cfg.get("sparse_attention_freq") if isinstance(sparse_cfg, dict) else None
        if sparse is not None and (not isinstance(sparse, list) or len(sparse) < layers):
            raise InvalidModelSpec(f"expected {layers} entries", field="sparse_attention_config.sparse_attention_freq")
        mask = tuple(bool(x) for x in sparse[:layers]) if sparse else (False,) * layers
        idx_heads = sparse_cfg.get("sparse_num_index_heads", 4) if isinstance(sparse_cfg, dict) else 4
        idx_dim = sparse_cfg.get("sparse_index_dim", 128) if isinstance(sparse_cfg, dict) else 128
        kw.update(qk_norm=r.bool("use_qk_norm"), qk_norm_full=r.str("qk_norm_type", "per_head") == "per_layer",
                  moe_layer_mask=tuple(moe), score_correction_bias=r.bool("use_routing_bias"),
                  intermediate_size=r.int("dense_intermediate_size", None) or r.int("intermediate_size", required=True),
                  shared_expert_intermediate_size=r.int("shared_intermediate_size", 0, lo=0) or 0,
                  indexer_heads=idx_heads if any(mask) else 0, indexer_head_dim=idx_dim,
                  indexer_layer_mask=mask if any(mask) else ())
    return ModelSpec(**kw)


def _parse_dsv4(r: _Reader, name: str, arch: str, dtype: str, quant: str) -> ModelSpec:
    """DeepSeek-V4 (Flash, Pro): per-layer compress_ratios pick sliding-window-only (0), compressed sparse (4, with a
    lightning indexer) or heavily compressed (128) attention; MQA over one 512-d K=V head with q and output
    low-rank projections; hyper-connections (hc_mult streams); every layer MoE, the first num_hash_layers routed by a
    token table; one MTP layer (its compress ratio is the list's last entry)."""
    h = r.int("hidden_size", required=True)
    layers = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS)
    heads = r.int("num_attention_heads", required=True)
    mtp = r.int("num_nextn_predict_layers", 0, lo=0, hi=16) or 0
    ratios = r.list("compress_ratios")
    if ratios is None or len(ratios) < layers:
        raise InvalidModelSpec(f"expected one ratio per layer ({layers})", field=r.path("compress_ratios"))
    kinds = []
    for i, x in enumerate(ratios[:layers]):
        kind = {0: SLIDING, 4: CSA, 128: HCA}.get(x) if isinstance(x, int) and not isinstance(x, bool) else None
        if kind is None:
            raise InvalidModelSpec(f"compress ratio {_short(x)} is not modelled (0, 4 or 128)",
                                   field=f"{r.path('compress_ratios')}[{i}]")
        kinds.append(kind)
    d = r.int("head_dim", 512)
    og = r.int("o_groups", required=True)
    if heads * d % og:
        raise InvalidModelSpec(f"{heads} x {d} is not a multiple of {og} output groups", field=r.path("o_groups"))
    experts = r.int("n_routed_experts", required=True, hi=MAX_EXPERTS)
    width = r.int("moe_intermediate_size", required=True)
    return ModelSpec(
        name=name, hidden_size=h, num_layers=layers, num_heads=heads, num_kv_heads=1, head_dim=d, intermediate_size=width,
        vocab_size=r.int("vocab_size", required=True), architecture=arch, model_type="deepseek_v4",
        tie_embeddings=r.bool("tie_word_embeddings", False), layer_kinds=tuple(kinds),
        sliding_window=r.int("sliding_window", 128), q_lora_rank=r.int("q_lora_rank", required=True),
        qk_rope_head_dim=r.int("qk_rope_head_dim", 64), o_groups=og, o_lora_rank=r.int("o_lora_rank", required=True),
        hc_mult=r.int("hc_mult", 4), hash_layers=r.int("num_hash_layers", 0, lo=0, hi=layers) or 0,
        indexer_heads=r.int("index_n_heads", 64), indexer_head_dim=r.int("index_head_dim", 128),
        indexer_layer_mask=(False,) * layers,  # the indexer lives in the ratio-4 layers' attention (its own tensors)
        num_experts=experts, experts_per_token=r.int("num_experts_per_tok", required=True, hi=experts),
        moe_intermediate_size=width, shared_expert_intermediate_size=(r.int("n_shared_experts", 1, lo=0) or 0) * width,
        score_correction_bias=True, mtp_layers=mtp, mtp_shares_embeddings=True,
        max_position_embeddings=_context_length(r),
        torch_dtype=dtype or "bfloat16", quantization=quant)


def _parse_mamba2(r: _Reader, name: str, arch: str, dtype: str, quant: str) -> ModelSpec:
    h = r.int("hidden_size", required=True)
    layers = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS)
    f = _mamba2_fields(r, h, heads="num_heads", head_dim="head_dim", groups="n_groups", state="state_size",
                       conv="conv_kernel", expand="expand", conv_bias="use_conv_bias", proj_bias="use_bias")
    return ModelSpec(
        name=name, hidden_size=h, num_layers=layers, num_heads=1, num_kv_heads=1, head_dim=h, intermediate_size=0,
        vocab_size=r.int("vocab_size", required=True), architecture=arch, model_type="mamba2",
        tie_embeddings=r.bool("tie_word_embeddings", False), layer_kinds=(MAMBA,) * layers,
        layer_mlp=(NO_MLP,) * layers, norms_per_layer=1, torch_dtype=dtype or "bfloat16", quantization=quant, **f)


def _gemma4(r: _Reader, layers: int, kw: dict) -> None:
    """Gemma 4: sliding layers with head_dim and num_key_value_heads, full layers with global_head_dim and, when
    attention_k_eq_v, num_global_key_value_heads and no v_proj; a layer scalar; with enable_moe_block a MoE block
    beside every dense MLP. E2B/E4B: per-layer input embeddings (hidden_size_per_layer_input), the last
    num_kv_shared_layers layers reuse earlier layers' K/V (no cache of their own; their unused k/v weights stay in the
    checkpoint and are counted), with use_double_wide_mlp those layers' MLP is twice as wide."""
    ple = r.int("hidden_size_per_layer_input", 0, lo=0) or 0
    shared = r.int("num_kv_shared_layers", 0, lo=0, hi=layers) or 0
    if shared >= layers:
        raise InvalidModelSpec(f"{shared} KV-sharing layers leave no layer to share from",
                               field=r.path("num_kv_shared_layers"))
    if ple:
        kw.update(per_layer_input_dim=ple, per_layer_vocab=r.int("vocab_size_per_layer_input", kw["vocab_size"]))
    if shared:
        kw["kv_shared_layers"] = shared
        if r.bool("use_double_wide_mlp"):
            kw["layer_mlp"] = tuple(DENSE_WIDE if i >= layers - shared else DENSE for i in range(layers))
    k_eq_v = r.bool("attention_k_eq_v")
    kw.update(global_head_dim=r.int("global_head_dim", kw["head_dim"]), global_k_eq_v=k_eq_v, layer_scalar=True,
              global_kv_heads=r.int("num_global_key_value_heads", kw["num_kv_heads"]) if k_eq_v else kw["num_kv_heads"])
    if r.bool("enable_moe_block"):
        if shared:
            raise InvalidModelSpec("a MoE block together with KV sharing is not modelled", field=r.path("enable_moe_block"))
        experts = r.int("num_experts", required=True, hi=MAX_EXPERTS)
        width = r.int("moe_intermediate_size", 0, lo=0) or r.int("expert_intermediate_size", required=True)
        kw.update(num_experts=experts, experts_per_token=r.int("top_k_experts", required=True, hi=experts),
                  moe_intermediate_size=width, layer_mlp=(DENSE_MOE,) * layers)


def _llama4_vision_params(v: dict, text: dict) -> list[tuple[str, int]]:
    """Llama 4's vision encoder (transformers Llama4VisionModel): an unfold + linear patch embedding (no bias), a class
    embedding and a position table of (image/patch)^2 + 1 rows, pre/post LayerNorms, layers with biased q/k/v/o and
    fc1/fc2 and two LayerNorms; the pixel-shuffle adapter MLP (fc1: intermediate -> projector_input_dim, fc2:
    projector_input_dim -> projector_output_dim, no biases); the projector linear_1 (vision_output_dim -> text
    hidden, bias per multi_modal_projector_bias)."""
    r = _Reader(v, "vision_config.")
    h, inter = r.int("hidden_size", required=True), r.int("intermediate_size", required=True)
    layers, patch = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS), r.int("patch_size", required=True)
    ch, img = r.int("num_channels", 3), r.int("image_size", required=True)
    patches = (img // patch) ** 2 + 1
    tower = ch * patch * patch * h + h + patches * h + 2 * 2 * h
    tower += layers * (4 * (h * h + h) + (h * inter + inter) + (inter * h + h) + 2 * 2 * h)
    p_in, p_out = r.int("projector_input_dim", required=True), r.int("projector_output_dim", required=True)
    tower += inter * p_in + p_in * p_out
    text_h = _Reader(text, "text_config.").int("hidden_size", required=True)
    out = r.int("vision_output_dim", p_out)
    projector = out * text_h + (text_h if r.bool("multi_modal_projector_bias") else 0)
    return [("vision_tower", tower), ("multi_modal_projector", projector)]


def _gemma4_vision_params(v: dict, text: dict) -> list[tuple[str, int]]:
    """Gemma 4's vision tower: a linear patch embedder (3 x patch^2 -> h), two learned position tables (x and y),
    pre/post-normed layers (q/k/v/o without biases, q/k norms over one head, a gated MLP, 4 norms), the input
    standardisation (bias and scale over h); the projector embedding_projection maps h to the text width."""
    r = _Reader(v, "vision_config.")
    h, inter = r.int("hidden_size", required=True), r.int("intermediate_size", required=True)
    layers, patch = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS), r.int("patch_size", 16)
    heads = r.int("num_attention_heads", required=True)
    d = r.int("head_dim", h // heads)
    tower = 3 * patch * patch * h + 2 * r.int("position_embedding_size", 10240) * h
    tower += layers * (4 * h * heads * d + 2 * d + 3 * h * inter + 4 * h)
    if r.bool("standardize"):
        tower += 2 * h
    text_h = _Reader(text, "text_config.").int("hidden_size", required=True)
    # (use_clipped_linears adds four 0-dim clip bounds per linear; the Hub's counts leave them out, and so do we)
    return [("vision_tower", tower), ("multi_modal_projector", text_h * h)]


def _gemma4_audio_params(a: dict, text: dict) -> list[tuple[str, int]]:
    """Gemma 4 E-models' audio encoder (a Conformer; transformers Gemma4AudioModel, as read for this project): two
    stride-2 3x3 subsampling convs (channels from subsampling_conv_channels, each followed by a bias-free norm) over
    128 mel bins, an input projection to hidden, per layer two feed-forward blocks (hidden -> 4 hidden -> hidden, two
    norms each), attention q/k/v/post + a relative-position key projection + a per-dim scale, a light conv (linear
    start to 2 hidden, depthwise conv_kernel_size, linear end, two norms) and three norms; an output projection with
    bias to output_proj_dims; embed_audio projects that to the text width."""
    r = _Reader(a, "audio_config.")
    h, layers = r.int("hidden_size", 1024), r.int("num_hidden_layers", 12, hi=MAX_LAYERS)
    heads, k = r.int("num_attention_heads", 8), r.int("conv_kernel_size", 5)
    ch = r.list("subsampling_conv_channels") or [128, 32]
    if len(ch) != 2 or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in ch):
        raise InvalidModelSpec("expected two positive integers", field="audio_config.subsampling_conv_channels")
    mel = r.int("input_feat_size", 128)
    out = r.int("output_proj_dims", 1536)
    sub = 1 * ch[0] * 9 + ch[0] + ch[0] * ch[1] * 9 + ch[1] + h * (ch[1] * (mel // 4))
    per_layer = (2 * (2 * h * 4 * h + 2 * h) + 5 * h * h + h // heads
                 + (2 * h * h + h * k + h * h + 2 * h) + 3 * h)
    tower = sub + layers * per_layer + out * h + out
    text_h = _Reader(text, "text_config.").int("hidden_size", required=True)
    return [("audio_tower", tower), ("audio_projector", text_h * out)]


def _dsa(r: _Reader, mt: str, layers: int, kw: dict) -> None:
    """DeepSeek Sparse Attention: an indexer (wq_b from the q latent, wk, a LayerNorm with bias, weights_proj) in
    every layer, or, with GLM-5.2's index_topk_freq, only in the layers that compute their own top-k."""
    kw.update(indexer_heads=r.int("index_n_heads", required=True), indexer_head_dim=r.int("index_head_dim", 128))
    freq = r.int("index_topk_freq", 1)
    if freq > 1:
        offset = r.int("index_skip_topk_offset", 0, lo=0, hi=MAX_LAYERS) or 0
        kw["indexer_layer_mask"] = tuple(max(i - offset + 1, 0) % freq == 0 for i in range(layers))
    if mt == "glm_moe_dsa":
        kw["mtp_shares_embeddings"] = True  # GLM's NextN layer stores no copy of the embedding and head


def _kimi_linear(r: _Reader, layers: int, kw: dict) -> None:
    """Kimi Linear (vLLM kimi_linear.py): linear_attn_config lists the KDA layers and the full-attention (MLA, no
    RoPE applied but the rope slice still stored) layers, both 1-based; KDA heads of head_dim with a
    (heads x head_dim x head_dim) fp32 state and three short convs. The top-level head_dim is a legacy field."""
    lac = r.cfg.get("linear_attn_config")
    field = r.path("linear_attn_config")
    if not isinstance(lac, dict):
        raise InvalidModelSpec("expected an object with kda_layers, num_heads and head_dim", field=field)
    lr = _Reader(lac, field + ".")
    kda = lr.list("kda_layers")
    if kda is None:
        raise InvalidModelSpec("required field is missing", field=lr.path("kda_layers"))
    idx = set()
    for i, n in enumerate(kda):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= layers:
            raise InvalidModelSpec(f"expected a layer number in 1..{layers}, got {_short(n)}",
                                   field=f"{lr.path('kda_layers')}[{i}]")
        idx.add(n - 1)
    if r.int("kv_lora_rank") and len(idx) < layers:
        _mla(r, kw)
    elif len(idx) < layers:
        raise InvalidModelSpec("full-attention layers need MLA fields", field=r.path("kv_lora_rank"))
    heads, hd = lr.int("num_heads", required=True), lr.int("head_dim", required=True)
    full_gate = lr.bool("use_full_rank_gate")
    kw.update(layer_kinds=tuple(MAMBA if i in idx else MLA for i in range(layers)), ssm_variant=KDA,
              lin_k_heads=heads, lin_v_heads=heads, lin_k_dim=hd, lin_v_dim=hd,
              ssm_conv_kernel=lr.int("short_conv_kernel_size", 4), ssm_state_bytes=4,
              # Kimi-K3 (as its checkpoint's tensor table shows): full-rank g_proj gates in KDA and MLA layers,
              # A_log of head_dim values, attention residuals, experts in a latent width with a norm
              kda_full_rank_gate=full_gate, ssm_a_size=hd if full_gate else 0,
              mla_output_gate=r.bool("mla_use_output_gate"), attn_residuals=bool(r.int("attn_res_block_size", 0, lo=0)),
              moe_latent_size=r.int("routed_expert_hidden_size", 0, lo=0) or 0,
              moe_latent_norm=r.bool("latent_moe_use_norm"))


def _mla(r: _Reader, kw: dict) -> None:
    nope = r.int("qk_nope_head_dim", required=True)
    rope = r.int("qk_rope_head_dim", required=True)
    kw.update(q_lora_rank=r.int("q_lora_rank", 0, lo=0) or 0, kv_lora_rank=r.int("kv_lora_rank", required=True),
              qk_nope_head_dim=nope, qk_rope_head_dim=rope, head_dim=nope + rope,
              v_head_dim=r.int("v_head_dim", required=True), num_kv_heads=kw["num_heads"])


def _parse_mamba(r: _Reader, name: str, arch: str, mt: str, dtype: str, quant: str) -> ModelSpec:
    h = r.int("hidden_size", required=True)
    layers = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS)
    dt_rank = r.raw("time_step_rank")[1]
    if dt_rank in (None, "auto"):
        dt_rank = -(-h // 16)
    elif isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank <= 0:
        raise InvalidModelSpec(f"expected int or 'auto', got {_short(dt_rank)}", field=r.path("time_step_rank"))
    return ModelSpec(
        name=name, hidden_size=h, num_layers=layers, num_heads=1, num_kv_heads=1, head_dim=h,
        intermediate_size=0, vocab_size=r.int("vocab_size", required=True), architecture=arch, model_type=mt,
        tie_embeddings=r.bool("tie_word_embeddings", True), layer_kinds=(MAMBA,) * layers,
        layer_mlp=(NO_MLP,) * layers, norms_per_layer=1, ssm_state_size=r.int("state_size", 16), ssm_conv_kernel=r.int("conv_kernel", 4),
        ssm_expand=r.int("expand", 2), ssm_dt_rank=dt_rank, torch_dtype=dtype or "float32", quantization=quant)


def _qwen_vl_vision_params(v: dict) -> list[tuple[str, int]]:
    """Qwen3-VL / Qwen3.5 vision tower (transformers Qwen3VLVisionModel): Conv3d patch embedding with bias, learned
    position table, ``depth`` pre-LayerNorm blocks (qkv and proj with biases, fc1/fc2 MLP with biases), a patch merger
    (LayerNorm, fc1 over merge^2 x hidden, fc2 to the text width) and one more merger per deepstack index."""
    r = _Reader(v, "vision_config.")
    h, inter, depth = r.int("hidden_size", required=True), r.int("intermediate_size", required=True), \
        r.int("depth", required=True, hi=MAX_LAYERS)
    ch, patch, tps = r.int("in_channels", 3), r.int("patch_size", 16), r.int("temporal_patch_size", 2)
    out, merge = r.int("out_hidden_size", required=True), r.int("spatial_merge_size", 2)
    embed = ch * tps * patch * patch * h + h + r.int("num_position_embeddings", 2304) * h
    block = 2 * 2 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * inter + inter) + (inter * h + h)
    wide = h * merge * merge

    def merger(norm_width: int) -> int:
        return 2 * norm_width + (wide * wide + wide) + (wide * out + out)

    deep = r.list("deepstack_visual_indexes") or []
    tower = embed + depth * block
    return [("vision_tower", tower), ("multi_modal_projector", merger(h) + len(deep) * merger(wide))]


def _qwen2_vl_vision_params(v: dict, mt: str) -> list[tuple[str, int]]:
    """Qwen2-VL / Qwen2.5-VL vision tower (transformers modeling_qwen2_vl / modeling_qwen2_5_vl): a bias-free Conv3d
    patch embedding, ``depth`` blocks (qkv and proj with biases) and a patch merger (norm, Linear over merge^2 x width,
    Linear to the text width). Qwen2-VL: LayerNorms with bias, an fc1/fc2 MLP of ``embed_dim x mlp_ratio`` with
    biases, ``hidden_size`` being the merger's output. Qwen2.5-VL: RMSNorms, a gated MLP of ``intermediate_size``
    with biases, ``hidden_size`` the tower's width and ``out_hidden_size`` the merger's output."""
    r = _Reader(v, "vision_config.")
    v25 = mt == "qwen2_5_vl"
    d = r.int("hidden_size" if v25 else "embed_dim", required=True)
    out = r.int("out_hidden_size" if v25 else "hidden_size", required=True)
    depth = r.int("depth", required=True, hi=MAX_LAYERS)
    ch, patch, tps = r.int("in_chans", 3), r.int("patch_size", 14), r.int("temporal_patch_size", 2)
    merge = r.int("spatial_merge_size", 2)
    embed = ch * tps * patch * patch * d
    attn = (3 * d * d + 3 * d) + (d * d + d)
    if v25:
        inter = r.int("intermediate_size", required=True)
        block = 2 * d + attn + 2 * (d * inter + inter) + (inter * d + d)
        norm = d
    else:
        k, ratio = r.raw("mlp_ratio", 4)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 64:
            raise InvalidModelSpec(f"expected a positive number, got {_short(ratio)}", field=r.path(k))
        inter = int(d * ratio)
        block = 2 * 2 * d + attn + (d * inter + inter) + (inter * d + d)
        norm = 2 * d
    wide = d * merge * merge
    merger = norm + (wide * wide + wide) + (wide * out + out)
    return [("vision_tower", embed + depth * block), ("multi_modal_projector", merger)]


def _mllama_text_extras(text: dict, prefix: str, layers: list[int]) -> list[tuple[str, int]]:
    """Llama 3.2 Vision's text model beyond a Llama of the same sizes: each cross-attention layer (one of
    ``num_hidden_layers``, with Llama's tensor shapes) adds q/k RMSNorms over the head dim and two scalar gates, and
    the embedding has 8 more rows than the vocabulary (``vocab_size + 8``; the head keeps ``vocab_size``)."""
    r = _Reader(text, prefix)
    h, heads = r.int("hidden_size", required=True), r.int("num_attention_heads", required=True)
    head_dim = r.int("head_dim") or h // heads
    return [("cross_attention_norms_and_gates", len(set(layers)) * (2 * head_dim + 2)),
            ("embedding_extra_rows", 8 * h)]


def _mllama_cross_layers(r: _Reader) -> list[int]:
    """The cross-attention layer indices (transformers' MllamaTextConfig default where the config has none)."""
    r = _Reader(r.cfg, r.prefix, MODEL_TYPE_DEFAULTS["mllama_text_model"])
    layers = r.list("cross_attention_layers")
    if layers is None:
        raise InvalidModelSpec("expected a list of layer indices", field=r.path("cross_attention_layers"))
    n = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS)
    for i, x in enumerate(layers):
        if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < n:
            raise InvalidModelSpec(f"expected a layer index below {n}, got {_short(x)}",
                                   field=f"{r.path('cross_attention_layers')}[{i}]")
    return layers


def _mllama_vision_params(v: dict, text: dict) -> list[tuple[str, int]]:
    """Llama 3.2 Vision's tower (transformers MllamaVisionModel): a bias-free Conv2d patch embedding, a class
    embedding, a gated positional embedding with a per-aspect-ratio tile table, gated pre/post tile embeddings,
    LayerNorms with bias, ``num_hidden_layers`` local and ``num_global_layers`` gated global encoder layers
    (q/k/v/o without bias, fc1/fc2 with bias), and the projector from the concatenated intermediate outputs."""
    r = _Reader(v, "vision_config.", MODEL_TYPE_DEFAULTS["mllama_vision_model"])
    d, inter = r.int("hidden_size", required=True), r.int("intermediate_size", required=True)
    local, glob = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS), r.int("num_global_layers", 0, lo=0)
    ch, img, patch = r.int("num_channels", 3), r.int("image_size", required=True), r.int("patch_size", required=True)
    tiles = r.int("max_num_tiles", 4)
    ratios = r.list("supported_aspect_ratios") or []
    ids = len(ratios) + 1
    npatch = (img // patch) ** 2 + 1
    embed = ch * patch * patch * d + d + (1 + npatch * d + ids * tiles * npatch * d) + 2 * (ids * tiles * d + 1)
    layer = 4 * d * d + (d * inter + inter) + (inter * d + d) + 2 * 2 * d
    tower = embed + 2 * 2 * d + local * layer + (glob or 0) * (layer + 2)
    out = r.int("vision_output_dim", d * (1 + len(r.list("intermediate_layers_indices") or [])))
    text_h = _Reader(text, "text_config.").int("hidden_size", required=True)
    return [("vision_tower", tower), ("multi_modal_projector", out * text_h + text_h)]


def _deepseek_ocr_vision_params(cfg: dict) -> list[tuple[str, int]]:
    """DeepSeek-OCR's two encoders (the checkpoint's tensor table, gogongxt/python scripts/models/deepseek_ocr.md):
    a SAM ViT-B (16-px patches with bias, an (image / 16)^2 position table, pre-norm blocks with biased qkv / proj /
    MLP, relative-position tables of 2 x 14 - 1 rows in the 14-token windowed blocks and 2 x (image / 16) - 1 in the
    global ones, a 256-channel neck and two stride-2 convs to downsample_channels) and a CLIP-L/14 at 224 px (class
    and position embeddings, pre-LayerNorm, biased fused qkv); a linear projector with bias, the image_newline and
    view_seperator vectors. Other DeepSeek-VL2 towers are refused by name."""
    v = cfg.get("vision_config")
    w = v.get("width") if isinstance(v, dict) else None
    if not isinstance(w, dict) or set(w) != {"sam_vit_b", "clip-l-14-224"}:
        raise InvalidModelSpec("only DeepSeek-OCR's sam_vit_b + clip-l-14-224 encoders are modelled",
                               field="vision_config.width")
    for part in ("sam_vit_b", "clip-l-14-224"):
        if not isinstance(w[part], dict):
            raise InvalidModelSpec("expected an object", field=f"vision_config.width.{part}")
    sam, clip = _Reader(w["sam_vit_b"], "vision_config.width.sam_vit_b."), \
        _Reader(w["clip-l-14-224"], "vision_config.width.clip-l-14-224.")
    img = _Reader(v, "vision_config.").int("image_size", 1024)
    h, n, heads = sam.int("width", required=True), sam.int("layers", required=True, hi=MAX_LAYERS), \
        sam.int("heads", required=True)
    glob = sam.list("global_attn_indexes") or []
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i in glob):
        raise InvalidModelSpec(f"expected layer numbers in 0..{n - 1}",
                               field="vision_config.width.sam_vit_b.global_attn_indexes")
    grid, hd, window = img // 16, h // heads, 14
    sam_p = 3 * 16 * 16 * h + h + grid * grid * h
    sam_p += n * (4 * h + (3 * h * h + 3 * h) + (h * h + h) + 2 * 4 * h * h + 4 * h + h)
    sam_p += 2 * hd * (len(glob) * (2 * grid - 1) + (n - len(glob)) * (2 * window - 1))
    down = sam.list("downsample_channels") or [512, 1024]
    if len(down) != 2 or not all(isinstance(c, int) and not isinstance(c, bool) and 0 < c < MAX_DIM for c in down):
        raise InvalidModelSpec("expected two channel counts", field="vision_config.width.sam_vit_b.downsample_channels")
    sam_p += 256 * h + 2 * 256 + 256 * 256 * 9 + 2 * 256 + down[0] * 256 * 9 + down[1] * down[0] * 9
    c, cl, cp, ci = clip.int("width", required=True), clip.int("layers", required=True, hi=MAX_LAYERS), \
        clip.int("patch_size", 14), clip.int("image_size", 224)
    clip_p = c + 3 * cp * cp * c + ((ci // cp) ** 2 + 1) * c + 2 * c
    clip_p += cl * (4 * c + (3 * c * c + 3 * c) + (c * c + c) + (4 * c * c + 4 * c) + (4 * c * c + c))
    if not isinstance(cfg.get("projector_config"), dict):
        raise InvalidModelSpec("expected an object with input_dim and n_embed", field="projector_config")
    pr = _Reader(cfg["projector_config"], "projector_config.")
    n_embed = pr.int("n_embed", required=True)
    projector = pr.int("input_dim", required=True) * n_embed + n_embed + 2 * n_embed
    return [("vision_tower", sam_p + clip_p), ("multi_modal_projector", projector)]


def _glm4v_vision_params(v: dict) -> list[tuple[str, int]]:
    """GLM-4.5V's vision tower (the checkpoint's tensor table, gogongxt/python scripts/models/glm_4.5v.md): a Conv3d
    patch embedding with bias, a learned (image_size / patch)^2 position table, ``depth`` blocks of two RMSNorms,
    bias-free qkv and proj and a gated MLP of out_hidden_size, two RMSNorms, a Conv2d merge-downsample to
    out_hidden_size with bias; the merger: a projection, a LayerNorm with bias, a gated MLP of intermediate_size."""
    r = _Reader(v, "vision_config.")
    h, depth, out = r.int("hidden_size", required=True), r.int("depth", required=True, hi=MAX_LAYERS), \
        r.int("out_hidden_size", required=True)
    inter, patch, tps = r.int("intermediate_size", required=True), r.int("patch_size", 14), \
        r.int("temporal_patch_size", 2)
    ch, merge, img = r.int("in_channels", 3), r.int("spatial_merge_size", 2), r.int("image_size", 336)
    bias = 1 if r.bool("attention_bias") else 0
    block = 2 * h + (3 * h * h + bias * 3 * h) + (h * h + bias * h) + 3 * out * h
    tower = ch * tps * patch * patch * h + h + (img // patch) ** 2 * h + depth * block + 2 * h
    tower += out * h * merge * merge + out
    merger = out * out + 2 * out + 3 * inter * out
    return [("vision_tower", tower), ("multi_modal_projector", merger)]


def _minimax_m3_vision_params(cfg: dict, text: dict) -> list[tuple[str, int]]:
    """MiniMax-M3's vision tower (minimax_m3_vl; the checkpoint's tensor table in gogongxt/python scripts/models/
    minimax_m3.md): a CLIP-style ViT with rotary positions (no position table): a bias-free Conv3d patch embedding
    over temporal_patch_size frames, a pre-LayerNorm, ``num_hidden_layers`` blocks (q/k/v/out and fc1/fc2 with biases,
    two LayerNorms with biases); a projector (hidden -> projector_hidden_size -> text width, biased) and a patch-merge
    MLP (merge^2 x text width -> text width -> text width, biased)."""
    v = cfg["vision_config"]
    r = _Reader(v, "vision_config.")
    h, inter = r.int("hidden_size", required=True), r.int("intermediate_size", required=True)
    layers, patch, ch = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS), r.int("patch_size", 14), \
        r.int("num_channels", 3)
    comp = v.get("img_token_compression_config") if isinstance(v.get("img_token_compression_config"), dict) else {}
    cr = _Reader(comp, "vision_config.img_token_compression_config.")
    tps, merge = cr.int("temporal_patch_size", 2), cr.int("spatial_merge_size", 2)
    out = _Reader(text, "text_config.").int("hidden_size", required=True)
    proj = _Reader(cfg).int("projector_hidden_size", out)
    tower = ch * tps * patch * patch * h + 2 * h + layers * (4 * (h * h + h) + 4 * h + 2 * h * inter + inter + h)
    wide = out * merge * merge
    projector = (h * proj + proj) + (proj * out + out) + (wide * out + out) + (out * out + out)
    return [("vision_tower", tower), ("multi_modal_projector", projector)]


def _mimo_vision_params(v: dict) -> list[tuple[str, int]]:
    """MiMo-V2.5's vision tower (vision_model_type mimovl; tensor table of the checkpoint in gogongxt/python
    scripts/models/mimo_v2.5.md): a bias-free Conv3d patch embedding, ``depth`` blocks of two RMSNorms, fused qkv with
    bias (num_heads query and num_key_value_heads K/V heads of head_dim 64), an output projection with bias, a gated
    MLP with biases, one sink logit per head in the windowed blocks (vit_window_attn_types != -1); a merger of an
    RMSNorm and two bias-free linears (merge^2 x hidden -> same -> out_hidden_size)."""
    r = _Reader(v, "vision_config.")
    h, inter, depth = r.int("hidden_size", required=True), r.int("intermediate_size", required=True), \
        r.int("depth", required=True, hi=MAX_LAYERS)
    heads, kvh, hd = r.int("num_heads", required=True), r.int("num_key_value_heads", 8), r.int("head_dim", 64)
    ch, patch, tps = r.int("in_chans", 3), r.int("patch_size", 16), r.int("temporal_patch_size", 2)
    out, merge = r.int("out_hidden_size", required=True), r.int("spatial_merge_size", 2)
    qkv = (heads + 2 * kvh) * hd
    block = 2 * h + (qkv * h + qkv) + (h * heads * hd + h) + 2 * (inter * h + inter) + (h * inter + h)
    types = r.list("vit_window_attn_types") or []
    sinks = heads * sum(1 for t in types if t != -1) if r.bool("use_sink") else 0
    wide = h * merge * merge
    tower = ch * tps * patch * patch * h + depth * block + sinks
    return [("vision_tower", tower), ("multi_modal_projector", h + wide * wide + out * wide)]


def _mimo_audio_params(a: dict) -> list[tuple[str, int]]:
    """MiMo-V2.5's audio encoder (same tensor table): audio_channels speech embedding tables (speech_vocab_size x
    input_local_dim), an input_local_layers transformer (q/k/v with bias, o, gated MLP, two norms per layer, a final
    norm) and a two-layer bias-free projection from group_size x dim through 4 x out_hidden_size to out_hidden_size."""
    r = _Reader(a, "audio_config.")
    d, inter = r.int("input_local_dim", 1024), r.int("input_local_intermediate_size", 4096)
    layers, group = r.int("input_local_layers", 6, hi=MAX_LAYERS), r.int("group_size", 4)
    out, channels = r.int("out_hidden_size", required=True), r.int("audio_channels", 20)
    vocab = a.get("speech_vocab_size", 1280)
    try:  # written as a string ("1280") in the released config
        vocab = int(vocab)
    except (TypeError, ValueError):
        raise InvalidModelSpec(f"expected a whole number, got {_short(vocab)}", field="audio_config.speech_vocab_size")
    if not 0 < vocab <= MAX_DIM:
        raise InvalidModelSpec(f"value {vocab} is out of range [1, {MAX_DIM}]", field="audio_config.speech_vocab_size")
    local = layers * (4 * d * d + 3 * d + 3 * d * inter + 2 * d) + d
    projection = group * d * 4 * out + 4 * out * out
    return [("audio_tower", channels * vocab * d + local), ("audio_projector", projection)]


def _moonvit_k3_params(v: dict) -> list[tuple[str, int]]:
    """Kimi-K3's MoonViT (the checkpoint's tensor table, gogongxt/python scripts/models/kimi_k3.md): no biases
    (attn_bias / linear_bias false), RMSNorms, fused wqkv of 3 x qkv_hidden_size, wo back to the hidden size, a
    2-layer MLP, a final norm, a bias-free patch projection and an init_pos_emb_height x width position table; the
    projector is a norm over the text width and two linears (merge^2 x mm_hidden -> same -> text width)."""
    r = _Reader(v, "vision_config.")
    h, inter = r.int("vt_hidden_size", required=True), r.int("vt_intermediate_size", required=True)
    layers, patch = r.int("vt_num_hidden_layers", required=True, hi=MAX_LAYERS), r.int("patch_size", 14)
    qkv = r.int("qkv_hidden_size", h)
    bias = r.bool("attn_bias", True) or r.bool("linear_bias", True)
    pos = r.int("init_pos_emb_height", 64) * r.int("init_pos_emb_width", 64)
    block = 2 * h + (3 * qkv * h + qkv * h) + 2 * h * inter + ((3 * qkv + h + inter + h) if bias else 0)
    tower = 3 * patch * patch * h + layers * block + h + pos * h
    merge = r.list("merge_kernel_size") or [2, 2]
    if len(merge) != 2 or not all(isinstance(m, int) and not isinstance(m, bool) and 0 < m < 64 for m in merge):
        raise InvalidModelSpec("expected two small positive integers", field="vision_config.merge_kernel_size")
    wide = r.int("mm_hidden_size", h) * int(merge[0]) * int(merge[1])
    out = r.int("text_hidden_size", required=True)
    return [("vision_tower", tower), ("multi_modal_projector", out + wide * wide + out * wide)]


def _moonvit_params(v: dict) -> list[tuple[str, int]]:
    """Kimi-K2.5's MoonViT (vt_* fields): a SigLIP-so400m-shaped ViT (biased qkv/proj/fc, LayerNorms) with a learned
    init_pos_emb_height x width position table, and a patch-merger projector (LayerNorm, merge^2 x mm_hidden ->
    same, -> text width). Counted with that layout: approximate, no published count checked."""
    r = _Reader(v, "vision_config.")
    h, inter = r.int("vt_hidden_size", required=True), r.int("vt_intermediate_size", required=True)
    layers, patch = r.int("vt_num_hidden_layers", required=True, hi=MAX_LAYERS), r.int("patch_size", 14)
    pos = r.int("init_pos_emb_height", 64) * r.int("init_pos_emb_width", 64)
    tower = 3 * patch * patch * h + h + pos * h
    tower += layers * (4 * (h * h + h) + 2 * 2 * h + (h * inter + inter) + (inter * h + h)) + 2 * h
    merge = r.list("merge_kernel_size") or [2, 2]
    if len(merge) != 2 or not all(isinstance(m, int) and not isinstance(m, bool) and 0 < m < 64 for m in merge):
        raise InvalidModelSpec("expected two small positive integers", field="vision_config.merge_kernel_size")
    mm = r.int("mm_hidden_size", h)
    wide = mm * int(merge[0]) * int(merge[1])
    out = r.int("text_hidden_size", required=True)
    projector = 2 * mm + (wide * wide + wide) + (wide * out + out)
    return [("vision_tower", tower), ("multi_modal_projector", projector)]


def _vision_params(cfg: dict, text: dict) -> list[tuple[str, int]]:
    """A SigLIP/CLIP-style vision tower plus the projector into the text model (Gemma 3 layout)."""
    v = cfg["vision_config"]
    if v.get("model_type") is not None and not isinstance(v.get("model_type"), str):
        raise InvalidModelSpec(f"expected string, got {type(v.get('model_type')).__name__}",
                               field="vision_config.model_type")
    if cfg.get("model_type") == "minimax_m3_vl":
        return _minimax_m3_vision_params(cfg, text)
    if v.get("model_type") == "glm4v_moe" or cfg.get("model_type") == "glm4v_moe":
        return _glm4v_vision_params(v)
    if "depth" in v and "temporal_patch_size" in v:
        return _qwen_vl_vision_params(v)
    if "vt_hidden_size" in v:
        return _moonvit_k3_params(v) if "qkv_hidden_size" in v else _moonvit_params(v)
    if v.get("model_type") == "gemma4_vision":
        return _gemma4_vision_params(v, text)
    if v.get("model_type") == "llama4_vision_model":
        return _llama4_vision_params(v, text)
    if v.get("model_type") == "mllama_vision_model" or cfg.get("model_type") == "mllama":
        return _mllama_vision_params(v, text)
    vt = v.get("model_type") or "siglip_vision_model"
    if vt not in MODEL_TYPE_DEFAULTS and not all(k in v for k in ("hidden_size", "intermediate_size",
                                                                  "num_hidden_layers", "patch_size")):
        raise InvalidModelSpec(f"vision tower layout {vt!r} is not modelled", field="vision_config.model_type")
    r = _Reader(v, "vision_config.", MODEL_TYPE_DEFAULTS.get(vt, MODEL_TYPE_DEFAULTS["siglip_vision_model"]))
    h = r.int("hidden_size", required=True)
    inter = r.int("intermediate_size", required=True)
    layers = r.int("num_hidden_layers", required=True, hi=MAX_LAYERS)
    ch, img, patch = r.int("num_channels", 3), r.int("image_size", required=True), r.int("patch_size", required=True)
    patches = (img // patch) ** 2
    embed = ch * patch * patch * h + h + patches * h
    per_layer = 4 * (h * h + h) + 2 * 2 * h + (h * inter + inter) + (inter * h + h)
    tower = embed + layers * per_layer + 2 * h
    if r.bool("vision_use_head", False):
        tower += h + 4 * (h * h + h) + 2 * h + (h * inter + inter) + (inter * h + h)  # attention-pool head
    text_h = _Reader(text, "text_config.", MODEL_TYPE_DEFAULTS.get(text.get("model_type", ""), {})).int(
        "hidden_size", required=True)
    projector = h * text_h + h  # Gemma 3: mm_input_projection_weight + mm_soft_emb_norm
    return [("vision_tower", tower), ("multi_modal_projector", projector)]


def parse_config_text(text: str | bytes, name: str = "model") -> ModelSpec:
    """Parse config.json text; a file that is not JSON gets one clear line."""
    try:
        cfg = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidModelSpec(f"config is not valid JSON ({exc})") from None
    return parse_config(cfg, name)
