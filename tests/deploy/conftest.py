"""The real kube-apiserver + etcd harness (tests/support/envtest.py, taken unchanged from the
conformance work) for the deploy edge tests."""

from __future__ import annotations

from tests.support.envtest import kube_apiserver

__all__ = ["kube_apiserver"]
