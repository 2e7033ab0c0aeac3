"""The REST API and the web calculator: a thin FastAPI shell over the same command functions as the CLI.

Every planning endpoint validates its parameters here (pydantic, at this edge only), resolves the model itself, and
then calls the CLI command's own ``run(args)`` with an argparse namespace built from that command's parser, so a
response is the very dict ``vramplan COMMAND ... --json`` prints for the same inputs: one code path.

Safety rules (model names and uploads: web/resolve.py; request fields: web/schemas.py):
  * a model is a catalog name, a Hugging Face id, or ``upload:<hash>`` for a config.json posted to /api/config;
    never a path (no file on the server is reachable through the API);
  * uploaded configs are capped (256 KiB), must be a JSON object, and live only in a bounded in-memory LRU;
  * request bodies are capped before any parsing; errors are JSON ``{"error", "field"}`` with a 4xx status.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
from importlib import resources
from typing import Annotated, Any, Callable

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import InvalidModelSpec, InvalidRequest, SourceError, UnknownName, VramplanError
from .resolve import MODEL_SLOTS, UPLOAD_MAX_BYTES, UPLOAD_SLOTS, Models, _LRU  # noqa: F401 (re-exported)
from .schemas import (FIT_TRAINING_FIELDS, SWEEP_MAX_POINTS, FitRequest, HardwareRequest,  # noqa: F401
                      InferenceRequest, LaunchRequest, SpeedRequest, SweepRequest, TrainRequest, TrainSweepRequest,
                      _Request)

BODY_MAX_BYTES = 64 * 1024
"""Any request body other than an upload (a JSON object of options) may be at most 64 KiB."""

STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "docs.html": "text/html; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
}

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


class NotAvailable(VramplanError):
    """A planning module this endpoint needs is not part of this build (HTTP 501)."""


# ----- JSON out ----------------------------------------------------------------------------------------------

def _finite(value: Any) -> Any:
    """Non-finite floats become null: browsers cannot parse NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class PlainJSON(JSONResponse):
    """json.dumps like the CLI's --json (default=str), minus NaN/Infinity, compact."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), default=str, allow_nan=False, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")


def error_response(status: int, message: str, field: str | None = None, **extra) -> PlainJSON:
    body = {"error": message, "field": field}
    body.update({k: v for k, v in extra.items() if v not in (None, [], ())})
    return PlainJSON(body, status_code=status)


_KIND_FIELDS = (("model", "model"), ("gpu", "gpu"), ("kv", "kv_cache_dtype"), ("format", "quantization"),
                ("quantization", "quantization"), ("dtype", "dtype"), ("engine", "engine"),
                ("optimizer", "optimizer"), ("method", "method"), ("precision", "precision"))


def _field_for_kind(kind: str) -> str | None:
    low = kind.lower()
    for needle, field in _KIND_FIELDS:
        if needle in low:
            return field
    return None


# ----- the one code path: the CLI command's run() --------------------------------------------------------------

class _ArgParser(argparse.ArgumentParser):
    def error(self, message):  # a parser problem is a request problem here, never an exit
        raise InvalidRequest(message)


@functools.lru_cache(maxsize=None)
def _command(name: str):
    """(parser, module) of a CLI command, or None when this build does not have it yet.

    The parser is a plain argparse one filled by the command's own ``add_arguments`` (the commands' contract), so
    the namespace ``run`` gets has exactly the options and defaults the command line would give it.
    """
    import importlib.util

    from .. import cli

    module_name = f"vramplan.commands.{cli.COMMANDS.get(name, (name,))[0]}"
    if importlib.util.find_spec(module_name) is None:
        return None
    module = importlib.import_module(module_name)
    parser = _ArgParser(prog=f"vramplan {name}", add_help=False)
    module.add_arguments(parser)
    return parser, module


def command_namespace(parser, fields: dict, model_obj=None) -> argparse.Namespace:
    """The namespace ``parser`` gives for its defaults, with ``fields`` set (each checked against the parser)."""
    positional = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
    argv = ["x" for a in positional if a.nargs in (None, 1)]
    ns = parser.parse_args(argv)
    actions = {a.dest: a for a in parser._actions}
    for key, value in fields.items():
        if value is None:
            continue
        action = actions.get(key)
        if action is None:
            raise InvalidRequest(f"this version does not take the option {key!r}", field=key)
        if action.choices is not None and value not in action.choices:
            if action.type is not None and isinstance(value, str):
                try:
                    value = action.type(value)
                except (argparse.ArgumentTypeError, TypeError, ValueError):
                    pass
            if value not in action.choices:
                choices = ", ".join(str(c) for c in action.choices)
                raise InvalidRequest(f"{key} must be one of {choices}; got {value!r}", field=key)
        elif action.type is not None and isinstance(value, str) and action.type not in (str,):
            try:
                value = action.type(value)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                raise InvalidRequest(f"{key}: {exc}", field=key) from None
        setattr(ns, key, value)
    if model_obj is not None:
        ns.model = model_obj
    if hasattr(ns, "json"):
        ns.json = True
    for side_effect in ("plot", "output", "out"):  # the API never writes files
        if hasattr(ns, side_effect):
            setattr(ns, side_effect, None)
    return ns


def run_command(name: str, fields: dict, model_obj=None, fallback: Callable[[], dict] | None = None) -> dict:
    cmd = _command(name)
    if cmd is None:
        if fallback is not None:
            return fallback()
        raise NotAvailable(f"'{name}' is not available in this build of vramplan yet")
    parser, module = cmd
    ns = command_namespace(parser, fields, model_obj)
    result = module.run(ns)
    if isinstance(result, dict):
        result.pop("_exit", None)
        result.pop("_error", None)  # the CLI's one line for an impossible plan; the web shows the plan itself
    return result


def _module(path: str):
    try:
        return importlib.import_module(f"vramplan.{path}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("vramplan"):
            raise NotAvailable(f"vramplan.{path} is not available in this build yet") from None
        raise


def choices_of(name: str) -> dict:
    """{option: [choices]} of a CLI command's parser (what the page offers in its selects)."""
    cmd = _command(name)
    if cmd is None:
        return {}
    parser, _ = cmd
    return {a.dest: [str(c) for c in a.choices] for a in parser._actions
            if a.choices is not None and a.option_strings and a.dest not in ("help", "source")}


def _json_ready(value):
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_ready(v) for v in value]
    return value


# ----- the app -------------------------------------------------------------------------------------------------

class _BodyLimit:
    """Pure ASGI middleware: reads at most N bytes of a request body before the app sees any of it (413 past it)."""

    def __init__(self, app, default_limit: int, limits: dict[str, int]):
        self.app = app
        self.default_limit = default_limit
        self.limits = limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], self.default_limit)
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await _send_json(send, 400, {"error": "bad Content-Length header", "field": None})
                if declared > limit:
                    return await _send_json(send, 413, _too_large(limit))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return await _send_json(send, 413, _too_large(limit))
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _too_large(limit: int) -> dict:
    return {"error": f"request body larger than {limit:,} bytes ({limit // 1024} KiB)", "field": "body"}


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _static_text(name: str) -> bytes:
    return resources.files("vramplan.web").joinpath("static", name).read_bytes()


def create_app() -> FastAPI:
    """The FastAPI app: the page at /, the REST API under /api, its OpenAPI schema at /api/openapi.json."""
    app = FastAPI(title="vramplan", version=__version__, default_response_class=PlainJSON,
                  description="GPU memory, fit and speed for running or fine-tuning LLMs. Every memory value is "
                              "an integer number of bytes per GPU; the page labels them GiB (2^30) or GB (10^9). "
                              "Responses are the same JSON objects `vramplan COMMAND --json` prints.",
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    models = Models()
    app.state.models = models
    app.add_middleware(_BodyLimit, default_limit=BODY_MAX_BYTES,
                       limits={"/api/config": UPLOAD_MAX_BYTES + 8 * 1024})

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # --- errors ------------------------------------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path")]
            field = ".".join(loc) or None
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                msg = "unknown parameter"
            problems.append({"field": field, "message": msg})
        first = problems[0] if problems else {"field": None, "message": "invalid request"}
        text = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return error_response(422, text, first["field"], problems=problems)

    @app.exception_handler(VramplanError)
    async def _domain(request: Request, exc: VramplanError):
        if isinstance(exc, NotAvailable):
            return error_response(501, str(exc))
        if isinstance(exc, UnknownName):
            field = _field_for_kind(exc.kind)
            return error_response(404 if field == "model" else 400, str(exc), field,
                                  suggestions=list(exc.suggestions))
        if isinstance(exc, (InvalidRequest, InvalidModelSpec)):
            field = getattr(exc, "field", None)
            if isinstance(exc, InvalidModelSpec):
                field = "file" if str(exc).startswith("uploaded") else "model"
            return error_response(400, str(exc), field)
        if isinstance(exc, SourceError):
            return error_response(404, str(exc), "model")
        return error_response(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, detail.lower() if detail == "Not Found" else detail, "path"
                              if exc.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # never a traceback to the client
        if isinstance(exc, ImportError) and "vramplan" in str(exc):
            return error_response(501, f"a part of vramplan this needs is not in this build ({exc})")
        return error_response(500, f"internal error ({exc.__class__.__name__}); please report it")

    # --- the page ------------------------------------------------------------------------------------------------
    def static_response(name: str) -> Response:
        kind = STATIC_FILES.get(name)
        if kind is None:
            return error_response(404, "not found", "path")
        return Response(_static_text(name), media_type=kind.split(";")[0],
                        headers={"Content-Type": kind, "Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index():
        return static_response("index.html")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return static_response("docs.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        return static_response(name)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    # --- the API -------------------------------------------------------------------------------------------------
    @app.get("/api", tags=["meta"], summary="what this API offers")
    def api_index():
        return {"name": "vramplan", "version": __version__, "openapi": "/api/openapi.json", "docs": "/docs",
                "endpoints": sorted({r.path for r in app.routes if getattr(r, "path", "").startswith("/api/")}),
                "units": "memory values are int bytes per GPU; GiB = 2^30 bytes, GB = 10^9 bytes"}

    @app.get("/api/health", tags=["meta"], summary="liveness")
    async def health():
        return {"ok": True, "version": __version__}

    def inference(req: InferenceRequest) -> dict:
        fields = req.model_dump(exclude={"model"})
        return run_command("inference", fields, models.resolve(req.model))

    @app.get("/api/inference", tags=["plan"], summary="inference memory per GPU (= vramplan inference --json)")
    def inference_get(req: Annotated[InferenceRequest, Query()]):
        return inference(req)

    @app.post("/api/inference", tags=["plan"], summary="inference memory per GPU (= vramplan inference --json)")
    def inference_post(req: InferenceRequest):
        return inference(req)

    def sweep(req: SweepRequest) -> dict:
        from ..charts import context_sweep, default_contexts

        lm = models.resolve(req.model)
        fields = req.model_dump(exclude={"model", "contexts"})
        base = run_command("inference", fields, lm)
        if req.contexts:
            contexts = [int(c) for c in req.contexts.split(",")]
        else:
            contexts = default_contexts(base["request"]["max_model_len"],
                                        getattr(lm.spec, "max_position_embeddings", 0) or None)

        def one(ctx: int) -> dict:
            return run_command("inference", {**fields, "max_model_len": ctx}, lm)

        return {"model": base["model"], "request": base["request"], "points": context_sweep(one, contexts)}

    @app.get("/api/inference/sweep", tags=["plan"],
             summary="inference memory per GPU at several context lengths (for the memory-vs-context chart)")
    def sweep_get(req: Annotated[SweepRequest, Query()]):
        return sweep(req)

    @app.post("/api/inference/sweep", tags=["plan"], summary="the same as GET, options in a JSON body")
    def sweep_post(req: SweepRequest):
        return sweep(req)

    def train(req: TrainRequest) -> dict:
        lm = models.resolve(req.model)
        fields = req.model_dump(exclude={"model"})

        def direct():
            mod = _module("training_api")
            return mod.plan_training(lm, **{k: v for k, v in fields.items() if v is not None})

        return run_command("train", fields, lm, fallback=direct)

    def train_sweep(req: TrainSweepRequest) -> dict:
        from ..charts import context_sweep, default_contexts

        lm = models.resolve(req.model)
        fields = req.model_dump(exclude={"model", "lengths"})
        base = train(TrainRequest(model=req.model, **fields))
        chosen = (base.get("request") or {}).get("seq_len") or fields.get("seq_len") or 4096
        if req.lengths:
            lengths = [int(c) for c in req.lengths.split(",")]
        else:
            lengths = [c for c in default_contexts(int(chosen), getattr(lm.spec, "max_position_embeddings", 0) or None)
                       if c >= 256]

        def one(n: int) -> dict:
            return train(TrainRequest(model=req.model, **{**fields, "seq_len": n}))

        points = [{"seq_len": p["max_model_len"], "memory": p["memory"], "capacity": p["capacity"]}
                  for p in context_sweep(one, lengths)]
        return {"model": base.get("model"), "request": {**(base.get("request") or {}), "seq_len": int(chosen)},
                "points": points}

    @app.get("/api/train/sweep", tags=["plan"],
             summary="training memory per GPU at several sequence lengths (for the memory-vs-length chart)")
    def train_sweep_get(req: Annotated[TrainSweepRequest, Query()]):
        return train_sweep(req)

    @app.post("/api/train/sweep", tags=["plan"], summary="the same as GET, options in a JSON body")
    def train_sweep_post(req: TrainSweepRequest):
        return train_sweep(req)

    @app.get("/api/train", tags=["plan"], summary="training memory per GPU (= vramplan train --json)")
    def train_get(req: Annotated[TrainRequest, Query()]):
        return train(req)

    @app.post("/api/train", tags=["plan"], summary="training memory per GPU (= vramplan train --json)")
    def train_post(req: TrainRequest):
        return train(req)

    def _planned(command: str, api_func: str, req: _Request) -> dict:
        lm = models.resolve(req.model)
        fields = req.model_dump(exclude={"model"})

        def direct():
            mod = _module("fit_api")
            result = getattr(mod, api_func)(lm, **{k: v for k, v in fields.items() if v is not None})
            if isinstance(result, dict):
                result.pop("_exit", None)
            return result

        if command == "fit" and any(fields.get(k) is not None for k in FIT_TRAINING_FIELDS):
            cmd = _command(command)
            dests = {a.dest for a in cmd[0]._actions} if cmd else set()
            if not FIT_TRAINING_FIELDS <= dests:  # the command line cannot say these yet
                return direct()
        return run_command(command, fields, lm, fallback=direct)

    @app.get("/api/fit", tags=["plan"], summary="which GPUs fit, and how many (= vramplan fit --json)")
    def fit_get(req: Annotated[FitRequest, Query()]):
        return _planned("fit", "plan_fit", req)

    @app.post("/api/fit", tags=["plan"], summary="which GPUs fit, and how many (= vramplan fit --json)")
    def fit_post(req: FitRequest):
        return _planned("fit", "plan_fit", req)

    @app.get("/api/speed", tags=["plan"], summary="throughput from the roofline (= vramplan speed --json)")
    def speed_get(req: Annotated[SpeedRequest, Query()]):
        return _planned("speed", "plan_speed", req)

    @app.post("/api/speed", tags=["plan"], summary="throughput from the roofline (= vramplan speed --json)")
    def speed_post(req: SpeedRequest):
        return _planned("speed", "plan_speed", req)

    @app.get("/api/hardware", tags=["plan"], summary="host RAM, disk, power and interconnect for one layout")
    def hardware_get(req: Annotated[HardwareRequest, Query()]):
        return _planned("hardware", "hardware_report", req)

    @app.get("/api/launch", tags=["plan"],
             summary="command lines that serve the plan: vLLM, SGLang, llama.cpp, Ollama (= vramplan launch --json)")
    def launch_get(req: Annotated[LaunchRequest, Query()]):
        return _planned("launch", "launch_commands", req)

    # --- catalogs ------------------------------------------------------------------------------------------------
    listings = _LRU(64)

    def listing(key: tuple, make: Callable[[], dict]) -> dict:
        """Catalog listings are fixed data: computed once per distinct query, then served from memory."""
        hit = listings.get(repr(key))
        if hit is None:
            hit = json.loads(json.dumps(make(), default=str))
            listings.put(repr(key), hit)
        return json.loads(json.dumps(hit))

    @app.get("/api/gpus", tags=["catalog"], summary="the GPU catalog (= vramplan gpus --json)")
    def gpus():
        def direct():
            mod = _module("catalog.gpus")
            return {"gpus": [_json_ready(g) for g in mod.list_gpus()]}

        return listing(("gpus",), lambda: run_command("gpus", {}, None, fallback=direct))

    @app.get("/api/models", tags=["catalog"], summary="the embedded model catalog (= vramplan models --json)")
    def catalog_models(search: Annotated[str | None, Query(max_length=100)] = None,
                       params: Annotated[bool, Query(description="also count parameters")] = False):
        search = (search or "").strip() or None

        def direct():
            mod = _module("catalog.models")
            return {"models": [{"key": e.key, "hf_id": e.hf_id, "aliases": list(e.aliases), "family": e.family}
                               for e in mod.list_models()]}

        return listing(("models", search, params),
                       lambda: run_command("models", {"search": search, "params": params or None}, None,
                                           fallback=direct))

    @app.get("/api/formats", tags=["catalog"],
             summary="weight formats, with exact weight bytes when a model is given (= vramplan formats --json)")
    def formats(model: Annotated[str | None, Query(max_length=200)] = None):
        if model and model.strip():
            return run_command("formats", {}, models.resolve(model))

        def direct():
            from ..catalog.formats import format_names, get_format
            from ..core.precision import KV_DTYPE_BITS

            rows = []
            for name in format_names():
                fmt = get_format(name)
                rows.append({"name": name, "label": getattr(fmt, "label", name) or name,
                             "source": getattr(fmt, "source", "")})
            return {"formats": rows, "kv_cache_dtypes": sorted(KV_DTYPE_BITS)}

        return listing(("formats",), lambda: run_command("formats", {}, None, fallback=direct))

    @app.get("/api/options", tags=["catalog"], summary="the choices each planning command accepts")
    def options():
        import importlib.util

        from ..core.precision import KV_DTYPE_BITS

        out = {name: choices_of(name) for name in ("inference", "train", "fit", "speed")}
        if importlib.util.find_spec("vramplan.core.training_states") is not None:
            # the train command checks these names itself (its parser declares no choices); the page offers them
            from ..core.training_activations import ATTENTION_IMPLS, LOSS_IMPLS
            from ..core.training_states import LOOPS, METHODS, OPTIMIZERS, PRECISIONS

            out["train"] = {"method": list(METHODS), "optimizer": list(OPTIMIZERS), "precision": list(PRECISIONS),
                            "attention": list(ATTENTION_IMPLS), "loss": list(LOSS_IMPLS), "loop": list(LOOPS),
                            "modules_to_save": ["embed_tokens", "lm_head", "embed_tokens,lm_head"],
                            **out["train"]}
        out["kv_cache_dtypes"] = list(KV_DTYPE_BITS)

        def present(command: str, module: str | None) -> bool:
            return _command(command) is not None or (
                module is not None and importlib.util.find_spec(f"vramplan.{module}") is not None)

        out["available"] = {name: present(name, module) for name, module in (
            ("inference", None), ("train", "training_api"), ("fit", "fit_api"), ("speed", "fit_api"),
            ("launch", "fit_api"), ("gpus", "catalog.gpus"), ("models", "catalog.models"), ("formats", None))}
        return out

    @app.post("/api/config", tags=["models"], summary="upload a config.json (JSON object, at most 256 KiB)",
              description="Send the file as the request body (Content-Type: application/json) or as multipart "
                          "field 'file'. The model is kept in memory only, under the returned id "
                          "(upload:<16 hex digits of its SHA-256>), which the planning endpoints take as model.")
    async def upload(request: Request):
        from starlette.concurrency import run_in_threadpool

        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        filename = None
        if ctype == "multipart/form-data":
            try:
                async with request.form(max_files=1, max_fields=4, max_part_size=UPLOAD_MAX_BYTES) as form:
                    part = form.get("file")
                    if part is None or isinstance(part, str):
                        raise InvalidRequest("multipart upload needs a file field named 'file'", field="file")
                    filename = part.filename
                    data = await part.read(UPLOAD_MAX_BYTES + 1)
            except VramplanError:
                raise
            except Exception as exc:  # noqa: BLE001 - a malformed multipart body
                raise InvalidRequest(f"malformed multipart upload ({exc.__class__.__name__})", field="file") \
                    from None
        elif ctype in ("application/json", "text/json", "text/plain", ""):
            data = await request.body()
            filename = request.query_params.get("filename")
        else:
            return error_response(415, f"upload config.json as application/json, not {ctype!r}", "file")
        key, lm = await run_in_threadpool(models.add_upload, data, filename)
        from ..api import describe_model

        described = await run_in_threadpool(describe_model, lm)
        return {"id": key, **described}

    return app
