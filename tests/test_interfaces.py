"""
Every implementer of an ocpptw interface, checked with C{verifyObject}.

The objects are taken from real gateways (embedded store, REST backend,
RabbitMQ) built on a memory reactor, plus the few made per connection; an
inventory of the package's classes makes sure a new implementer cannot be
added without being checked here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from zope.interface import providedBy
from zope.interface.verify import verifyObject

import ocpptw
from ocpptw import interfaces
from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config

OURS = {
    value
    for value in vars(interfaces).values()
    if isinstance(value, type(interfaces.IBackend)) and value.__module__ == interfaces.__name__
}


def _reachable(root: Any, depth: int = 8) -> list[Any]:
    """Objects reachable from C{root} through attributes, containers, bound methods and closures."""
    seen: dict[int, Any] = {}
    frontier = [root]
    for _ in range(depth):
        following = []
        for obj in frontier:
            if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type)) or obj is None:
                continue
            seen[id(obj)] = obj
            if isinstance(obj, dict):
                following += list(obj.values())
            elif isinstance(obj, (list, tuple, set, frozenset)):
                following += list(obj)
            else:
                try:
                    following += list(vars(obj).values())
                except TypeError:
                    pass
                if hasattr(obj, "__dataclass_fields__"):
                    following += [getattr(obj, f) for f in obj.__dataclass_fields__]
                if inspect.ismethod(obj):
                    following.append(obj.__self__)
                if inspect.isfunction(obj):
                    following += [cell.cell_contents for cell in obj.__closure__ or ()]
        frontier = following
    return list(seen.values())


def _implementers(tmp_path) -> list[Any]:
    found = []
    shapes = [{}, {"BACKEND_API_URL": "http://127.0.0.1:1/"}, {"ENABLE_RABBITMQ": "true"}]
    for n, shape in enumerate(shapes):
        settings = {"DATA_DIR": str(tmp_path / str(n)), "PORT": "0", **shape}
        gateway = make_gateway(load_config("", settings, {}, hostname="iface"), MemoryReactorClock())
        found += [obj for obj in _reachable(gateway) if OURS & set(providedBy(obj))]
    # a worker of WORKERS without a broker: its commands go through the parent
    worker = make_gateway(load_config("", {"DATA_DIR": str(tmp_path / "w"), "PORT": "0"}, {}, hostname="iface"), MemoryReactorClock(), worker=1)
    found += [obj for obj in _reachable(worker) if OURS & set(providedBy(obj))]
    from ocpptw.transport.handshake import ChargerConnection

    found.append(ChargerConnection("CP-1", object()))
    return found


def test_every_implementer_provides_what_it_declares(tmp_path):
    checked = set()
    for obj in _implementers(tmp_path):
        for iface in providedBy(obj):
            if iface in OURS:
                assert verifyObject(iface, obj), (type(obj), iface)
                checked.add(type(obj))
    declared = set()
    for module in pkgutil.walk_packages(ocpptw.__path__, "ocpptw."):
        if module.name.startswith(("ocpptw.sim", "ocpptw.testing")):
            continue
        for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if cls.__module__ == module.name and any(iface.implementedBy(cls) for iface in OURS):
                declared.add(cls)
    assert declared - checked == set(), "implementers never checked: add them to this test"


@pytest.mark.parametrize("iface", sorted(OURS, key=lambda i: i.__name__))
def test_every_interface_has_an_implementer_in_the_package(iface):
    """No interface is left without a product implementation (a probe in disguise)."""
    found = False
    for module in pkgutil.walk_packages(ocpptw.__path__, "ocpptw."):
        if module.name.startswith(("ocpptw.sim", "ocpptw.testing")):
            continue
        for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if cls.__module__ == module.name and iface.implementedBy(cls):
                found = True
    assert found, iface
