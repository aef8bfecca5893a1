"""Functions made from source text at import, for codecs derived from one declaration.

``dataclasses`` makes ``__init__`` the same way: a function written out field by field runs
several times faster than a loop over the fields, and the store runs these for every event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def make_function(
    name: str, args: str, body: Sequence[str], namespace: dict[str, Any]
) -> Callable[..., Any]:
    """``def name(args): body`` compiled with ``namespace`` as its globals."""
    lines = "\n".join(f"    {line}" for line in body)
    source = f"def {name}({args}):\n{lines}\n"
    scope: dict[str, Any] = {}
    exec(compile(source, f"<jobserver generated {name}>", "exec"), dict(namespace), scope)
    function: Callable[..., Any] = scope[name]
    return function
