"""vramplan table [MODEL...]: the Llama 3.1 article's tables side by side with exact values."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("models", nargs="*", help="catalog names (default: llama-3.1-8b llama-3.1-70b llama-3.1-405b)")


def run(args) -> dict:
    from .. import article

    models = tuple(args.models) or article.ARTICLE_MODELS
    out = {"weights": article.weights_table(models), "kv_cache": article.kv_table(models),
           "findings": list(article.FINDINGS), "units": "bytes; article_GB is decimal GB as printed, "
           "article_value for the KV table is the printed figure, which is GiB"}
    try:
        from ..training_api import article_training_rows
    except ModuleNotFoundError:
        article_training_rows = None
    if article_training_rows is not None:
        out["training"] = article_training_rows()
    return out


def render(r: dict, args) -> str:
    from ..render import table, title
    from ..units import GB_bytes, GiB_bytes

    lines = [title("Weights: article vs exact (decimal GB, as the article prints)")]
    rows = []
    for w in r["weights"]:
        rows.append([w["model"], w["format"], "-" if w["article_GB"] is None else f"{w['article_GB']} GB",
                     f"{w['params_x_bytes'] / GB_bytes:,.2f} GB", f"{w['exact_bytes'] / GB_bytes:,.2f} GB",
                     f"{w['exact_bytes'] / GiB_bytes:,.2f} GiB"])
    lines.append(table(rows, ["model", "format", "article", "params x bytes", "exact as stored", "exact"]))
    lines.append("  exact as stored: FP16 = bf16 checkpoint; FP8 = linears FP8 + per-tensor scale, embeddings and "
                 "lm_head 16-bit; INT4 = AWQ int4 g128 with fp16 scales, embeddings and lm_head 16-bit")
    lines.append(title("KV cache, FP16, batch 1: article vs exact (GiB)"))
    rows = []
    for k in r["kv_cache"]:
        mp16 = f"{k['mp16_bytes'] / GiB_bytes:,.3f} GiB" if "mp16_bytes" in k else ""
        rows.append([k["model"], f"{k['tokens']:,}", str(k["num_kv_heads"]),
                     "-" if k["article_value"] is None else f"{k['article_value']} \"GB\"",
                     f"{k['exact_bytes'] / GiB_bytes:,.3f} GiB", f"{k['exact_bytes'] / GB_bytes:,.3f} GB", mp16])
    lines.append(table(rows, ["model", "tokens", "KV heads", "article", "exact", "exact (decimal)",
                              "with 16 KV heads (mp16)"]))
    if r.get("training"):
        lines.append(title("Training: article vs exact"))
        rows = []
        for t in r["training"]:
            rows.append([str(t.get("model", "")), str(t.get("method", "")), str(t.get("article", "")),
                         str(t.get("exact", "")), str(t.get("assumption", ""))[:70]])
        lines.append(table(rows, ["model", "method", "article", "exact", "what gives the article's number"]))
    lines.append(title("Where the article is wrong"))
    lines += [f"- {f}" for f in r["findings"]]
    lines.append("\n(1 GiB = 2^30 bytes, 1 GB = 10^9 bytes)")
    return "\n".join(lines)
