"""A deterministic, valid instance of a JSON schema, seeded by the request hash.

Properties whose name contains "image" reflect the request's images: an array of integers gets
valid indexes into the attached images, an array of strings gets the image URLs / file ids, an
integer gets the image count.
"""

from __future__ import annotations

import random
from typing import Any

_WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo")
_MAX_DEPTH = 12


class _Ctx:
    __slots__ = ("images", "rng", "root")

    def __init__(self, root: dict[str, Any], seed: int, images: list[str]) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.images = images


def instance(schema: dict[str, Any], *, seed: int, images: list[str]) -> Any:
    return _gen(_Ctx(schema, seed, images), schema, "value", 0)


def _resolve(ctx: _Ctx, node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    while isinstance(ref, str) and ref.startswith("#/"):
        target: Any = ctx.root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target if isinstance(target, dict) else {}
        ref = node.get("$ref")
    return node


def _gen(ctx: _Ctx, node: Any, name: str, depth: int) -> Any:
    if not isinstance(node, dict):
        return None
    node = _resolve(ctx, node)
    if "const" in node:
        return node["const"]
    if isinstance(node.get("enum"), list) and node["enum"]:
        return node["enum"][ctx.rng.randrange(len(node["enum"]))]
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if _resolve(ctx, o).get("type") != "null"]
            pool = non_null if non_null and depth < _MAX_DEPTH else options
            return _gen(ctx, pool[ctx.rng.randrange(len(pool))], name, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or kind
        kind = kinds[0] if kinds else None
    if kind is None:
        kind = "object" if "properties" in node else "string"
    return _BY_TYPE.get(kind, _null)(ctx, node, name, depth)


def _object(ctx: _Ctx, node: dict[str, Any], name: str, depth: int) -> Any:
    props = node.get("properties") or {}
    return {key: _gen(ctx, sub, key, depth + 1) for key, sub in props.items()}


def _array(ctx: _Ctx, node: dict[str, Any], name: str, depth: int) -> Any:
    lo = int(node.get("minItems", 0))
    cap = node.get("maxItems")
    hi = int(cap) if cap is not None else max(lo, 3)
    items = _resolve(ctx, node.get("items") or {})
    if "image" in name.lower() and items.get("type") in ("integer", "string"):
        if items["type"] == "integer":
            pool: list[Any] = list(range(len(ctx.images)))
        else:
            pool = list(ctx.images)
        if pool:
            while len(pool) < lo:
                pool.append(pool[len(pool) % len(ctx.images)])
            return pool if cap is None else pool[: int(cap)]
    count = min(hi, max(lo, 1 + ctx.rng.randrange(3))) if depth < _MAX_DEPTH else lo
    return [_gen(ctx, items, name, depth + 1) for _ in range(count)]


def _string(ctx: _Ctx, node: dict[str, Any], name: str, depth: int) -> Any:
    fmt = node.get("format")
    if fmt == "date-time":
        return "2026-11-24T12:00:00Z"
    if fmt == "date":
        return "2026-11-24"
    if fmt == "uuid":
        return f"{ctx.rng.getrandbits(128):032x}"
    word = _WORDS[ctx.rng.randrange(len(_WORDS))]
    text = f"{name} {word} {ctx.rng.randrange(1000)}"
    lo = int(node.get("minLength", 0))
    hi = node.get("maxLength")
    if len(text) < lo:
        text = text + "x" * (lo - len(text))
    if isinstance(hi, int):
        text = text[:hi]
    return text


def _integer(ctx: _Ctx, node: dict[str, Any], name: str, depth: int) -> Any:
    lo, hi = _bounds(node, 0, 100)
    if "image" in name.lower() and lo <= len(ctx.images) <= hi:
        return len(ctx.images)
    return ctx.rng.randint(int(lo), int(hi))


def _number(ctx: _Ctx, node: dict[str, Any], name: str, depth: int) -> Any:
    lo, hi = _bounds(node, 0.0, 1.0)
    return round(lo + (hi - lo) * ctx.rng.random(), 4)


def _bounds(node: dict[str, Any], lo: float, hi: float) -> tuple[float, float]:
    lo = node.get("minimum", node.get("exclusiveMinimum", lo - 1) + 1)
    hi = node.get("maximum", node.get("exclusiveMaximum", hi + 1) - 1)
    if hi < lo:
        hi = lo + 100
    return lo, hi


def _boolean(ctx: _Ctx, node: dict[str, Any], name: str, depth: int) -> Any:
    return ctx.rng.random() < 0.5


def _null(ctx: _Ctx, node: dict[str, Any], name: str, depth: int) -> Any:
    return None


_BY_TYPE = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "null": _null,
}
