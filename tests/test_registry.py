"""The one registry shape every extension point is built on."""

import sys
import types

import pandas as pd
import pytest

from robustbench_mm.domain import Family, Task, cells, clean_cells, parse_task
from robustbench_mm.errors import InputError
from robustbench_mm.registry import Registry


def test_decorator_registration_lookup_and_source():
    reg: Registry[object] = Registry("widget")

    @reg.register("square")
    def square(x):
        return x * x

    assert reg.get("square") is square
    assert reg.source("square") == __name__
    assert "square" in reg and list(reg) == ["square"]


def test_a_miss_lists_the_available_names():
    reg: Registry[int] = Registry("widget")
    reg.add("one", 1)
    reg.add("two", 2)
    with pytest.raises(InputError, match=r"unknown widget 'three'; expected one of: one, two"):
        reg.get("three")


def test_the_same_name_with_another_object_is_refused_naming_the_first():
    reg: Registry[object] = Registry("widget")
    reg.add("x", object(), source="plugin a.py")
    with pytest.raises(InputError, match="already registered by plugin a.py"):
        reg.add("x", object())


def test_lazy_entries_import_on_first_use(monkeypatch):
    module = types.ModuleType("rbmm_lazy_probe")
    module.thing = object()
    monkeypatch.setitem(sys.modules, "rbmm_lazy_probe", module)
    reg: Registry[object] = Registry("widget")
    reg.lazy("thing", "rbmm_lazy_probe:thing")
    assert reg.names() == ["thing"]
    assert reg.get("thing") is module.thing
    assert reg.source("thing") == "rbmm_lazy_probe"
    reg.lazy("missing", "rbmm_lazy_probe:nope")
    with pytest.raises(InputError, match="has no attribute 'nope'"):
        reg.get("missing")


def test_entry_points_are_listed_and_loaded(monkeypatch):
    import importlib.metadata as md

    module = types.ModuleType("rbmm_ep_probe")
    module.plug = object()
    monkeypatch.setitem(sys.modules, "rbmm_ep_probe", module)
    ep = md.EntryPoint(name="plugged", value="rbmm_ep_probe:plug", group="robustbench_mm.widgets")
    monkeypatch.setattr(md, "entry_points", lambda group=None: [ep] if group == "robustbench_mm.widgets" else [])
    reg: Registry[object] = Registry("widget")
    assert "plugged" in reg.names()
    assert reg.source("plugged").startswith("entry point plugged")
    assert reg.get("plugged") is module.plug


def test_enums_are_their_strings_and_parse_with_a_one_line_error():
    assert Family.CLEAN == "clean" and f"{Task.REGRESSION}" == "regression"
    assert parse_task("classification") is Task.CLASSIFICATION
    with pytest.raises(InputError, match="unknown manifest field task 'ranking'; expected one of: classification, regression"):
        parse_task("ranking", "manifest field task")


def test_table_helpers_select_cells_by_family_and_columns():
    df = pd.DataFrame({"family": ["clean", "removal", "removal", "corruption"], "rate": [1.0, 1.0, 0.5, 1.0]})
    assert clean_cells(df).index.tolist() == [0]
    assert cells(df, Family.REMOVAL, rate=1).index.tolist() == [1]
    assert cells(df, rate=1.0).index.tolist() == [0, 1, 3]


def test_names_keep_declaration_order_when_a_lazy_entry_resolves(monkeypatch):
    module = types.ModuleType("rbmm_order_probe")
    module.middle = object()
    monkeypatch.setitem(sys.modules, "rbmm_order_probe", module)
    reg: Registry[object] = Registry("widget")
    reg.add("first", 1)
    reg.lazy("middle", "rbmm_order_probe:middle")
    reg.add("last", 3)
    reg.get("middle")
    assert reg.names() == ["first", "middle", "last"]
    assert reg["middle"] is module.middle
    reg.remove("middle")
    assert reg.names() == ["first", "last"]


def test_a_lazy_module_that_registers_by_decorator_on_import_is_that_entry(monkeypatch):
    reg: Registry[object] = Registry("widget")
    module = types.ModuleType("rbmm_decorating_probe")

    def thing():
        return None

    module.thing = thing
    original = __import__("importlib").import_module

    def importing(name, *a):
        if name == "rbmm_decorating_probe":
            reg.add("thing", thing, source="decorated")
            return module
        return original(name, *a)

    monkeypatch.setattr("importlib.import_module", importing)
    reg.lazy("thing", "rbmm_decorating_probe:thing")
    assert reg.get("thing") is thing and reg.source("thing") == "decorated"
