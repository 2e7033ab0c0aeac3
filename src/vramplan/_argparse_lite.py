"""A small command-line parser for the start-up path, API-compatible with the subset of argparse vramplan uses.

Why: importing and building argparse costs about 0.6x of a bare interpreter start (it pulls in gettext and shutil),
and the CLI's start-up target is 3x. Commands declare options with the argparse API; this class records them and
parses ``--opt value``, ``--opt=value``, flags, unique prefixes of long options, and positionals (plain, ``?``,
``*``). ``-h/--help``, and any declaration it does not support, are replayed on the real argparse, so help text and
unusual options behave exactly as argparse's.
"""

from __future__ import annotations

_SUPPORTED = {"type", "default", "choices", "action", "help", "nargs", "dest", "metavar", "required"}


class Unsupported(Exception):
    """A declaration this parser does not handle: the caller falls back to argparse."""


class Namespace:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return f"Namespace({self.__dict__!r})"


class _Arg:
    __slots__ = ("names", "kw", "dest", "positional")

    def __init__(self, names, kw):
        if set(kw) - _SUPPORTED or kw.get("action") not in (None, "store", "store_true", "store_false"):
            raise Unsupported(str(names))
        if kw.get("nargs") not in (None, "?", "*"):
            raise Unsupported(str(names))
        self.names, self.kw = names, kw
        self.positional = not names[0].startswith("-")
        longs = [n for n in names if n.startswith("--")]
        self.dest = kw.get("dest") or (names[0] if self.positional else (longs or names)[0].lstrip("-")).replace(
            "-", "_")

    @property
    def flag(self) -> bool:
        return self.kw.get("action") in ("store_true", "store_false")

    def default(self):
        if self.kw.get("action") == "store_true":
            return self.kw.get("default", False)
        if self.kw.get("action") == "store_false":
            return self.kw.get("default", True)
        if self.kw.get("nargs") == "*" and "default" not in self.kw:
            return []
        return self.kw.get("default")

    def convert(self, text: str, error):
        typ = self.kw.get("type")
        value = text
        if typ is not None:
            try:
                value = typ(text)
            except Exception as exc:  # argparse: ArgumentTypeError's message, else "invalid value"
                if type(exc).__name__ == "ArgumentTypeError":
                    error(f"argument {self.shown()}: {exc}")
                name = getattr(typ, "__name__", "value")
                error(f"argument {self.shown()}: invalid {name} value: {text!r}")
        choices = self.kw.get("choices")
        if choices is not None and value not in choices:
            error(f"argument {self.shown()}: invalid choice: {value!r} (choose from "
                  + ", ".join(repr(c) for c in choices) + ")")
        return value

    def shown(self) -> str:
        return self.dest if self.positional else "/".join(self.names)


class LiteParser:
    def __init__(self, prog: str = "", description: str = "", error=None):
        self.prog, self.description = prog, description
        self.args: list[_Arg] = []
        self.calls: list[tuple[tuple, dict]] = []
        self._error = error

    def add_argument(self, *names, **kw):
        self.calls.append((names, kw))
        self.args.append(_Arg(names, kw))

    def add_argument_group(self, *a, **kw):
        raise Unsupported("argument groups")

    def add_mutually_exclusive_group(self, *a, **kw):
        raise Unsupported("exclusive groups")

    def error(self, message: str):
        raise (self._error or SystemExit)(message)

    def _option(self, token: str) -> _Arg:
        for a in self.args:
            if token in a.names:
                return a
        if token.startswith("--"):
            hits = [a for a in self.args for n in a.names if n.startswith("--") and n.startswith(token)]
            if len({id(a) for a in hits}) == 1:
                return hits[0]
            if hits:
                self.error(f"ambiguous option: {token} could match "
                           + ", ".join(n for a in hits for n in a.names if n.startswith(token)))
        self.error(f"unrecognized arguments: {token}")

    def parse_args(self, argv: list[str]) -> Namespace:
        values = {a.dest: a.default() for a in self.args}
        positionals = [a for a in self.args if a.positional]
        loose: list[str] = []
        i = 0
        only_positional = False
        while i < len(argv):
            tok = argv[i]
            i += 1
            if tok == "--" and not only_positional:
                only_positional = True
                continue
            if not only_positional and tok.startswith("-") and len(tok) > 1 and not _is_number(tok):
                name, eq, inline = tok.partition("=") if tok.startswith("--") else (tok, "", "")
                arg = self._option(name)
                if arg.flag:
                    if eq:
                        self.error(f"argument {arg.shown()}: ignored explicit argument {inline!r}")
                    values[arg.dest] = arg.kw.get("action") == "store_true"
                    continue
                if eq:
                    text = inline
                elif i < len(argv) and (not argv[i].startswith("-") or _is_number(argv[i])):
                    text = argv[i]
                    i += 1
                else:
                    self.error(f"argument {arg.shown()}: expected one argument")
                values[arg.dest] = arg.convert(text, self.error)
            else:
                loose.append(tok)
        for a in positionals:
            nargs = a.kw.get("nargs")
            if nargs == "*":
                values[a.dest] = [a.convert(t, self.error) for t in loose]
                loose = []
            elif loose:
                values[a.dest] = a.convert(loose.pop(0), self.error)
            elif nargs != "?":
                self.error(f"the following arguments are required: {a.dest}")
        if loose:
            self.error("unrecognized arguments: " + " ".join(loose))
        for a in self.args:
            if a.kw.get("required") and values[a.dest] is None:
                self.error(f"the following arguments are required: {a.shown()}")
        return Namespace(**values)


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False
