"""What a Kubernetes minor removes, as read (tables for mk8s.day2.upgrade_refusals).

Only rows that were read are here, each citing the line it came from. A flag or API version
missing from a table is not claimed to be safe: it was not found in what was read. For flags,
`FLAG_MINORS_READ` lists the minors whose changelog sections were read ("Urgent Upgrade Notes"
and "Deprecation" of the v1.X.0 notes); a plan to any other minor says so in a note.

Sources (kubernetes/kubernetes@008b3652959ca58af8be3fb5b6ecfe9ae7638282 unless noted):
- CHANGELOG/CHANGELOG-1.34.md, v1.34.0 "Urgent Upgrade Notes";
- CHANGELOG/CHANGELOG-1.35.md, v1.35.0 "Urgent Upgrade Notes" and "API Change";
- CHANGELOG/CHANGELOG-1.36.md, v1.36.0 "Urgent Upgrade Notes" and "Deprecation" (no kubelet or
  kube-apiserver flag removed there);
- CHANGELOG/CHANGELOG-1.37.md @04666cc668c5da88890021a4274bf4444947fe9f: v1.37.0-alpha.1 only
  (a pre-release; no kubelet or kube-apiserver flag removed there);
- kubernetes/website@main:content/en/docs/reference/using-api/deprecation-guide.md ("Removed
  APIs by release": v1.32 and v1.29 are the removals after 1.28, the oldest minor mk8s drives).

MicroK8s strips some removed flags itself: every kubelite start runs `sanitise_args_kubelet`
(and the same for kube-apiserver, kube-proxy, scheduler, controller manager), which deletes the
listed flags from `$SNAP_DATA/args/<service>`, unless `$SNAP_DATA/var/lock/no-arg-sanitisation`
exists (canonical/microk8s@1.35 8c5f9b0: microk8s-resources/wrappers/run-kubelite-with-args,
microk8s-resources/actions/common/utils.sh `sanitise_args_kubelet`, `remove_args`). The target
revision's wrapper is the one that runs after the refresh, so `stripped_by` names the target
branch whose list holds the flag; such a flag is refused only where sanitisation is off.
"""

from __future__ import annotations

from dataclasses import dataclass

K8S = "kubernetes/kubernetes@008b365:CHANGELOG"
MK_SANITISE = "canonical/microk8s@8c5f9b0:microk8s-resources/actions/common/utils.sh"
GUIDE = "kubernetes/website@main:content/en/docs/reference/using-api/deprecation-guide.md"


@dataclass(frozen=True)
class RemovedFlag:
    service: str  # kubelet, kube-apiserver (the MicroK8s args file name)
    flag: str  # --flag-name
    minor: int  # the Kubernetes minor that no longer accepts it
    source: str  # where it was read
    stripped_by: str | None = None  # the target MicroK8s' sanitiser removes it (see above)


@dataclass(frozen=True)
class RemovedApi:
    api_version: str  # group/version
    resource: str  # plural resource name, e.g. flowschemas
    minor: int  # the Kubernetes minor that no longer serves it
    replacement: str  # the API version to migrate to
    source: str


FLAG_MINORS_READ = frozenset({34, 35, 36, 37})

REMOVED_FLAGS: tuple[RemovedFlag, ...] = (
    # "Kubelet: removed the deprecated flag `--cloud-config` from the command line." (#130161)
    # Not in sanitise_args_kubelet on canonical/microk8s@1.34 (b8f8180): it stays and breaks.
    RemovedFlag("kubelet", "--cloud-config", 34, f"{K8S}/CHANGELOG-1.34.md v1.34.0, #130161"),
    # "Removed the `--pod-infra-container-image` flag from `kubelet` command line." (#133779)
    # Listed in sanitise_args_kubelet on canonical/microk8s@1.35 (8c5f9b0, utils.sh line 297).
    RemovedFlag(
        "kubelet",
        "--pod-infra-container-image",
        35,
        f"{K8S}/CHANGELOG-1.35.md v1.35.0, #133779",
        stripped_by=MK_SANITISE,
    ),
)

REMOVED_APIS: tuple[RemovedApi, ...] = (
    # v1.29: "flowcontrol.apiserver.k8s.io/v1beta2 API version of FlowSchema and
    # PriorityLevelConfiguration is no longer served"
    *(
        RemovedApi(
            "flowcontrol.apiserver.k8s.io/v1beta2",
            resource,
            29,
            "flowcontrol.apiserver.k8s.io/v1",
            f"{GUIDE} v1.29",
        )
        for resource in ("flowschemas", "prioritylevelconfigurations")
    ),
    # v1.32: the same for flowcontrol.apiserver.k8s.io/v1beta3
    *(
        RemovedApi(
            "flowcontrol.apiserver.k8s.io/v1beta3",
            resource,
            32,
            "flowcontrol.apiserver.k8s.io/v1",
            f"{GUIDE} v1.32",
        )
        for resource in ("flowschemas", "prioritylevelconfigurations")
    ),
    # 1.34: "resource.k8s.io/v1alpha3 now only contains DeviceTaintRule. All other types got
    # removed" (#132000; alpha, off unless enabled)
    *(
        RemovedApi(
            "resource.k8s.io/v1alpha3",
            resource,
            34,
            "resource.k8s.io/v1 (delete and recreate, per the note)",
            f"{K8S}/CHANGELOG-1.34.md v1.34.0, #132000",
        )
        for resource in (
            "resourceclaims",
            "resourceclaimtemplates",
            "deviceclasses",
            "resourceslices",
        )
    ),
    # 1.35: "Added the `StorageVersionMigration` `v1beta1` API and removed the `v1alpha1` API"
    # (#134784; alpha); its group is storagemigration.k8s.io (kubernetes/website
    # content/en/docs/reference/kubernetes-api: apiVersion storagemigration.k8s.io/v1alpha1)
    RemovedApi(
        "storagemigration.k8s.io/v1alpha1",
        "storageversionmigrations",
        35,
        "storagemigration.k8s.io/v1beta1 (remove v1alpha1 objects first, per the note)",
        f"{K8S}/CHANGELOG-1.35.md v1.35.0, #134784",
    ),
)
