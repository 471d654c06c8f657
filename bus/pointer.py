"""RFC 6901 JSON pointers, checked at the SDK boundary (the scripts check again)."""

from __future__ import annotations

from oibus.bus.errors import ValidationError
from oibus.bus.limits import PATH_DEPTH


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str) -> str:
    return "".join("/" + escape(t) for t in tokens)


def parse(path: object, field: str = "path") -> list[str]:
    """Split a pointer into unescaped tokens; the empty (whole-document) pointer is refused
    because state is patched at named keys, never replaced wholesale."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValidationError(f"{field}: a path is a JSON pointer starting with '/'", field=field)
    tokens = path[1:].split("/")
    if len(tokens) > PATH_DEPTH:
        raise ValidationError(f"{field}: path is deeper than {PATH_DEPTH} levels", field=field)
    out = []
    for raw in tokens:
        rest = raw.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise ValidationError(
                f"{field}: '~' in a path must be written ~0 (for ~) or ~1 (for /)", field=field
            )
        out.append(raw.replace("~1", "/").replace("~0", "~"))
    return out
