"""Registry: unknown names, re-registration on re-import, third-party translators through entry points."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.translators import base
from napari_medtrans.translators import (
    ENTRY_POINT_GROUP,
    TranslationOutput,
    Translator,
    TranslatorSpec,
    create_translator,
    list_translators,
    register_translator,
)

NAME = "_test-registry-echo"


class _Echo(Translator):
    def __init__(self, method: str = NAME, gain: float = 1.0):
        super().__init__(TranslatorSpec(method=method), {"gain": gain})
        self.gain = torch.nn.Parameter(torch.tensor(float(gain)))

    def translate(self, x, *, steps=None, generator=None):
        return TranslationOutput(image=torch.tanh(x * self.gain))


@register_translator(NAME)
def _echo(gain: float = 1.0) -> _Echo:
    return _Echo(NAME, gain)


@pytest.fixture
def isolated_registry(monkeypatch):
    """A private copy of the registry, with entry points not yet loaded."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_ENTRY_POINTS_LOADED", False)
    return base._REGISTRY


def test_unknown_name_lists_known_names_and_suggests_close_one():
    with pytest.raises(UnknownChoiceError) as err:
        create_translator("_test-registry-ecko")
    msg = str(err.value)
    assert NAME in err.value.choices and NAME in msg
    assert f"Did you mean {NAME!r}?" in msg
    assert err.value.choices == sorted(list_translators())


def test_registered_factory_builds_with_config():
    model = create_translator(NAME, gain=0.5)
    assert isinstance(model, _Echo) and model.config == {"gain": 0.5}
    out = model.translate(torch.ones(1, 1, 4, 4))
    torch.testing.assert_close(out.image, torch.full((1, 1, 4, 4), float(torch.tanh(torch.tensor(0.5)))))


_MODULE_SOURCE = '''
from napari_medtrans.translators import register_translator
from napari_medtrans.translators.base import Translator, TranslatorSpec

@register_translator("_test-registry-reimport")
def factory(**config):
    return Translator(TranslatorSpec(method="_test-registry-reimport"), config)
'''


def _import_fresh(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(compile(_MODULE_SOURCE, f"<{name}>", "exec"), mod.__dict__)
    return mod


def test_repeated_import_does_not_fail_but_a_clash_does(isolated_registry):
    first = _import_fresh("_medtrans_fake_plugin")
    second = _import_fresh("_medtrans_fake_plugin")  # the same module imported again (reload, pytest re-import)
    assert first.factory is not second.factory
    assert isolated_registry["_test-registry-reimport"] is second.factory
    with pytest.raises(ValueError, match="already registered"):
        _import_fresh("_another_plugin")  # another module claiming a taken name


def _fake_entry_points(mapping, broken=()):
    eps = [
        importlib.metadata.EntryPoint(name=n, value=v, group=ENTRY_POINT_GROUP) for n, v in mapping.items()
    ] + [importlib.metadata.EntryPoint(name=n, value="_no_such_module_xyz:f", group=ENTRY_POINT_GROUP) for n in broken]

    def entry_points(**kw):
        if kw.get("group") == ENTRY_POINT_GROUP:
            return eps
        return []

    return entry_points


def test_entry_point_translators_are_listed_and_built(isolated_registry, monkeypatch):
    plugin = types.ModuleType("_medtrans_ep_plugin")

    def make(gain: float = 2.0):
        return _Echo("third-party-echo", gain)

    plugin.make = make
    monkeypatch.setitem(sys.modules, "_medtrans_ep_plugin", plugin)
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        _fake_entry_points(
            {"third-party-echo": "_medtrans_ep_plugin:make", NAME: "_medtrans_ep_plugin:make"}, broken=["broken-one"]
        ),
    )
    with pytest.warns(UserWarning, match="broken-one"):
        names = list_translators()
    assert "third-party-echo" in names and "broken-one" not in names
    model = create_translator("third-party-echo", gain=3.0)
    assert model.spec.method == "third-party-echo" and model.config == {"gain": 3.0}
    # a name registered in-process is not replaced by a plugin's entry point of the same name
    assert create_translator(NAME).spec.method == NAME


def test_without_the_plugin_the_name_is_unknown(isolated_registry, monkeypatch):
    monkeypatch.setattr(importlib.metadata, "entry_points", _fake_entry_points({}))
    assert "third-party-echo" not in list_translators()
    with pytest.raises(UnknownChoiceError, match="third-party-echo"):
        create_translator("third-party-echo")
