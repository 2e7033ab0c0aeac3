"""The one small exception tree of vramplan.

    VramplanError                      base; the CLI and the web translate it once each
    +-- InvalidModelSpec(ValueError)   a config or header field is missing, mistyped or absurd (.field names it)
    +-- InvalidRequest(ValueError)     a plan option is impossible or out of range (.field names it)
    +-- UnknownName(LookupError)       a model, GPU, format or engine name is not known (.suggestions)
    +-- SourceError(OSError)           a file, directory or remote artefact cannot be read safely

Messages speak of the domain (fields, values, models), never of command-line flags.
"""

from __future__ import annotations


class VramplanError(Exception):
    """Base of every error vramplan raises on purpose."""


class InvalidModelSpec(VramplanError, ValueError):
    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(f"{message} in '{field}'" if field else message)


class InvalidRequest(VramplanError, ValueError):
    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class UnknownName(VramplanError, LookupError):
    def __init__(self, kind: str, name: str, suggestions: list[str] | tuple[str, ...] = ()):
        self.kind = kind
        self.name = name
        self.suggestions = list(suggestions)
        msg = f"unknown {kind} {name!r}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        super().__init__(msg)

    def __str__(self) -> str:  # LookupError would quote the whole message
        return self.args[0]


class SourceError(VramplanError, OSError):
    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)

    def __str__(self) -> str:
        return self.args[0]


def suggest(name: str, candidates, n: int = 3) -> list[str]:
    """Close matches for a mistyped name ("did you mean")."""
    import difflib

    low = name.lower()
    cands = list(candidates)
    lowmap: dict[str, str] = {}
    for c in cands:
        lowmap.setdefault(c.lower(), c)
    out = [lowmap[m] for m in difflib.get_close_matches(low, list(lowmap), n=n, cutoff=0.6)]
    if len(out) < n:
        for c in cands:
            if low and low in c.lower() and c not in out:
                out.append(c)
            if len(out) >= n:
                break
    return out[:n]
