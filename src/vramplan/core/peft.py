"""Parameter-efficient fine-tuning: which modules an adapter targets and how many parameters it trains.

Counts come from the real tensor shapes of :func:`vramplan.core.model.layer_groups`, so they match PEFT's
``get_nb_trainable_parameters`` to the parameter (formulas.md 5.3, verified with peft 0.21.2):

- LoRA (Hu et al. 2021, arXiv:2106.09685): ``r * (in + out)`` per targeted matrix of shape (out, in).
  Llama-3.1-8B r=16 on q,k,v,o,gate,up,down = 41,943,040; r=8 on q,v = 3,407,872; r=64 "all-linear" = 167,772,160.
- DoRA (Liu et al. 2024, arXiv:2402.09353, PEFT ``use_dora=True``): LoRA plus one magnitude per output feature.
- IA3 (Liu et al. 2022, arXiv:2205.05638): one scale per output feature of the targeted attention modules, one per
  input feature of the "feed-forward" modules (PEFT's default for Llama: k_proj, v_proj, down_proj; down_proj
  feed-forward).
- LN tuning: every norm weight (decoder norms and the final norm).
- Prompt tuning (Lester et al. 2021, arXiv:2104.08691): ``num_virtual_tokens * hidden_size`` trainable embeddings,
  and every sequence grows by ``num_virtual_tokens`` positions.

The other PEFT methods (VeRA, OFT, BOFT, LoHa, LoKr, FourierFT, prefix tuning, P-tuning, adaption prompt, ...) are
described in :mod:`vramplan.core.peft_methods`; :func:`adapter_plan` builds their plans too. ``modules_to_save``
(:func:`with_modules_to_save`) adds trained full copies of the embedding / output layer in the base dtype.

Module names follow Hugging Face (``q_proj``, ``gate_proj``, ...). PEFT matches target names by suffix, so
``gate_proj`` also hits a MoE model's shared-expert ``gate_proj``; ``all-linear`` is every linear layer inside the
decoder blocks except the output layer (PEFT excludes lm_head). Routed experts stored as 3-D tensors (transformers 5
MoE) are not ``nn.Linear`` modules and are never targeted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import ModelSpec, layer_groups

# Hugging Face module name -> the tensor roles it denotes in the inventory (PEFT matches by name suffix).
MODULE_ROLES: dict[str, tuple[str, ...]] = {
    "q_proj": ("attn_q",), "k_proj": ("attn_k",), "v_proj": ("attn_v",), "o_proj": ("attn_output",),
    "gate_proj": ("ffn_gate", "ffn_gate_shexp"), "up_proj": ("ffn_up", "ffn_up_shexp"),
    "down_proj": ("ffn_down", "ffn_down_shexp"),
    "q_a_proj": ("attn_q_a",), "q_b_proj": ("attn_q_b",), "kv_a_proj_with_mqa": ("attn_kv_a_mqa",),
    "kv_b_proj": ("attn_kv_b",),
    "fc1": ("ffn_up",), "fc2": ("ffn_down",),
    "in_proj": ("ssm_in",), "out_proj": ("ssm_out",), "x_proj": ("ssm_x",), "dt_proj": ("ssm_dt",),
    "in_proj_qkvz": ("ssm_in",), "in_proj_ba": ("ssm_ba",),  # Qwen3-Next gated DeltaNet
    "f_a_proj": ("ssm_f_a",), "f_b_proj": ("ssm_f_b",), "g_a_proj": ("ssm_g_a",), "g_b_proj": ("ssm_g_b",),
    "b_proj": ("ssm_beta",),  # Kimi Delta Attention gates
    # fused modules of other codebases (Phi-3 qkv_proj / gate_up_proj, Qwen v1 c_attn / w1 / w2 / c_proj)
    "qkv_proj": ("attn_q", "attn_k", "attn_v"), "gate_up_proj": ("ffn_gate", "ffn_up"),
    "c_attn": ("attn_q", "attn_k", "attn_v"), "w1": ("ffn_up",), "w2": ("ffn_gate",),
    "c_proj": ("attn_output", "ffn_down"),
    "dense": ("attn_output",), "dense_h_to_4h": ("ffn_up",), "dense_4h_to_h": ("ffn_down",),
}
FUSED_MODULES = frozenset({"qkv_proj", "gate_up_proj", "c_attn"})
"""Names that denote ONE module computing several roles from one input (one adapter, one input copy)."""

LINEAR_TARGET_ROLES = frozenset({
    "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b",
    "ffn_gate", "ffn_up", "ffn_down", "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp",
    "ssm_in", "ssm_out", "ssm_x", "ssm_dt", "ssm_ba", "ssm_f_a", "ssm_f_b", "ssm_g_a", "ssm_g_b", "ssm_beta",
})
IA3_DEFAULT_TARGETS = ("k_proj", "v_proj", "down_proj")
IA3_DEFAULT_FEEDFORWARD = ("down_proj",)
ADAPTER_KINDS = ("lora", "dora", "ia3")


@dataclass(frozen=True, slots=True)
class AdapterTarget:
    """One adapted module kind inside every decoder layer that has it.

    ``roles`` are the inventory roles it computes (several for a fused module), ``in_features`` its input width,
    ``out_features`` the summed output width, ``input_scaled`` marks an IA3 feed-forward module (scales its input).
    """

    name: str
    roles: tuple[str, ...]
    in_features: int
    out_features: int
    layers: int
    input_scaled: bool = False


@dataclass(frozen=True, slots=True)
class AdapterPlan:
    """What an adapter method trains: the targets, their trainable parameters, the extra sequence positions.

    The fields after ``virtual_tokens`` are set for the methods of :mod:`vramplan.core.peft_methods` (their defaults
    leave LoRA, DoRA, IA3, prompt and LN tuning as they were).
    """

    kind: str  # lora | dora | ia3 | prompt | ln | a peft_methods method
    rank: int
    targets: tuple[AdapterTarget, ...]
    trainable_params: int
    virtual_tokens: int = 0
    options: tuple[tuple[str, object], ...] = ()  # the method's PEFT config fields, defaults resolved
    shapes: tuple[tuple[int, ...], ...] = ()  # every trainable tensor (empty: derived from kind, rank, targets)
    frozen_adapter_params: int = 0  # adapter weights created but not trained (LoRA-FA's lora_A)
    grad_only_params: int = 0  # values that get a gradient but no optimizer state (LoRA-FA's A re-enabled)
    buffer_values: int = 0  # frozen float buffers on the GPU, in the adapter dtype (VeRA's shared A, B ...)
    buffer_bytes: int = 0  # frozen integer index buffers on the GPU (SHiRA, UniLoRA)
    state_bytes_per_param: int = 0  # persistent state per trainable value, in param-dtype units (AdaLoRA: 3)
    base_dtype_params: bool = False  # trainable tensors stay in the base dtype (adaption prompt)
    kv_virtual_tokens: int = 0  # prefix tuning: key/value positions prepended in every layer
    copies: tuple[tuple[str, tuple[int, ...]], ...] = ()  # modules_to_save: trained full copies, base dtype

    @property
    def target_roles(self) -> frozenset[str]:
        return frozenset(r for t in self.targets for r in t.roles)

    @property
    def opts(self) -> dict[str, object]:
        return dict(self.options)


def parse_targets(targets) -> tuple[str, ...]:
    """'all-linear' | 'q_proj,v_proj' | ['q_proj', 'v_proj'] -> a tuple of module names (validated)."""
    from ..errors import InvalidRequest, suggest  # errors is stdlib-only

    if targets is None:
        return ("all-linear",)
    if isinstance(targets, str):
        names = tuple(t.strip() for t in targets.split(",") if t.strip())
    else:
        names = tuple(str(t).strip() for t in targets if str(t).strip())
    if not names:
        raise InvalidRequest("lora_targets is empty; use all-linear or module names like q_proj,v_proj",
                             field="lora_targets")
    out = []
    for n in names:
        low = n.lower()
        if low in ("all-linear", "all_linear", "all"):
            out.append("all-linear")
            continue
        base = low.rsplit(".", 1)[-1]
        if base not in MODULE_ROLES:
            hint = suggest(base, list(MODULE_ROLES) + ["all-linear"])
            raise InvalidRequest(f"unknown module {n!r} in lora_targets"
                                 + (f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else
                                    "; use all-linear or names like q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
                                    "down_proj"), field="lora_targets")
        out.append(base)
    return tuple(dict.fromkeys(out))


def _shapes_by_role(spec: ModelSpec) -> dict[str, list[tuple[tuple[int, ...], int]]]:
    out: dict[str, list[tuple[tuple[int, ...], int]]] = {}
    for g in layer_groups(spec):
        for t in g.tensors:
            if t.name.endswith(".weight") or len(t.shape) >= 2:
                out.setdefault(t.role, []).append((t.shape, len(g.layers)))
    return out


def resolve_targets(spec: ModelSpec, names: tuple[str, ...], feedforward: tuple[str, ...] = ()) -> tuple[
        AdapterTarget, ...]:
    """Module names -> the adapted modules of this model, with their shapes and how many layers hold them."""
    shapes = _shapes_by_role(spec)
    if "all-linear" in names:
        names = tuple(n for n, roles in MODULE_ROLES.items()
                      if n not in FUSED_MODULES and n not in ("c_proj", "w1", "w2", "dense", "dense_h_to_4h",
                                                             "dense_4h_to_h", "fc1", "fc2")
                      and any(r in shapes for r in roles)) + tuple(n for n in names if n != "all-linear")
        # fc1/fc2 for non-gated MLPs map to the same roles as up/down: use them only when the model has no gate
        names = tuple(dict.fromkeys(names))
    targets: list[AdapterTarget] = []
    seen_roles: set[str] = set()
    for name in names:
        roles = [r for r in MODULE_ROLES[name] if r in shapes and r in LINEAR_TARGET_ROLES and r not in seen_roles]
        if not roles:
            continue
        if name in FUSED_MODULES:
            ins = {s[-1] for r in roles for s, _ in shapes[r]}
            layers = min(n for r in roles for _, n in shapes[r])
            out_f = sum(shapes[r][0][0][-2] for r in roles)
            targets.append(AdapterTarget(name, tuple(roles), max(ins), out_f, layers, name in feedforward))
            seen_roles.update(roles)
            continue
        for r in roles:
            for shape, n in shapes[r]:
                if len(shape) != 2:  # 3-D routed experts are not nn.Linear modules
                    continue
                targets.append(AdapterTarget(name, (r,), shape[1], shape[0], n, name in feedforward))
            seen_roles.add(r)
    return tuple(targets)


def adapter_plan(spec: ModelSpec, kind: str, rank: int = 16, targets=None, feedforward=None,
                 virtual_tokens: int = 0, options=None) -> AdapterPlan:
    """Trainable parameters of an adapter method on ``spec`` (exact, from the tensor shapes).

    ``options`` (PEFT config field -> value) configures the methods of :mod:`vramplan.core.peft_methods`; for those
    ``targets`` is the target_modules default when ``options`` does not name them (LoRA-FA takes ``rank`` and
    ``targets`` like LoRA)."""
    from ..errors import InvalidRequest
    from . import peft_methods as pm

    kind = pm.canonical(kind)
    if kind in pm.METHODS:
        return _method_plan(spec, kind, rank, targets, options)
    if kind == "ln":  # LN tuning (Zhao et al. 2023, arXiv:2312.11420): every norm weight is trained
        from .model import global_tensors

        tg = [AdapterTarget(t.name, (t.role,), t.shape[0], t.shape[0], len(g.layers))
              for g in layer_groups(spec) for t in g.tensors if t.role == "norm" and t.name.endswith("weight")]
        tg += [AdapterTarget(t.name, (t.role,), t.shape[0], t.shape[0], 1) for t in global_tensors(spec)
               if t.role == "output_norm" and t.name.endswith("weight")]
        return AdapterPlan("ln", 0, tuple(tg), sum(t.out_features * t.layers for t in tg))
    if kind == "prompt":
        n = max(0, int(virtual_tokens))
        return AdapterPlan("prompt", 0, (), n * spec.hidden_size, n)
    if kind not in ADAPTER_KINDS:
        raise InvalidRequest(f"unknown adapter kind {kind!r}", field="method")
    if kind == "ia3":
        names = parse_targets(targets) if targets is not None else IA3_DEFAULT_TARGETS
        ff = tuple(feedforward) if feedforward is not None else tuple(n for n in names
                                                                      if n in IA3_DEFAULT_FEEDFORWARD)
        tg = resolve_targets(spec, names, ff)
        params = sum((t.in_features if t.input_scaled else t.out_features) * t.layers for t in tg)
        return AdapterPlan("ia3", 0, tg, params)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InvalidRequest(f"lora_rank must be a whole number of at least 1, got {rank!r}", field="lora_rank")
    tg = resolve_targets(spec, parse_targets(targets))
    if not tg:
        raise InvalidRequest("none of the LoRA target modules exists in this model", field="lora_targets")
    params = sum(rank * (t.in_features + t.out_features) * t.layers for t in tg)
    if kind == "dora":
        params += sum(t.out_features * t.layers for t in tg)
    return AdapterPlan(kind, rank, tg, params)


def _method_plan(spec: ModelSpec, kind: str, rank: int, targets, options) -> AdapterPlan:
    """An AdapterPlan for a :mod:`vramplan.core.peft_methods` method (its targets, tensors, buffers, state)."""
    from ..errors import InvalidRequest
    from . import peft_methods as pm

    o = pm.resolve_options(kind, options)
    tg: tuple[AdapterTarget, ...] = ()
    if kind in pm.MODULE_METHODS:
        if kind in pm.LORA_LIKE:
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
                raise InvalidRequest(f"lora_rank must be a whole number of at least 1, got {rank!r}",
                                     field="lora_rank")
            o["r"] = rank
            names = parse_targets(o.pop("target_modules", None) or targets)
        else:
            given = o.pop("target_modules", None) or targets
            names = parse_targets(given) if given else (("v_proj",) if kind == "beft" else pm.DEFAULT_TARGETS)
        tg = resolve_targets(spec, names)
        if not tg:
            raise InvalidRequest(f"none of the {kind} target modules ({', '.join(names)}) exists in this model",
                                 field="lora_targets")
        for t in tg:
            pm.check_module_dims(kind, t.in_features, t.out_features, o, t.name)
    if kind == "adaption_prompt" and not o["adapter_layers"]:  # 0: every layer
        o["adapter_layers"] = spec.num_layers
    if "encoder_hidden_size" in o and not o["encoder_hidden_size"]:  # 0: the model's hidden size
        o["encoder_hidden_size"] = spec.hidden_size
    mp = pm.plan_method(spec, kind, o, tg)
    return AdapterPlan(kind, int(o.get("r", 0) or 0), tg, mp.trainable_params, mp.virtual_tokens,
                       options=tuple(sorted(o.items())), shapes=mp.shapes,
                       frozen_adapter_params=mp.frozen_adapter_params, grad_only_params=mp.grad_only_params,
                       buffer_values=mp.buffer_values, buffer_bytes=mp.buffer_bytes,
                       state_bytes_per_param=mp.state_bytes_per_param, base_dtype_params=mp.base_dtype_params,
                       kv_virtual_tokens=mp.kv_virtual_tokens)


MODULES_TO_SAVE = {"embed_tokens": "token_embd", "wte": "token_embd", "word_embeddings": "token_embd",
                   "lm_head": "output"}
"""modules_to_save names vramplan models -> inventory role (the model's input embedding and output layer)."""


def with_modules_to_save(plan: AdapterPlan, spec: ModelSpec, names) -> AdapterPlan:
    """``plan`` plus PEFT ``modules_to_save``: a trained deep copy of each named module (ModulesToSaveWrapper,
    utils/other.py). The wrapper is not a tuner layer, so ``autocast_adapter_dtype`` leaves the copy in the base
    dtype; the frozen original stays. With tied embeddings the output layer is the embedding (one copy)."""
    from ..errors import InvalidRequest, suggest
    from .model import global_tensors

    if not names:
        return plan
    tensors = {t.role: t for t in global_tensors(spec)}
    copies: dict[str, tuple[int, ...]] = {}
    for raw in names:
        name = str(raw).strip().rsplit(".", 1)[-1]
        role = MODULES_TO_SAVE.get(name)
        if role is None:
            hint = suggest(name, list(MODULES_TO_SAVE))
            raise InvalidRequest(f"modules_to_save {raw!r} is not modelled; use embed_tokens and/or lm_head"
                                 + (f" (did you mean {hint[0]!r}?)" if hint else ""), field="modules_to_save")
        t = tensors.get(role) or tensors.get("token_embd")  # tied: lm_head is the embedding
        copies.setdefault(t.name.removesuffix(".weight"), t.shape)
    extra = sum(shape[0] * shape[1] for shape in copies.values())
    from dataclasses import replace

    return replace(plan, trainable_params=plan.trainable_params + extra, copies=tuple(copies.items()))
