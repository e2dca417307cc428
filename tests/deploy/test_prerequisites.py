"""What deploy checks before anything runs: every piece of the overlay MicroK8s does not ship
(Velero's CRDs, Argo CD, csi-driver-nfs, the Rook Ceph driver and connection), each missing
one named with its install command. Judged on recorded facts of the real built overlays."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mk8s.deploy import prerequisites as pre
from mk8s.edges.kube import Obj, Ref
from mk8s.inventory.load import load_environment
from tests.manifests.conftest import ROOT, render


@pytest.fixture(scope="module")
def overlays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    scratch = tmp_path_factory.mktemp("prereq")
    return {
        name: render(load_environment(str(ROOT / "inventory" / f"{name}.yaml")), scratch).objects
        for name in ("dev", "prod")
    }


def ceph_secret(fsid: str) -> Obj:
    # As .rook-import-external-cluster.sh creates it (kubectl create secret --from-literal).
    return {"data": {"fsid": base64.b64encode(fsid.encode()).decode(), "ceph-username": "x"}}


def healthy(needs: pre.Needs) -> tuple[dict[tuple[str, str], bool], dict[Ref, Obj | None]]:
    served = dict.fromkeys(needs.kinds, True)
    present: dict[Ref, Obj | None] = {ref: {"metadata": {}} for ref in needs.objects}
    present[pre.CEPH_MON_SECRET] = ceph_secret(needs.ceph_fsid or "")
    return served, present


def test_prod_needs_velero_argocd_nfs_and_the_ceph_connection(
    overlays: dict[str, list[Obj]],
) -> None:
    needs = pre.needs(overlays["prod"])
    groups = {a.split("/")[0] for a, _ in needs.kinds}
    assert {"velero.io", "argoproj.io", "cert-manager.io", "metallb.io"} <= groups
    assert set(needs.objects) == {
        pre.csi_driver("nfs.csi.k8s.io"),
        pre.csi_driver("rook-ceph.rbd.csi.ceph.com"),
        pre.CEPH_MON_SECRET,
        pre.CEPH_MON_ENDPOINTS,
    }
    prod = load_environment(str(ROOT / "inventory" / "prod.yaml"))
    assert prod.storage.ceph is not None
    assert (needs.ceph_fsid, needs.ceph_pool) == (prod.storage.ceph.cluster_id, "microk8s-rbd0")


def test_a_cluster_with_everything_installed_passes(overlays: dict[str, list[Obj]]) -> None:
    needs = pre.needs(overlays["prod"])
    served, present = healthy(needs)
    assert pre.missing(needs, served, present, "prod") == []


def test_a_fresh_microk8s_names_each_missing_piece_and_its_install_command(
    overlays: dict[str, list[Obj]],
) -> None:
    needs = pre.needs(overlays["prod"])
    served, _ = healthy(needs)
    for key in served:
        if key[0].split("/")[0] in ("velero.io", "argoproj.io"):
            served[key] = False
    lines = pre.missing(needs, served, {}, "prod")
    text = "\n".join(lines)
    assert "the cluster does not serve velero.io/v1 Schedule: Velero's CRDs missing" in text
    assert "velero install --crds-only --dry-run -o yaml" in text
    assert "argoproj.io/v1alpha1 Application: Argo CD missing" in text
    assert "microk8s enable community && microk8s enable argocd" in text
    assert any(
        line.startswith("csi-driver-nfs is not installed")
        and "-f build/prod/helm/csi-driver-nfs.values.yaml" in line
        for line in lines
    )
    assert "the Rook Ceph CSI driver is not installed: microk8s enable rook-ceph" in lines
    assert any(
        "the Ceph connection is missing (Secret rook-ceph-external/rook-ceph-mon)" in line
        and "connect-external-ceph --ceph-conf build/prod/ceph/ceph.conf" in line
        and "--rbd-pool microk8s-rbd0" in line
        for line in lines
    )


def test_ceph_connected_to_another_cluster_fails(overlays: dict[str, list[Obj]]) -> None:
    needs = pre.needs(overlays["prod"])
    served, present = healthy(needs)
    present[pre.CEPH_MON_SECRET] = ceph_secret("another-fsid")
    (line,) = pre.missing(needs, served, present, "prod")
    assert line.startswith(
        f"the connected Ceph cluster is not storage.ceph.cluster_id {needs.ceph_fsid}"
    )
    assert "another-fsid" not in line  # read from a Secret: never echoed


def test_dev_on_hostpath_needs_no_csi_driver(overlays: dict[str, list[Obj]]) -> None:
    needs = pre.needs(overlays["dev"])
    assert needs.objects == ()
    assert needs.ceph_fsid is None


def test_deploy_stops_before_the_dry_run_when_a_piece_is_missing(
    overlays: dict[str, list[Obj]], tmp_path: Path
) -> None:
    from mk8s.deploy import flow
    from mk8s.errors import UserError

    class ServesEveryKindHoldsNothing:
        """A server whose answers are not what is tested here: every kind served, no objects
        (so no CSI driver, no Ceph connection); any write would be a failure."""

        def served(self, api_version: str, kind: str) -> bool:
            return True

        def get(self, ref: Ref) -> Obj | None:
            return None

        def apply(self, obj: Obj, dry_run: bool) -> Obj:
            raise AssertionError(f"applied {Ref.of(obj)} although a prerequisite is missing")

        def list_labelled(self, api_version: str, kind: str, selector: str) -> list[Obj]:
            return []

        def delete(self, ref: Ref) -> None:
            raise AssertionError(f"deleted {ref}")

    with pytest.raises(UserError) as err:
        flow.read_facts(ServesEveryKindHoldsNothing(), overlays["prod"], "prod")
    assert any(line.startswith("csi-driver-nfs is not installed") for line in err.value.lines)


def test_traefik_overlay_needs_the_charts_service(tmp_path: Path) -> None:
    from tests.manifests.conftest import variant

    env = variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    needs = pre.needs(render(env, tmp_path).objects)
    assert pre.TRAEFIK in needs.objects
    served, present = healthy(needs)
    assert pre.missing(needs, served, present, "prod") == []
    del present[pre.TRAEFIK]
    assert pre.missing(needs, served, present, "prod") == [
        "the Traefik chart's Service ingress/traefik is missing: microk8s enable ingress "
        "(channels >= 1.35 install Traefik)"
    ]
