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


def checked_number(name: str, convert, ok, expected: str, out_of_range: str):
    """An argument type: ``convert`` the text (else "expected <expected>, got 'text'"), then require ``ok(value)``
    (else "<out_of_range>, got value"). Both errors are argparse's ArgumentTypeError, printed as they are."""

    def parse(text: str):
        import argparse

        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{out_of_range}, got {value}")
        return value

    parse.__name__ = name
    return parse


positive_int = checked_number("positive_int", int, lambda v: v >= 1, "a whole number", "must be at least 1")
fraction = checked_number("fraction", float, lambda v: 0.0 < v <= 1.0, "a number between 0 and 1",
                          "must be in (0, 1]")


def token_budget(text: str) -> int:
    import argparse

    from ..units import parse_token_budget

    try:
        return parse_token_budget(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def tokens(text: str) -> int:
    import argparse

    from ..units import parse_tokens

    try:
        return parse_tokens(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
