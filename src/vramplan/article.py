"""The widely copied Llama 3.1 memory article's tables, reproduced exactly and corrected (formulas.md section 8).

The article (shared/reference/llama-3.1-memory-article.txt) gives weights in decimal GB from nominal parameter
counts, a KV-cache table whose "GB" are GiB, whose "1k" is 1,024 tokens but "16k" and "128k" are 16,000 and 128,000
tokens, and whose 405B row assumes 16 KV heads (Meta's original bf16-mp16 checkpoint) where the released
config.json has 8.
"""

from __future__ import annotations

ARTICLE_MODELS = ("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b")
ARTICLE_WEIGHTS_GB = {  # model -> FP16, FP8, INT4 (decimal GB, as printed)
    "llama-3.1-8b": (16, 8, 4), "llama-3.1-70b": (140, 70, 35), "llama-3.1-405b": (810, 405, 203)}
ARTICLE_KV_GB = {  # model -> 1k, 16k, 128k tokens (printed "GB"; they are GiB)
    "llama-3.1-8b": (0.125, 1.95, 15.62), "llama-3.1-70b": (0.313, 4.88, 39.06),
    "llama-3.1-405b": (0.984, 15.38, 123.05)}
ARTICLE_KV_TOKENS = (1024, 16000, 128000)  # the only reading under which the printed figures are consistent
NOMINAL_PARAMS = {"llama-3.1-8b": 8e9, "llama-3.1-70b": 70e9, "llama-3.1-405b": 405e9}
WEIGHT_FORMATS = (("FP16", "bf16"), ("FP8", "fp8"), ("INT4", "awq"))


def weights_table(models=ARTICLE_MODELS) -> list[dict]:
    from .api import load_model, model_weight_bytes
    from .catalog.formats import get_format
    from .core.model import count_params

    rows = []
    for key in models:
        lm = load_model(key)
        params = count_params(lm.spec).total
        for label, fmt_name in WEIGHT_FORMATS:
            fmt = get_format(fmt_name)
            exact = model_weight_bytes(lm.spec, fmt).total_bytes
            naive = params * {"FP16": 2, "FP8": 1, "INT4": 0.5}[label]
            article = ARTICLE_WEIGHTS_GB.get(key, (None, None, None))[[w for w, _ in WEIGHT_FORMATS].index(label)]
            rows.append({"model": lm.name, "format": label, "format_used": fmt.label,
                         "article_GB": article, "params": params,
                         "params_x_bytes": int(naive), "exact_bytes": exact})
    return rows


def kv_table(models=ARTICLE_MODELS) -> list[dict]:
    from .api import load_model
    from .core.memory import kv_cache

    rows = []
    for key in models:
        lm = load_model(key)
        spec = lm.spec
        article = ARTICLE_KV_GB.get(key)
        for i, tokens in enumerate(ARTICLE_KV_TOKENS):
            exact = kv_cache(spec, tokens, 1, "fp16").total_bytes
            row = {"model": lm.name, "tokens": tokens, "num_kv_heads": spec.num_kv_heads,
                   "article_value": article[i] if article else None, "exact_bytes": exact}
            if key == "llama-3.1-405b":
                mp16 = spec._replace(num_kv_heads=16)
                row["mp16_bytes"] = kv_cache(mp16, tokens, 1, "fp16").total_bytes
            rows.append(row)
    return rows


FINDINGS = [
    "Weights: the article multiplies nominal sizes (8B, 70B, 405B) by bytes per parameter and prints decimal GB. "
    "The real parameter counts are 8,030,261,248 / 70,553,706,496 / 405,853,388,800, and quantized formats keep "
    "the embeddings and lm_head in 16-bit and add scales, so FP8 and INT4 checkpoints are larger than params/2 or "
    "params/4 (8B INT4: 5.73 GB, not 4).",
    "KV cache: the printed 'GB' are GiB; '1k' is 1,024 tokens but '16k' and '128k' are 16,000 and 128,000 tokens "
    "(16,384 / 131,072 would give 2.00 / 16.00 GiB for 8B).",
    "KV cache, 405B: the article's row (0.984 / 15.38 / 123.05) matches 16 KV heads, the duplicated heads of Meta's "
    "original bf16-mp16 checkpoint. The released config.json (what vLLM, transformers and llama.cpp load) has 8 KV "
    "heads: 0.49 / 7.69 / 61.52 GiB, half the article's figure.",
]
