"""Name -> class lookup shared by the student and teacher registries."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def lookup(registry: dict[str, T], name: str, kind: str) -> T:
    """``registry[name]``.

    Raises:
      KeyError: ``name`` is not registered; the message names ``kind`` (e.g.
        ``"student"``) and the registered names. (``config.validate`` rejects
        unknown names earlier, as a ConfigError.)
    """
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"no {kind} {name!r}; registered: {sorted(registry)}") from None
