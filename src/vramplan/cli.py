"""The command line: a thin shell over vramplan.api. Every command takes --json and prints the same dict.

Start-up is kept small: argparse and each command's module are imported only when that command runs.
"""

from __future__ import annotations

import sys

# command -> (module under vramplan.commands, one-line help)
COMMANDS = {
    "inference": ("inference", "inference memory per GPU (weights, KV cache, activations, runtime)"),
    "train": ("train", "training memory per GPU (full, LoRA, QLoRA; optimizers; ZeRO/FSDP)"),
    "fit": ("fit", "which GPUs and how many fit a model and workload, cheapest and fastest first"),
    "speed": ("speed", "decode/prefill throughput and training time from the roofline"),
    "launch": ("launch", "the command line to serve a plan with vLLM, SGLang, llama.cpp or Ollama"),
    "table": ("table", "the Llama 3.1 article's tables, reproduced exactly and corrected"),
    "models": ("models", "list the embedded model catalog"),
    "describe": ("describe", "architecture facts and the parameter breakdown of a model"),
    "gpus": ("gpus", "list the GPU catalog"),
    "formats": ("formats", "list weight formats (precisions, quantizations, GGUF mixes)"),
    "serve": ("serve", "start the web calculator and REST API on localhost"),
    "measure": ("measure", "measure real peak memory on the local GPU next to the prediction"),
    "report": ("report", "the full report for one model (the default: vramplan MODEL)"),
}

USAGE = """usage: vramplan MODEL                 full report (parameters, weights, KV cache, training, GPUs, speed)
       vramplan COMMAND [options] [--json]

MODEL is a catalog name (llama-3.1-70b), a Hugging Face id (meta-llama/Llama-3.1-70B), a config.json,
a model directory or a .gguf file. Try:  vramplan llama-3.1-8b   or   vramplan models

commands:
"""


class UsageError(Exception):
    pass


def _usage() -> str:
    return USAGE + "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()) + "\n"


def build_parser(command: str, want_help: bool = False):
    """The command's parser: the small start-up parser, or argparse for help and unsupported declarations."""
    import importlib

    name = f"vramplan.commands.{COMMANDS[command][0]}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise UsageError(f"the '{command}' command is not available in this build") from None
    if not want_help:
        from ._argparse_lite import LiteParser, Unsupported

        p = LiteParser(prog=f"vramplan {command}", description=COMMANDS[command][1], error=UsageError)
        try:
            module.add_arguments(p)
            if not any(a.dest == "json" for a in p.args):
                p.add_argument("--json", action="store_true")
            return p, module
        except Unsupported:
            pass
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, exit 2, no usage dump
            raise UsageError(message)

    p = Parser(prog=f"vramplan {command}", description=COMMANDS[command][1])
    module.add_arguments(p)
    if not any(a.dest == "json" for a in p._actions):
        p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    return p, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"vramplan {__version__}")
        return 0
    command = argv[0] if argv[0] in COMMANDS else "report"
    args_list = argv[1:] if argv[0] in COMMANDS else argv
    try:
        parser, module = build_parser(command, want_help=any(a in ("-h", "--help") for a in args_list))
        args = parser.parse_args(args_list)
        result = module.run(args)
        code, error = 0, None
        if isinstance(result, dict):  # "_exit" / "_error": an impossible plan, still reported in full
            code, error = int(result.pop("_exit", 0)), result.pop("_error", None)
        if as_json:
            import json

            if error and "error" not in result:
                result["error"] = _one_line(f"vramplan: {error}")
            sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
        else:
            text = module.render(result, args)
            if text:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
        if error:
            sys.stderr.write(_one_line(f"vramplan: {error}") + "\n")
        return code
    except UsageError as exc:
        return _fail(f"vramplan {command}: {exc}", 2, as_json)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, as_json)
    except SystemExit as exc:  # argparse's --help has printed the help: main returns rather than exits
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - the one place errors become a line
        from .errors import VramplanError

        if isinstance(exc, VramplanError):
            return _fail(f"vramplan: {exc}", 1, as_json)
        if isinstance(exc, BrokenPipeError):
            return 1
        raise


def _one_line(message: str) -> str:
    """One line whatever the user typed: a newline or other control character in an echoed value is escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


def _fail(message: str, code: int, as_json: bool) -> int:
    message = _one_line(message)
    if as_json:
        import json

        sys.stdout.write(json.dumps({"error": message}) + "\n")
    sys.stderr.write(message + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
