"""PEFT methods beyond LoRA, DoRA, IA3, prompt and LN tuning: what each trains and what it adds to training memory.

Every figure is read from PEFT's code (huggingface/peft, ``src/peft/tuners/<method>/layer.py`` unless stated; checked
at commit 5d602fdb, Aug 2026, which is PEFT 0.20.x) and rests on three facts about PyTorch autograd:

1. An op keeps an input for backward only when a gradient that needs it is computed: ``F.linear(x, W)`` keeps ``x``
   when ``W`` requires grad and ``W`` when ``x`` does. A frozen weight or buffer costs nothing; a weight built in the
   forward from trainable tensors (a delta weight, a rotation) is kept whole, once per adapted module and layer.
2. ``x.to(dtype)`` makes a new tensor when the dtype changes. PEFT keeps adapters in fp32
   (``autocast_adapter_dtype=True``, which also casts the BufferDict buffers), so a method that casts its bf16 input
   to fp32 and keeps it keeps its own copy per module; without a cast it keeps the layer input itself, shared by all
   the modules that read it (counted once).
3. Tensors made and dropped inside one module (an inverse FFT's complex buffer, a Kronecker product before scaling,
   the CPU permutation BOFT copies over) are freed before the loss, whose fp32 working set (10-12 bytes x vocabulary
   per token) is far larger, so they never set the peak and are not counted.

Names: I = in_features, O = out_features of the adapted module, r = rank, c = bytes of the adapter compute dtype (4
with fp32 adapters; the base dtype under torch autocast), a = bytes of the base (activation) dtype, x = bytes of the
module input. ``token`` = bytes kept per token of the micro-batch; ``fixed`` = bytes kept per adapted module and layer
whatever the batch (weight-shaped tensors). Each method's formulas are in its ``FORMULAS`` entry, with the code path.

Methods without a module (prompt-like): prefix tuning prepends trainable key/value positions in every layer, P-tuning
prepends encoder-made virtual tokens, adaption prompt adds a gated attention over its own tokens in the top layers,
trainable tokens rebuilds the (tied) embedding matrix.

Beside the optimizer: AdaLoRA's RankAllocator keeps three importance tensors per trainable value; VeRA, PVeRA,
RandLoRA, TinyLoRA, DeLoRA, SHiRA and UniLoRA keep frozen buffers (projections, norms, indices) on the GPU; LoRA-FA
keeps lora_A frozen unless something sets requires_grad back (PEFT >= 0.19's ``disable_adapter()`` calls
``set_adapter``, which does), and then A gets gradients (not optimizer state) and its fp32 input is kept again.

Not modelled (their mechanisms were not derived): OSF (weights rebuilt from SVD factors whose residency and dtype the
code alone does not settle), PSOFT, AdaMSS, FRoD (offloads base weights to the CPU, sparse cores), and dropout > 0 in
any method (the masks it keeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from .model import ModelSpec, layer_groups

DEFAULT_TARGETS = ("q_proj", "v_proj")
"""PEFT's default target modules for Llama-style models for these methods (utils/constants.py
TRANSFORMERS_MODELS_TO_<METHOD>_TARGET_MODULES_MAPPING["llama"]); BEFT's is v_proj."""

# method -> the PEFT config fields that change its memory, with PEFT's defaults (tuners/<method>/config.py). Not config
# fields: LoRA-FA's lora_A_requires_grad (the state of lora_A during training, see FORMULAS) and trainable_tokens'
# token_indices, which may be given as the number of tokens. prefix_tuning/p_tuning encoder_hidden_size 0 = hidden size;
# adaption_prompt adapter_layers 0 = every layer (PEFT requires both adaption_prompt fields: 10 is the LLaMA-Adapter
# paper's prompt length, Zhang et al. 2023, arXiv:2303.16199); num_virtual_tokens (required by PEFT) defaults to 20
# like vramplan's prompt tuning.
DEFAULTS: dict[str, dict[str, object]] = {
    "vera": {"r": 256},
    "pvera": {"r": 256},
    "fourierft": {"n_frequency": 1000},
    "waveft": {"n_frequency": 2592, "wavelet_family": "db1", "use_idwt": True},
    "oft": {"r": 0, "oft_block_size": 32, "use_cayley_neumann": True, "num_cayley_neumann_terms": 5,
            "block_share": False},
    "boft": {"boft_block_size": 4, "boft_block_num": 0, "boft_n_butterfly_factor": 1},
    "loha": {"r": 8},
    "lokr": {"r": 8, "decompose_factor": -1, "decompose_both": False},
    "miss": {"r": 64, "mini_r": 1, "init_weights": "true"},
    "adalora": {"init_r": 12},
    "vblora": {"r": 4, "num_vectors": 256, "vector_length": 256, "topk": 2},
    "randlora": {"r": 32},
    "c3a": {"block_size": 256},
    "delora": {"r": 8},
    "hira": {"r": 32},
    "road": {"variant": "road_1", "group_size": 64},
    "shira": {"r": 32},
    "tinylora": {"r": 2, "u": 64, "weight_tying": 0.0},
    "peanut": {"r": 32, "depth": 0},
    "gralora": {"r": 32, "gralora_k": 2, "hybrid_r": 0},
    "beft": {},
    "glora": {"r": 8, "config_A_B": "lora", "config_C": "lora", "config_D_E": "constant"},
    "unilora": {"r": 4, "theta_d_length": 256},
    "lily": {"r": 32, "stride_A": 1, "num_B": 2},
    "deft": {"r": 8, "para": False},
    "lora-fa": {"lora_A_requires_grad": False},
    "mica": {},
    "bdlora": {"nblocks": 2, "target_modules_bd_a": (), "target_modules_bd_b": ()},
    "prefix_tuning": {"num_virtual_tokens": 20, "prefix_projection": False, "encoder_hidden_size": 0},
    "p_tuning": {"num_virtual_tokens": 20, "encoder_reparameterization_type": "MLP", "encoder_hidden_size": 0,
                 "encoder_num_layers": 2},
    "adaption_prompt": {"adapter_len": 10, "adapter_layers": 0},
    "trainable_tokens": {"token_indices": 1},
}
CHOICES: dict[str, tuple[str, ...]] = {
    "init_weights": ("true", "bat", "mini"), "variant": ("road_1", "road_2", "road_4"),
    "config_A_B": ("lora", "vector", "constant", "none"), "config_C": ("lora", "vector", "none"),
    "config_D_E": ("vector", "constant", "none"), "encoder_reparameterization_type": ("MLP", "LSTM"),
}
ALIASES = {"bone": "miss", "lorafa": "lora-fa", "lora_fa": "lora-fa", "lora-mica": "mica", "bd-lora": "bdlora",
           "prefix": "prefix_tuning", "prefix-tuning": "prefix_tuning", "ptuning": "p_tuning", "p-tuning": "p_tuning",
           "adaption-prompt": "adaption_prompt", "llama-adapter": "adaption_prompt",
           "trainable-tokens": "trainable_tokens"}
PROMPT_METHODS = ("prefix_tuning", "p_tuning", "adaption_prompt", "trainable_tokens")
LORA_LIKE = ("lora-fa", "mica", "bdlora")
"""LoRA variants: rank and targets come from lora_rank / lora_targets, like LoRA."""
MODULE_METHODS = tuple(k for k in DEFAULTS if k not in PROMPT_METHODS)
METHODS = tuple(DEFAULTS)

FORMULAS: dict[str, tuple[str, str, str, str]] = {
    # method: (trainable per module, kept per token, kept per module (fixed), code path)
    "vera": ("O + r (+ shared frozen A: r x max I, B: max O x r)", "c(r + O)", "0",
             "vera/layer.py Linear.forward: lambda_d * F.linear(x, A) keeps the r-wide projection, lambda_b * "
             "F.linear(., B) keeps the O-wide one; the frozen A, B keep nothing of x"),
    "pvera": ("O + 2r (+ shared frozen A: 2r x max I, B: max O x r)", "c(4r + O)", "0",
              "pvera/layer.py: lambda_d * F.linear(x, A) keeps 2r, exp(logvar/2) keeps r, eps * std keeps eps "
              "(r), lambda_b * F.linear(., B) keeps O"),
    "fourierft": ("n_frequency", "cI (own fp32 copy of x)", "cOI (the ifft2 delta weight)",
                  "fourierft/layer.py get_delta_weight + F.linear(x, delta_w)"),
    "waveft": ("n_frequency", "cI", "c(O'I' + OI), O'xI' the padded coefficient grid (db1: OxI)",
               "waveft/layer.py get_delta_weight: waverec2d's conv_transpose2d keeps the stacked sub-bands, "
               "F.linear keeps the delta weight"),
    "oft": ("R x b(b-1)/2, R = I/b blocks", "cI (x in fp32, kept by the block einsum)",
            "c R b^2 (k), k = terms - 1 Cayley-Neumann tensors (Q, Q^2, Q^3, R for 5 terms)",
            "oft/layer.py OFTRotationModule.forward/_cayley_batch"),
    "boft": ("(m+1) nb b^2 + O", "shared input (x @ R) + aO (result * scale)",
             "a I^2 x 3 (permutation copy, identity, rotation; m = 0)",
             "boft/layer.py Linear.forward: boft_P.to(x), butterfly_oft_mat @ eye, x @ boft_rotation"),
    "loha": ("2r(I + O)", "cI", "cOI (Hadamard delta weight)", "loha/layer.py _get_delta_activations"),
    "lokr": ("w1 (a x c) + w2 or its r-factors", "cI", "cOI (Kronecker delta weight)",
             "lokr/layer.py get_delta_weight/make_kron + F.linear"),
    "miss": ("rO (bat: O/r x r x r; mini: r x mini_r)", "cr (bat: cI)", "0 (bat: 2cOI; mini: crO)",
             "miss/layer.py forward: sum of r-blocks @ miss; bat rebuilds the weight (W @ B + B) in fp32"),
    "adalora": ("r(I + O) + r, r = init_r (+ 12 B/value of importance state)", "c(I + r)", "crI ((A*E).T)",
                "adalora/layer.py SVDLinear.forward; RankAllocator.update_ipt keeps ipt, exp_avg_ipt, exp_avg_unc"),
    "vblora": ("nv r (I + O) / vl (+ shared bank nv x vl)", "c(I + r)", "c r (I + O)(1 + topk)",
               "vblora/layer.py _get_lora_matrices (top-k mix of bank vectors) + two F.linear"),
    "randlora": ("r nb + nb min(I,O), nb = ceil(min/r)", "cI if I <= O else c nb r", "c r nb min(I,O)",
                 "randlora/layer.py get_scaled_bases (UniqueBaseGrad) + two F.linear"),
    "c3a": ("O/b x I/b x b (fp32)", "4I (fp32 x kept by BlockCircularConvolution)", "0", "c3a/layer.py, c3a/utils.py"),
    "delora": ("r(I + O) + 1", "c(I + 2r)", "0", "delora/layer.py forward: (x * w_norm) @ A.T, h * scaling, h @ B.T"),
    "hira": ("r(I + O)", "cI", "cOI (W * (A^T B^T)^T)", "hira/layer.py Linear.forward"),
    "road": ("2 x O/2 (road_1), 2 x O (road_2), 2 x 2O (road_4)", "2cO (result and its rotated half)", "0",
             "road/layer.py _apply_road"),
    "shira": ("r(I + O) sparse values", "shared input", "aOI (the rebuilt dense weight) + 8r(I + O) B indices",
              "shira/layer.py forward: F.linear(x, W.clone() + sparse delta)"),
    "tinylora": ("u per group of modules", "cr", "0 (+ frozen A, B, P buffers)", "tinylora/layer.py forward"),
    "peanut": ("2rO + 2 depth r^2", "cI", "2cOI (W^T in fp32, delta) + cIr(1 + 4 depth)",
               "peanut/layer.py _compute_delta_weight + matmul"),
    "gralora": ("r(I + O) (+ hybrid r_h(I + O))", "c(I + k r)", "0", "gralora/layer.py forward (two einsums)"),
    "beft": ("O (bias)", "0", "0", "beft/layer.py forward: result + bias"),
    "glora": ("A, B paths: 2r(I+O) (lora), 2O (vector), 2 (constant)", "shared input", "aOI (effective weight)",
              "glora/layer.py forward: F.linear(x, W + W*A + B)"),
    "unilora": ("theta_d_length (shared)", "c(I + r)", "cr(I + O) (A, B gathered)",
                "unilora/layer.py _get_lora_matrices + two F.linear"),
    "lily": ("A: r x I per block of stride_A layers; B: num_B r x O per module name; router num_B x r per layer",
             "c(I + r + num_B)", "crO (the router-mixed B)",
             "lily/layer.py Linear.forward: lily_A(x), router softmax, einsum over the B experts, matmul; "
             "lily/model.py shares A in blocks of stride_A layers and B across layers"),
    "deft": ("r(I + O) (PaRa: rO)", "c(O + r) (+ c(I + r) unless PaRa)", "0",
             "deft/layer.py Linear.forward: (x W^T in fp32) @ right keeps the fp32 base product; "
             "F.linear(x, R) keeps the fp32 input; both rank-wide products are kept by @ Q_P^T"),
    "lora-fa": ("rO (lora_B; lora_A frozen)", "cr (+ cI if lora_A still requires grad)", "0",
                "optimizers/lorafa.py create_lorafa_optimizer (lora_A.requires_grad_(False))"),
    "mica": ("rI (lora_A; lora_B frozen to the minor singular vectors)", "cI", "0",
             "lora/layer.py mica_init + variants.py MiCALinearVariant (lora_B registered frozen)"),
    "bdlora": ("LoRA with A (or B) block-diagonal: rI/n (or rO/n) for the named modules", "c(I + r)", "0",
               "lora/variants.py BlockDiagonalLinear.forward (block einsum keeps its input, as lora_A/B do)"),
    "prefix_tuning": ("vt x 2 L n_kv d", "key/value of vt more positions per sequence in every layer", "0",
                      "peft_model.py get_prompt: past_key_values -> DynamicCache, attention concatenates them"),
    "p_tuning": ("vt h + encoder (MLP: 3 linears; LSTM: 2 bidirectional layers + 2 linears)",
                 "as prompt tuning with vt virtual tokens", "0", "p_tuning/model.py PromptEncoder"),
    "adaption_prompt": ("K (L_a h + 1), in the base dtype",
                        "per adapted layer: a n_h d (recomputed Q) + n_h L_a (4 + 2a) (softmax, gated probs)", "0",
                        "adaption_prompt/layer.py AdaptedAttention.forward"),
    "trainable_tokens": ("T h", "a h (lm_head input, tied)", "a V h (merged embedding kept by lm_head, tied)",
                         "trainable_tokens/layer.py get_merged_weights (index_copy) + F.linear"),
}


@dataclass(frozen=True, slots=True)
class Dtypes:
    """Bytes per element: ``a`` base/activations, ``c`` adapter compute, ``x`` the module input."""

    a: int = 2
    c: int = 4
    x: int = 2


@dataclass(frozen=True, slots=True)
class Saved:
    """What one adapted module keeps for backward: bytes per token, bytes per module, whether it keeps its input."""

    token: int
    fixed: int = 0
    shares_input: bool = False
    label: str = ""


def canonical(method: str) -> str:
    m = str(method).strip().lower()
    return ALIASES.get(m, m)


def resolve_options(method: str, options) -> dict[str, object]:
    """PEFT config fields for ``method``: its defaults updated with ``options`` (validated, typed like the default).
    ``target_modules`` is accepted by every module method."""
    from ..errors import InvalidRequest, suggest

    method = canonical(method)
    out: dict[str, object] = dict(DEFAULTS[method])
    given = dict(options or ())
    targets = given.pop("target_modules", None)
    for key, value in given.items():
        if key not in out:
            allowed = list(out) + (["target_modules"] if method in MODULE_METHODS else [])
            hint = suggest(key, allowed)
            raise InvalidRequest(f"{method} has no option {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else
                                 f"; its options: {', '.join(allowed) or 'none'}"), field="peft_options")
        out[key] = _typed(key, value, out[key], method)
    # one of the two sizes of OFT/BOFT is derived from the other: naming one clears the other's default
    for a_key, b_key in (("r", "oft_block_size"), ("boft_block_num", "boft_block_size")):
        if method in ("oft", "boft") and a_key in given and b_key not in given and out[a_key]:
            out[b_key] = 0
    if targets is not None:
        if method not in MODULE_METHODS:
            raise InvalidRequest(f"{method} has no target modules", field="peft_options")
        out["target_modules"] = tuple(targets.split(",")) if isinstance(targets, str) else tuple(targets)
    return out


MAX_INT_OPTION = (1 << 31) - 1  # a rank, a count of frequencies or tokens beyond this is not a plan


def _typed(key: str, value, default, method: str):
    from ..errors import InvalidRequest

    if key == "token_indices" and isinstance(value, (list, tuple)):
        value = len(value)
    try:
        if isinstance(default, tuple):  # module names: "o_proj,down_proj" or a list
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            v = int(value)
            if v < (-1 if key == "decompose_factor" else 0) or v > MAX_INT_OPTION:
                raise ValueError
            return v
        if isinstance(default, float):
            v = float(value)
            if not 0.0 <= v <= 1.0:
                raise ValueError
            return v
        v = str(value).strip()
        v = v.lower() if key == "init_weights" else v
        choices = CHOICES.get(key)
        if choices and v not in choices:
            if key == "encoder_reparameterization_type" and v.upper() in choices:
                return v.upper()
            raise ValueError
        if key == "wavelet_family" and _wavelet_reduction(v) is None:
            raise ValueError
        return v
    except (TypeError, ValueError):
        what = {bool: "true or false", int: f"a whole number up to {MAX_INT_OPTION:,}",
                float: "a fraction between 0 and 1"}.get(
            type(default), "one of " + ", ".join(CHOICES.get(key, ("dbN", "symN"))))
        raise InvalidRequest(f"{method} option {key} must be {what}, got {value!r}", field="peft_options") from None


def _wavelet_reduction(family: str) -> int | None:
    """Rows/columns lost at reconstruction, per PEFT waveft/constants.py WAVELET_REDUCTIONS: 2(N - 1) for dbN, symN."""
    for prefix in ("db", "sym"):
        if family.startswith(prefix) and family[len(prefix):].isdecimal() and int(family[len(prefix):]) >= 1:
            return 2 * (int(family[len(prefix):]) - 1)
    return None


# ----- trainable tensors per module ------------------------------------------------------------------------------

def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """LoKr's split of a dimension into m <= n with m * n = dimension (peft lokr/layer.py ``factorization``): a
    positive factor dividing it is used as is; otherwise the divisor pair nearest the square root, m at most factor."""
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    if factor == -1:
        factor = dimension
    m, n = 1, dimension
    length = m + n
    while m < n:
        new_m = m + 1
        while dimension % new_m:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > length or new_m > factor:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def _oft_blocks(i: int, o: dict) -> tuple[int, int]:
    """(number of blocks R, block size b) as OFTLayer.update_layer picks them (adjusting to a divisor of I)."""
    r, b = int(o["r"]), int(o["oft_block_size"])
    if r == 0 and b != 0:
        b = _adjust(i, b)
        return i // b, b
    if r != 0 and b == 0:
        r = _adjust(i, r)
        return r, i // r
    from ..errors import InvalidRequest

    raise InvalidRequest("oft needs exactly one of r and oft_block_size non-zero", field="peft_options")


def _adjust(i: int, p: int) -> int:
    """OFTLayer.adjust_oft_parameters: the divisor of I nearest p."""
    if p >= i:
        return i
    hi = p
    while hi <= i and i % hi:
        hi += 1
    lo = p
    while lo > 1 and i % lo:
        lo -= 1
    return lo if (p - lo) <= (hi - p) else hi


def module_shapes(method: str, i: int, out: int, o: dict, has_bias: bool = False) -> list[tuple[int, ...]]:
    """Trainable tensors PEFT creates for one adapted module of shape (out, i) (``update_layer`` of each method)."""
    r = int(o.get("r", 0) or 0)
    if method == "vera":
        return [(out,), (r,)]
    if method == "pvera":
        return [(out,), (2 * r,)]
    if method in ("fourierft", "waveft"):
        return [(int(o["n_frequency"]),)]
    if method == "oft":
        blocks, b = _oft_blocks(i, o)
        return [(1 if o["block_share"] else blocks, b * (b - 1) // 2)]
    if method == "boft":
        b, nb = int(o["boft_block_size"]), int(o["boft_block_num"])
        if b == 0 and nb:
            b = i // nb
        nb = i // b
        return [(int(o["boft_n_butterfly_factor"]), nb, b, b), (out, 1)]
    if method in ("loha",):
        return [(out, r), (r, i), (out, r), (r, i)]
    if method == "lokr":
        f = int(o["decompose_factor"])
        in_m, in_n = factorization(i, f)
        out_l, out_k = factorization(out, f)
        shapes: list[tuple[int, ...]] = []
        if o["decompose_both"] and r < max(out_l, in_m) / 2:
            shapes += [(out_l, r), (r, in_m)]
        else:
            shapes.append((out_l, in_m))
        shapes += [(out_k, r), (r, in_n)] if r < max(out_k, in_n) / 2 else [(out_k, in_n)]
        return shapes
    if method == "miss":
        mode = o["init_weights"]
        if mode == "bat":
            return [(out // r, r, r)]
        return [(r, int(o["mini_r"]))] if mode == "mini" else [(r, out)]
    if method == "adalora":
        ir = int(o["init_r"])
        return [(ir, i), (out, ir), (ir, 1)]
    if method == "vblora":
        nv, vl = int(o["num_vectors"]), int(o["vector_length"])
        return [(r, i // vl, nv), (out // vl, r, nv)]
    if method == "randlora":
        nb = ceil(min(i, out) / r)
        return [(r, nb), (nb, min(i, out))]
    if method == "c3a":
        b = int(o["block_size"])
        return [(out // b, i // b, b)]
    if method == "delora":
        return [(r, i), (out, r), (1,)]
    if method == "hira":
        return [(r, i), (out, r)]
    if method == "road":
        size = {"road_1": out // 2, "road_2": out, "road_4": 2 * out}[str(o["variant"])]
        return [(size,), (size,)]
    if method == "shira":
        return [(r * (i + out),)]
    if method == "peanut":
        return [(r, out), (out, r)] + [(r, r)] * (2 * int(o["depth"]))
    if method == "gralora":
        k, hr = int(o["gralora_k"]), int(o["hybrid_r"])
        return [(k, i // k, r), (k, r, out // k)] + ([(hr, i), (out, hr)] if hr else [])
    if method == "beft":
        return [(out,)]
    if method == "glora":
        path = {"lora": [(out, r), (r, i)], "vector": [(out, 1)], "constant": [(1,)], "none": []}[
            str(o["config_A_B"])] * 2
        if has_bias:
            path += {"lora": [(i, r), (r, 1)], "vector": [(i, 1)], "none": []}[str(o["config_C"])]
            path += {"vector": [(out,)], "constant": [(1,)], "none": []}[str(o["config_D_E"])] * 2
        return path
    if method == "lora-fa":
        return [(out, r)]
    if method == "deft":
        return [(out, r)] + ([] if o["para"] else [(r, i)])
    if method == "mica":
        return [(r, i)]
    return []  # tinylora, unilora: shared vectors, added once per model


# ----- what a module keeps for backward --------------------------------------------------------------------------

def _copy(d: Dtypes, width: int) -> tuple[int, bool]:
    """The module's own cast copy of its input (c != x), or the shared input itself (no cast)."""
    return (d.c * width, False) if d.c != d.x else (0, True)


def module_saved(method: str, i: int, out: int, o: dict, d: Dtypes) -> Saved:
    """Bytes one adapted module keeps for backward (see ``FORMULAS`` for the code path of each)."""
    r = int(o.get("r", 0) or 0)
    c, a = d.c, d.a
    if method == "vera":
        return Saved(c * (r + out), label="r- and O-wide projections")
    if method == "pvera":
        return Saved(c * (4 * r + out), label="2r projection, std, noise, O-wide projection")
    if method in ("fourierft", "hira", "loha", "lokr"):
        tok, sh = _copy(d, i)
        return Saved(tok, c * out * i, sh, "fp32 input + materialized delta weight")
    if method == "waveft":
        tok, sh = _copy(d, i)
        grid = 0
        if o["use_idwt"]:
            red = _wavelet_reduction(str(o["wavelet_family"])) or 0
            grid = (out + red + (out + red) % 2) * (i + red + (i + red) % 2)
        return Saved(tok, c * (grid + out * i), sh, "fp32 input + wavelet grid + delta weight")
    if method == "oft":
        blocks, b = _oft_blocks(i, o)
        terms = int(o["num_cayley_neumann_terms"])
        k = (terms - 1 if terms >= 3 else 1) if o["use_cayley_neumann"] else 2
        fixed = c * b * b * (k + blocks) if o["block_share"] else c * blocks * b * b * k
        tok, sh = _copy(d, i)
        return Saved(tok, fixed, sh, "fp32 input + Cayley rotation blocks")
    if method == "boft":
        m = int(o["boft_n_butterfly_factor"]) - 1
        copies = 3 if m == 0 else 3 * m + 4
        return Saved(a * out, a * i * i * copies, True, "input + scaled output; I x I rotation tensors")
    if method == "miss":
        mode = o["init_weights"]
        if mode == "bat":
            tok, sh = _copy(d, i)
            return Saved(tok, 2 * c * out * i, sh, "fp32 input + rebuilt weight (W blocks, W')")
        return Saved(c * r, c * r * out if mode == "mini" else 0, label="r-wide block sum")
    if method == "adalora":
        ir = int(o["init_r"])
        tok, sh = _copy(d, i)
        return Saved(tok + c * ir, c * ir * i, sh, "fp32 input + rank intermediate")
    if method == "vblora":
        tok, sh = _copy(d, i)
        return Saved(tok + c * r, c * r * (i + out) * (1 + int(o["topk"])), sh, "fp32 input + rank intermediate")
    if method == "randlora":
        nb = ceil(min(i, out) / r)
        tok, sh = _copy(d, i) if i <= out else (c * nb * r, False)
        return Saved(tok, c * r * nb * min(i, out), sh, "input or basis projection + scaled basis")
    if method == "c3a":
        return Saved(0, 0, True, "fp32 input") if d.x == 4 else Saved(4 * i, label="fp32 input")
    if method == "delora":
        return Saved(c * (i + 2 * r), label="x * w_norm + two rank-wide intermediates")
    if method == "road":
        return Saved(2 * c * out, label="output and its rotated half")
    if method in ("shira", "glora"):
        return Saved(0, a * out * i, True, "input + rebuilt weight")
    if method == "tinylora":
        return Saved(c * r, label="rank-wide intermediate")
    if method == "peanut":
        tok, sh = _copy(d, i)
        depth = int(o["depth"])
        return Saved(tok, 2 * c * out * i + c * i * r * (1 + 4 * depth), sh, "fp32 input + W^T copy + delta")
    if method == "gralora":
        tok, sh = _copy(d, i)
        hr = int(o["hybrid_r"])
        extra = (c * i + c * hr) if hr else 0
        return Saved(tok + c * int(o["gralora_k"]) * r + extra, 0, sh, "fp32 input + block intermediates")
    if method == "unilora":
        tok, sh = _copy(d, i)
        return Saved(tok + c * r, c * r * (i + out), sh, "fp32 input + rank intermediate + gathered A, B")
    if method == "deft":
        tok, sh = (0, False) if o["para"] else _copy(d, i)
        return Saved(c * (out + r) + tok + (0 if o["para"] else c * r), 0, sh, "fp32 base product + rank-wide")
    if method == "lily":
        tok, sh = _copy(d, i)
        return Saved(tok + c * (r + int(o["num_B"])), c * r * out, sh, "fp32 input + hidden + router probabilities")
    if method == "mica":
        tok, sh = _copy(d, i)
        return Saved(tok, 0, sh, "fp32 input (lora_B frozen: no rank-wide save)")
    if method == "bdlora":
        tok, sh = _copy(d, i)
        return Saved(tok + c * r, 0, sh, "fp32 input + rank-wide intermediate")
    if method == "lora-fa":
        tok, sh = _copy(d, i) if o["lora_A_requires_grad"] else (0, False)
        return Saved(tok + c * r, 0, sh, "rank intermediate" + (" + fp32 input" if tok or sh else ""))
    return Saved(0, label="bias")  # beft


# ----- the plan for a model ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MethodPlan:
    """What :func:`plan_method` works out; :func:`vramplan.core.peft.adapter_plan` turns it into an AdapterPlan."""

    shapes: tuple[tuple[int, ...], ...]
    trainable_params: int
    frozen_adapter_params: int = 0
    grad_only_params: int = 0
    buffer_values: int = 0
    buffer_bytes: int = 0
    state_bytes_per_param: int = 0
    base_dtype_params: bool = False
    virtual_tokens: int = 0
    kv_virtual_tokens: int = 0


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _has_bias(spec: ModelSpec, roles: tuple[str, ...]) -> bool:
    if set(roles) & {"attn_q", "attn_k", "attn_v"}:
        return spec.qkv_bias
    if "attn_output" in roles:
        return spec.o_bias
    return spec.mlp_bias


def plan_method(spec: ModelSpec, method: str, o: dict, targets) -> MethodPlan:
    """Trainable tensors, frozen buffers and extra state of ``method`` on ``spec`` (``targets``: AdapterTargets)."""
    from ..errors import InvalidRequest

    h = spec.hidden_size
    if method == "prefix_tuning":
        vt, L = int(o["num_virtual_tokens"]), spec.num_layers
        td = spec.num_kv_heads * spec.head_dim  # token_dim: n_kv x head_dim for GQA (utils/other.py)
        if o["prefix_projection"]:
            eh = int(o["encoder_hidden_size"]) or h
            shapes = [(vt, td), (eh, td), (eh,), (2 * L * td, eh), (2 * L * td,)]
        else:
            shapes = [(vt, 2 * L * td)]
        return _mp(shapes, kv_virtual_tokens=vt)
    if method == "p_tuning":
        vt, eh = int(o["num_virtual_tokens"]), int(o["encoder_hidden_size"]) or h
        shapes = [(vt, h)]
        if o["encoder_reparameterization_type"] == "LSTM":
            for layer in range(int(o["encoder_num_layers"])):
                inp = h if layer == 0 else 2 * eh
                shapes += [(4 * eh, inp), (4 * eh, eh), (4 * eh,), (4 * eh,)] * 2  # both directions
            shapes += [(2 * eh, 2 * eh), (2 * eh,), (h, 2 * eh), (h,)]
        else:
            shapes += [(eh, h), (eh,), (eh, eh), (eh,), (h, eh), (h,)]
        return _mp(shapes, virtual_tokens=vt)
    if method == "adaption_prompt":
        k = int(o["adapter_layers"]) or spec.num_layers
        if k > spec.num_layers:
            raise InvalidRequest(f"adapter_layers {k} exceeds the model's {spec.num_layers} layers",
                                 field="peft_options")
        # parameters are created in the dtype of q_proj (the base dtype): not upcast to fp32
        return _mp([(1, int(o["adapter_len"]), h), (1,)] * k, base_dtype_params=True)
    if method == "trainable_tokens":
        return _mp([(int(o["token_indices"]), h)])

    shapes: list[tuple[int, ...]] = []
    frozen = grad_only = buf_values = buf_bytes = 0
    for t in targets:
        if method == "lily":  # A shared by blocks of stride_A layers, B by every layer of this module name
            r, nb = int(o["r"]), int(o["num_B"])
            shapes += [(r, t.in_features)] * ceil(t.layers / max(int(o["stride_A"]), 1))
            shapes += [(nb * r, t.out_features)] + [(nb, r)] * t.layers
            continue
        for _ in range(t.layers):
            shapes += module_shapes(method, t.in_features, t.out_features, o, _has_bias(spec, t.roles))
        r = int(o.get("r", 0) or 0)
        if method == "shira":
            buf_bytes += 8 * r * (t.in_features + t.out_features) * t.layers  # int32 row + column indices
        elif method == "delora":
            buf_values += t.in_features * t.layers  # w_norm
        elif method == "tinylora":
            buf_values += (r * t.in_features + t.out_features * r + int(o["u"]) * r * r) * t.layers  # A, B, P
        elif method == "unilora":
            n = r * (t.in_features + t.out_features) * t.layers
            buf_bytes += 8 * n  # int64 indices into theta_d
            buf_values += n  # scales
        elif method == "lora-fa":
            frozen += r * t.in_features * t.layers
        elif method == "mica":
            frozen += t.out_features * r * t.layers
        elif method == "bdlora":  # BlockDiagonalLinear weight: (out_features, in_features / nblocks)
            nb = int(o["nblocks"])
            a_bd = t.name in o["target_modules_bd_a"]
            b_bd = t.name in o["target_modules_bd_b"]
            shapes += [(r, t.in_features // nb if a_bd else t.in_features),
                       (t.out_features, r // nb if b_bd else r)] * t.layers
    if method == "lora-fa" and o["lora_A_requires_grad"]:
        grad_only = frozen
    modules = sum(t.layers for t in targets)
    max_in = max((t.in_features for t in targets), default=0)
    max_out = max((t.out_features for t in targets), default=0)
    r = int(o.get("r", 0) or 0)
    if method == "vera":
        buf_values += r * max_in + max_out * r
    elif method == "pvera":
        buf_values += 2 * r * max_in + max_out * r
    elif method == "randlora":
        lo, hi = min(max_in, max_out), max(max_in, max_out)
        buf_values += r * lo + hi * ceil(lo / r) * r
    elif method == "vblora":
        shapes.append((int(o["num_vectors"]), int(o["vector_length"])))
    elif method == "unilora":
        shapes.append((int(o["theta_d_length"]),))
    elif method == "tinylora":
        groups = max(1, round(modules * (1.0 - float(o["weight_tying"]))))
        shapes += [(int(o["u"]),)] * groups
    state = 3 if method == "adalora" else 0  # x param bytes: ipt, exp_avg_ipt, exp_avg_unc (RankAllocator.update_ipt)
    return _mp(shapes, frozen_adapter_params=frozen, grad_only_params=grad_only, buffer_values=buf_values,
               buffer_bytes=buf_bytes, state_bytes_per_param=state)


def _mp(shapes, **kw) -> MethodPlan:
    return MethodPlan(tuple(shapes), sum(_numel(s) for s in shapes), **kw)


def check_module_dims(method: str, i: int, out: int, o: dict, name: str) -> None:
    """Raise a clear error where PEFT itself refuses the module (divisibility rules of each method)."""
    from ..errors import InvalidRequest

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise InvalidRequest(f"{method} on {name} ({out} x {i}): {what}", field="peft_options")

    r = int(o.get("r", 0) or 0)
    if "r" in o and method != "oft":
        need(r >= 1, "r must be at least 1")
    if method == "boft":
        b, nb = int(o["boft_block_size"]), int(o["boft_block_num"])
        need((b == 0) != (nb == 0), "exactly one of boft_block_size and boft_block_num must be non-zero")
        need(i % (b or nb) == 0, "in_features must be divisible by the block size/number")
        need(int(o["boft_n_butterfly_factor"]) >= 1, "boft_n_butterfly_factor must be at least 1")
    elif method == "c3a":
        b = int(o["block_size"])
        need(b >= 1 and i % b == 0 and out % b == 0, f"block_size {b} must divide in and out features")
    elif method == "vblora":
        vl = int(o["vector_length"])
        need(vl >= 1 and i % vl == 0 and out % vl == 0, f"vector_length {vl} must divide in and out features")
        need(1 <= int(o["topk"]) <= int(o["num_vectors"]), "topk must be between 1 and num_vectors")
    elif method == "miss" and o["init_weights"] == "bat":
        need(i % r == 0 and out % r == 0, "bat needs in and out features divisible by r")
    elif method == "miss" and o["init_weights"] == "mini":
        need(int(o["mini_r"]) >= 1 and out % int(o["mini_r"]) == 0, "mini_r must divide out_features")
    elif method == "road":
        need(int(o["group_size"]) >= 2 and out % int(o["group_size"]) == 0, "group_size must divide out_features")
    elif method == "gralora":
        k = int(o["gralora_k"])
        need(k >= 1 and i % k == 0 and out % k == 0, "gralora_k must divide in and out features")
    elif method == "shira":
        need(r * (i + out) <= i * out, "r(in + out) exceeds the weight's size")
    elif method == "bdlora":
        nb = int(o["nblocks"])
        need(nb >= 1 and (name not in o["target_modules_bd_a"] or i % nb == 0)
             and (name not in o["target_modules_bd_b"] or (r % nb == 0 and out % nb == 0)),
             f"nblocks {nb} must divide the block-diagonal factor's dimensions")
    elif method in ("fourierft", "waveft"):
        need(1 <= int(o["n_frequency"]) <= i * out, "n_frequency must be between 1 and in x out")


def attention_extra(method: str, o: dict, spec: ModelSpec, a: int) -> tuple[int, int]:
    """(bytes per token kept per adapted layer, number of adapted layers) for adaption prompt: the recomputed query
    (a n_h d, kept by the matmul with the adapter keys), the fp32 softmax output, its cast to the base dtype (kept by
    the gate product) and the gated probabilities (kept by the matmul with the adapter values): n_h L_a (4 + 2a)."""
    if method != "adaption_prompt":
        return 0, 0
    k = int(o["adapter_layers"]) or spec.num_layers
    return a * spec.num_heads * spec.head_dim + spec.num_heads * int(o["adapter_len"]) * (4 + 2 * a), k


def global_saved(method: str, spec: ModelSpec, a: int) -> tuple[int, bool]:
    """(fixed bytes, lm_head input kept) outside the decoder layers. Trainable tokens on a tied embedding: the
    lm_head (tied, so PEFT wraps it too) runs F.linear(x, W.index_copy(...)) with a merged V x h weight that requires
    grad: the copy and lm_head's input are kept. Untied, the embedding's copy is only transient."""
    if method == "trainable_tokens" and spec.tie_embeddings:
        return a * spec.vocab_size * spec.hidden_size, True
    return 0, False


def layer_count(spec: ModelSpec) -> int:
    return sum(len(g.layers) for g in layer_groups(spec))
