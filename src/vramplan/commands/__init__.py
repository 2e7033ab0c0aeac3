"""One module per CLI command: add_arguments(parser), run(args) -> dict, render(result, args) -> str."""


def add_model_arguments(p) -> None:
    p.add_argument("model", help="catalog name, Hugging Face id, config.json, model directory or .gguf file")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.add_argument("--source", default="auto", choices=["auto", "catalog", "hub", "local"],
                   help="where to read the model from (default: a local path, then the catalog, then the Hub)")


def impossible(result: dict, message: str) -> dict:
    """Mark a plan that cannot run: the report is still printed, the command exits 1 and ``message`` (one line) goes
    to standard error, and into --json output as "error"."""
    result["_exit"] = 1
    result["_error"] = message
    return result


def positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def tokens(text: str) -> int:
    import argparse

    from ..units import parse_tokens

    try:
        return parse_tokens(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
