"""Nested JSON lists checked as a dense tensor of numbers before any array is made.

``np.asarray`` on a parsed JSON value trusts it: a list of 150,000 strings, the first 100,000 characters long, asks
for 56 GiB (a ``<U100000`` array). Here the shape is read first (down the first items), then every level is checked
to hold lists of exactly that length, then the leaves' types are counted; only a value that passes is converted,
and its size is then the shape's. The checks run at C speed (``map``/``set`` over each level).
"""

from __future__ import annotations

from array import array as Array
from itertools import chain

import numpy as np

MAX_RANK = 8  # deeper nesting is reported as a wrong shape, not walked


class TensorError(ValueError):
    """A JSON value that is not the dense tensor of numbers asked for; the message is the reason alone."""


def check_containers(body: bytes, limit: int) -> None:
    """Refuses a JSON body holding more than ``limit`` lists and objects, counted on its bytes before parsing (each
    becomes a Python object of 56+ bytes once parsed; brackets inside strings count too, which only errs on the safe
    side).

    Raises:
      TensorError: too many.
    """
    containers = body.count(b"[") + body.count(b"{")
    if containers > limit:
        raise TensorError(f"{containers} lists and objects, more than the {limit} a request may hold")


def leading_shape(value) -> tuple[int, ...]:
    """The shape a nested list claims, read down its first items (a scalar: ``()``; deeper than MAX_RANK: cut)."""
    shape = []
    while isinstance(value, list) and len(shape) <= MAX_RANK:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def dense_leaves(value, shape: tuple[int, ...]) -> list:
    """The leaves of ``value`` in row-major order, given that it holds lists of exactly ``shape`` at every level.

    Raises:
      TensorError: some list is missing, longer or shorter than its level's size.
    """
    items = [value]
    for size in shape:
        if set(map(type, items)) != {list} or set(map(len, items)) != {size}:
            raise TensorError("not a dense tensor (nested lists of unequal lengths)")
        items = list(chain.from_iterable(items))
    return items


_KINDS = {bool: "booleans", float: "decimal numbers", str: "strings", type(None): "nulls", dict: "objects",
          list: "lists nested deeper than the shape"}  # the JSON values a parser gives, by their Python type


def _kinds(refused: set[type]) -> str:
    """The kinds of leaves refused, by their types: "nulls", "booleans and strings"..."""
    names = sorted(_KINDS.get(kind, kind.__name__) for kind in refused)
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def integer_array(value, shape: tuple[int, ...], low: int, high: int, may_hold_booleans: bool = True) -> np.ndarray:
    """``value`` (nested lists of ``shape``) as an int64 array, its leaves integers (not booleans) in low..high.

    ``may_hold_booleans``: whether the JSON text spelt ``true`` or ``false`` anywhere; when not, the leaves are
    converted by ``array.array`` (which refuses anything but integers, and takes booleans for integers) without
    first listing their types, a third of the time for one digit.

    Raises:
      TensorError: not dense, other leaves (floats, booleans, strings…), or integers outside low..high.
    """
    leaves = dense_leaves(value, shape)
    try:
        if may_hold_booleans:
            raise TypeError
        array = np.frombuffer(Array("q", leaves), np.int64).reshape(shape)
    except (TypeError, OverflowError):
        refused = set(map(type, leaves)) - {int}
        if refused:
            raise TensorError(f"its values must be integers {low}..{high}, got {_kinds(refused)}") from None
        try:
            array = np.array(leaves, dtype=np.int64).reshape(shape)
        except OverflowError:
            raise TensorError(f"its values must be integers {low}..{high}, got integers beyond 64 bits") from None
    if array.size and (array.min() < low or array.max() > high):
        raise TensorError(f"its values must lie in {low}..{high}, got {array.min()}..{array.max()}")
    return array


def number_array(value, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` (nested lists of ``shape``) as a float64 array of its numbers (integers or decimals, not
    booleans; NaN and infinities as JSON parsers spell them are kept for the caller to refuse).

    Raises:
      TensorError: not dense, or leaves that are not numbers.
    """
    leaves = dense_leaves(value, shape)
    refused = set(map(type, leaves)) - {int, float}
    if refused:
        raise TensorError(f"its values must be numbers, got {_kinds(refused)}")
    try:
        return np.array(leaves, dtype=np.float64).reshape(shape)
    except OverflowError:
        raise TensorError("its values must be numbers, got integers beyond float64's range") from None
