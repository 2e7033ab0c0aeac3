"""Request models of the REST API: pydantic validation at the web edge only (the core never sees pydantic).

Field names are the CLI commands' option names (argparse dests), so one validated request becomes the namespace the
command's ``run`` takes; tests/test_web_api.py checks that every field is an option of its command.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

SWEEP_MAX_POINTS = 24
"""At most this many context (or sequence) lengths in one sweep."""


def _blank_to_none(v):
    return None if isinstance(v, str) and not v.strip() else v


def _tokens(v, field: str):
    if v is None:
        return None
    from ..units import parse_token_budget, parse_tokens

    try:
        return parse_token_budget(v) if field == "training_tokens" else parse_tokens(v)
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None


_Short = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._,:+\- ]*$")]
_ModelName = Annotated[str, Field(min_length=1, max_length=200,
                                  description="catalog name (llama-3.1-8b), Hugging Face id (org/name), or the "
                                              "upload:<id> returned by POST /api/config")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _blank(cls, v):
        return _blank_to_none(v)


class InferenceRequest(_Request):
    model: _ModelName
    quantization: _Short | None = Field(None, description="weight format: fp8, int8, int4, gptq, awq, bnb-nf4, "
                                                          "mxfp4, nvfp4, Q4_K_M ...; default: the checkpoint's own")
    dtype: _Short = Field("auto", description="auto | bfloat16 | float16 | float32")
    kv_cache_dtype: _Short = Field("auto", description="auto | fp16 | bf16 | fp8 | int8 | q8_0 | q4_0")
    max_model_len: int | str | None = Field(None, description="context tokens: 8192, 128k (=131072)")
    batch_size: int = Field(1, ge=1, le=1 << 20, description="concurrent sequences")
    tensor_parallel_size: int = Field(1, ge=1, le=1024)
    pipeline_parallel_size: int = Field(1, ge=1, le=1024)
    engine: _Short | None = Field(None, description="vllm | sglang | llama.cpp | transformers; default: plain "
                                                   "accounting")
    engine_version: _Short | None = None
    gpu: _Short | None = Field(None, description="GPU to fit into (h100, rtx-4090, ...)")
    gpu_memory_utilization: float | None = Field(None, gt=0.0, le=1.0)
    max_num_batched_tokens: int | None = Field(None, ge=1, le=1 << 24)
    max_num_seqs: int | None = Field(None, ge=1, le=1 << 20)
    n_gpu_layers: int | None = Field(None, ge=-1, le=100_000, description="llama.cpp: layers offloaded to the GPU")
    n_cpu_moe: int | None = Field(None, ge=0, le=100_000,
                                  description="llama.cpp: routed experts of the first N layers kept in host RAM")
    cpu_moe: bool | None = Field(None, description="llama.cpp: every layer's routed experts kept in host RAM")
    flash_attn: _Short | None = Field(None, description="llama.cpp flash attention: on | off")
    ubatch_size: int | None = Field(None, ge=1, le=1 << 20, description="llama.cpp n_ubatch")

    @field_validator("max_model_len")
    @classmethod
    def _ctx(cls, v):
        return _tokens(v, "max_model_len")


class SweepRequest(InferenceRequest):
    contexts: str | None = Field(None, max_length=400,
                                 description="comma-separated context lengths (default: powers of two up to the "
                                             f"model's maximum); at most {SWEEP_MAX_POINTS}")

    @field_validator("contexts")
    @classmethod
    def _contexts(cls, v):
        if v is None:
            return None
        parts = [p.strip() for p in str(v).split(",") if p.strip()]
        if not parts:
            return None
        if len(parts) > SWEEP_MAX_POINTS:
            raise ValueError(f"at most {SWEEP_MAX_POINTS} context lengths, got {len(parts)}")
        return ",".join(str(_tokens(p, "contexts")) for p in parts)


class TrainRequest(_Request):
    model: _ModelName
    method: _Short | None = Field(None, description="full | lora | qlora")
    optimizer: _Short | None = Field(None, description="adamw | adamw-8bit | paged-adamw-8bit | sgd | adafactor "
                                                      "| lion")
    precision: _Short | None = Field(None, description="bf16-mixed | fp16-mixed | bf16 | fp32")
    batch_size: int | None = Field(None, ge=1, le=1 << 16)
    seq_len: int | str | None = Field(None, description="tokens per sequence: 4096, 8k")
    gradient_checkpointing: bool | None = None
    attention: _Short | None = Field(None, description="sdpa | flash | eager")
    lora_rank: int | None = Field(None, ge=1, le=1 << 16)
    lora_targets: _Short | None = Field(None, description="all-linear | q_proj,v_proj,...")
    gpus: int | None = Field(None, ge=1, le=1 << 16, description="data-parallel GPUs")
    zero: int | None = Field(None, ge=0, le=3, description="DeepSpeed ZeRO stage 0-3")
    fsdp: bool | None = Field(None, description="FSDP full sharding (like ZeRO-3)")
    offload_optimizer: bool | None = None
    offload_params: bool | None = None
    grad_accum: int | None = Field(None, ge=1, le=1 << 16, description="gradient accumulation steps")
    loss: _Short | None = Field(None, description="how the loss's logits are held")
    loop: _Short | None = Field(None, description="training loop: trainer | ...")
    padding_mask: bool | None = None
    quantization: _Short | None = Field(None, description="base weights format (QLoRA: bnb-nf4)")
    peft_option: list[Annotated[str, Field(max_length=80, pattern=r"^[A-Za-z_][A-Za-z0-9_]*=[^\s=]{1,60}$")]] | None = \
        Field(None, max_length=16, description="the method's PEFT config fields as FIELD=VALUE, e.g. r=256 (vera)")
    modules_to_save: _Short | None = Field(None, description="embed_tokens and/or lm_head trained as full copies")
    gpu: _Short | None = None

    @field_validator("seq_len")
    @classmethod
    def _seq(cls, v):
        return _tokens(v, "seq_len")


class TrainSweepRequest(TrainRequest):
    lengths: str | None = Field(None, max_length=400,
                                description="comma-separated sequence lengths (default: powers of two up to the "
                                            f"model's maximum); at most {SWEEP_MAX_POINTS}")

    @field_validator("lengths")
    @classmethod
    def _lengths(cls, v):
        return SweepRequest._contexts(v)


class FitRequest(_Request):
    """Options of ``vramplan fit`` (vramplan.fit_api.plan_fit)."""

    model: _ModelName
    gpus: str | None = Field(None, max_length=400, pattern=r"^[A-Za-z0-9 ._,\-]*$",
                             description="comma-separated GPUs to try (default: the whole catalog)")
    category: _Short | None = Field(None, description="datacenter | workstation | consumer | apple | accelerator")
    max_gpus: int | None = Field(None, ge=1, le=1024)
    quantization: _Short | None = None
    dtype: _Short | None = None
    kv_cache_dtype: _Short | None = None
    max_model_len: int | str | None = Field(None, description="context tokens: 8192, 128k")
    batch_size: int | None = Field(None, ge=1, le=1 << 20)
    headroom: float | None = Field(None, ge=0.0, le=0.9, description="fraction of each GPU kept free")
    allow_offload: bool | None = None
    host_ram: _Short | None = Field(None, description="host RAM for offloaded layers: 64GiB")
    top: int | None = Field(None, ge=1, le=1000)
    workload: _Short | None = Field(None, description="inference | training")
    method: _Short | None = Field(None, description="training fits: full | lora | qlora")
    training_tokens: int | str | None = None
    # training options passed on to plan_training for workload=training (FIT_TRAINING_FIELDS)
    optimizer: _Short | None = None
    precision: _Short | None = None
    seq_len: int | str | None = None
    gradient_checkpointing: bool | None = None
    attention: _Short | None = None
    lora_rank: int | None = Field(None, ge=1, le=1 << 16)
    lora_targets: _Short | None = None
    zero: int | None = Field(None, ge=0, le=3)
    fsdp: bool | None = None
    offload_optimizer: bool | None = None
    offload_params: bool | None = None

    @field_validator("max_model_len", "training_tokens", "seq_len")
    @classmethod
    def _toks(cls, v, info):
        return _tokens(v, info.field_name)


FIT_TRAINING_FIELDS = frozenset({"optimizer", "precision", "seq_len", "gradient_checkpointing", "attention",
                                 "lora_rank", "lora_targets", "zero", "fsdp", "offload_optimizer",
                                 "offload_params"})
"""Training options /api/fit takes beyond ``vramplan fit``'s own; with any of them the endpoint calls
vramplan.fit_api.plan_fit (the function the command calls) directly, so a training fit matches /api/train."""


class SpeedRequest(_Request):
    """Options of ``vramplan speed`` (vramplan.fit_api.plan_speed)."""

    model: _ModelName
    gpu: _Short | None = Field(None, description="GPU to time (default h100)")
    tensor_parallel_size: int | None = Field(None, ge=1, le=1024)
    pipeline_parallel_size: int | None = Field(None, ge=1, le=1024)
    quantization: _Short | None = None
    dtype: _Short | None = None
    kv_cache_dtype: _Short | None = None
    max_model_len: int | str | None = None
    batch_size: int | None = Field(None, ge=1, le=1 << 20)
    prompt_tokens: int | str | None = None
    output_tokens: int | None = Field(None, ge=1, le=1 << 24)
    n_gpu_layers: int | None = Field(None, ge=0, le=100_000)
    host_bandwidth_gbps: float | None = Field(None, gt=0, le=10_000)
    training_tokens: int | str | None = Field(None, description="tokens to train on (adds the training time)")
    method: _Short | None = Field(None, description="full | lora | qlora")
    gradient_checkpointing: bool | None = None
    seq_len: int | str | None = None
    global_batch_tokens: int | str | None = None

    @field_validator("max_model_len", "prompt_tokens", "global_batch_tokens", "training_tokens", "seq_len")
    @classmethod
    def _toks(cls, v, info):
        return _tokens(v, info.field_name)


class LaunchRequest(_Request):
    """Options of ``vramplan launch`` (vramplan.fit_api.launch_commands); no file names are taken."""

    model: _ModelName
    engine: _Short | None = Field(None, description="vllm | sglang | llama.cpp | ollama | all")
    gpu: _Short | None = None
    tensor_parallel_size: int | None = Field(None, ge=1, le=1024)
    pipeline_parallel_size: int | None = Field(None, ge=1, le=1024)
    max_model_len: int | str | None = None
    quantization: _Short | None = None
    dtype: _Short | None = None
    kv_cache_dtype: _Short | None = None
    gpu_memory_utilization: float | None = Field(None, ge=0.05, le=1.0)
    batch_size: int | None = Field(None, ge=1, le=1 << 20)
    served_model_name: _Short | None = None
    port: int | None = Field(None, ge=1, le=65535)
    n_gpu_layers: int | None = Field(None, ge=0, le=100_000)

    @field_validator("max_model_len")
    @classmethod
    def _ctx(cls, v):
        return _tokens(v, "max_model_len")


class HardwareRequest(_Request):
    """Options of vramplan.fit_api.hardware_report: host RAM, disk, power and interconnect for one layout."""

    model: _ModelName
    gpu: _Short | None = None
    tensor_parallel_size: int | None = Field(None, ge=1, le=1024)
    pipeline_parallel_size: int | None = Field(None, ge=1, le=1024)
    quantization: _Short | None = None
    dtype: _Short | None = None
    kv_cache_dtype: _Short | None = None
    max_model_len: int | str | None = None
    batch_size: int | None = Field(None, ge=1, le=1 << 20)
    n_gpu_layers: int | None = Field(None, ge=0, le=100_000)
    headroom: float | None = Field(None, ge=0.0, le=0.9)

    @field_validator("max_model_len")
    @classmethod
    def _ctx(cls, v):
        return _tokens(v, "max_model_len")
