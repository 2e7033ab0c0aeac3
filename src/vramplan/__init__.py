"""vramplan: what it takes to run or fine-tune an LLM — exact memory, fit and speed.

The public API (imported lazily so that the command line starts fast)::

    load_model(name_or_path)            -> LoadedModel (spec, source, ...)
    plan_inference(model, **options)    -> dict (CONTRACT.md's inference JSON)
    plan_training(model, **options)     -> dict (CONTRACT.md's training JSON)
    plan_fit(model, **workload)         -> dict (which GPUs fit, ranked)
    count_params(spec)                  -> ParamCount
    get_gpu(name) / list_gpus()         -> the GPU catalog
    list_models()                       -> the embedded model catalog
"""

__version__ = "0.1.0"

__all__ = [
    "load_model", "plan_inference", "plan_training", "plan_fit", "plan_speed", "describe_model", "count_params",
    "get_gpu", "list_gpus", "list_models", "get_format", "parse_config", "ModelSpec",
    "VramplanError", "InvalidModelSpec", "InvalidRequest", "UnknownName", "SourceError",
]

_WHERE = {
    "load_model": "api", "plan_inference": "api", "describe_model": "api",
    "plan_training": "training_api", "plan_fit": "fit_api", "plan_speed": "speed_api",
    "count_params": "core.model", "ModelSpec": "core.model",
    "get_gpu": "catalog.gpus", "list_gpus": "catalog.gpus", "list_models": "catalog.models",
    "get_format": "catalog.formats", "parse_config": "sources.hf_config",
    "VramplanError": "errors", "InvalidModelSpec": "errors", "InvalidRequest": "errors", "UnknownName": "errors",
    "SourceError": "errors",
}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"vramplan.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'vramplan' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
