"""附录 Python 小知识：页面上的每条说法都在这里独立验证一遍。"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import pytest


class OnlyRepr:
    def __repr__(self):
        return "R"


class OnlyStr:
    def __str__(self):
        return "S"


class Both(OnlyRepr):
    def __str__(self):
        return "S"


def test_str_falls_back_to_repr_but_not_the_other_way():
    assert str(OnlyRepr()) == "R" and f"{OnlyRepr()}" == "R"
    assert repr(OnlyStr()).startswith("<") and "object at 0x" in repr(OnlyStr())


def test_print_and_fstrings_use_str_containers_use_repr(capsys):
    b = Both()
    print(b, [b], f"{b}", f"{b!r}")
    assert capsys.readouterr().out == "S [R] S R\n"


def test_isinstance_accepts_subclasses_tuples_and_abcs():
    assert True.__class__ is bool and bool.__mro__[1] is int and isinstance(True, int)
    assert isinstance(3, (str, int))
    assert isinstance(np.float64(1.0), float) and not isinstance(np.float32(1.0), float)
    assert isinstance(np.float32(1.0), numbers.Real)
    assert isinstance((1, 2), Sequence) and not isinstance(np.zeros(2), Sequence)


class Num:
    def __init__(self, v):
        self.v = v

    def __add__(self, other):
        if isinstance(other, numbers.Real):
            return Num(self.v + other)
        if isinstance(other, Num):
            return Num(self.v + other.v)
        return NotImplemented

    def __radd__(self, other):
        return self + other


def test_reflected_operator_is_tried_after_notimplemented():
    assert (2).__add__(Num(1)) is NotImplemented
    assert (2 + Num(1)).v == 3
    assert sum([Num(1), Num(2)]).v == 3
    with pytest.raises(TypeError, match="unsupported operand"):
        Num(1) + "x"


def test_subclass_reflected_method_goes_first():
    calls = []

    class A:
        def __add__(self, other):
            calls.append("A.__add__")
            return NotImplemented

    class B(A):
        def __radd__(self, other):
            calls.append("B.__radd__")
            return "B"

    assert A() + B() == "B"
    assert calls == ["B.__radd__"]
