"""The PRD's security, networking, storage and operations rules, read off the built objects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mk8s.render.manifests import KUBELET_DIR
from tests.manifests.conftest import Rendered, variant

Obj = dict[str, Any]
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob")


def pod_specs(r: Rendered) -> Iterator[tuple[str, Obj]]:
    for o in r.objects:
        if o["kind"] in WORKLOADS:
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]


def containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def team_namespaces(r: Rendered) -> list[str]:
    return [t.name for t in r.env.teams]


# --- security ------------------------------------------------------------------------------


def test_every_team_namespace_is_restricted_quota_bound_and_default_deny(
    each_env: Rendered,
) -> None:
    assert team_namespaces(each_env), "the shipped inventories define at least one team"
    for ns in [*team_namespaces(each_env), "sample-app"]:
        labels = each_env.get("Namespace", ns)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", ns
        assert each_env.get("ResourceQuota", "compute", ns)["spec"]["hard"]
        assert each_env.get("LimitRange", "defaults", ns)
        deny = each_env.get("NetworkPolicy", "default-deny", ns)["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, ns
        dns = each_env.get("NetworkPolicy", "allow-dns", ns)["spec"]["egress"][0]["ports"]
        assert {(p["protocol"], p["port"]) for p in dns} == {("UDP", 53), ("TCP", 53)}
        from_ingress = each_env.get("NetworkPolicy", "allow-from-ingress", ns)["spec"]["ingress"]
        sources = [f["namespaceSelector"]["matchLabels"] for f in from_ingress[0]["from"]]
        assert {"kubernetes.io/metadata.name": "ingress"} in sources


def test_team_quota_and_groups_come_from_the_inventory(each_env: Rendered) -> None:
    for team in each_env.env.teams:
        hard = each_env.get("ResourceQuota", "compute", team.name)["spec"]["hard"]
        assert hard["limits.cpu"] == team.quota.cpu
        assert hard["limits.memory"] == team.quota.memory
        assert hard["pods"] == str(team.quota.pods)
        leads = each_env.get("RoleBinding", "namespace-admin", team.name)
        assert (leads["roleRef"]["name"], leads["subjects"][0]["name"]) == (
            "admin",
            team.leads_group,
        )
        devs = each_env.get("RoleBinding", "developer", team.name)
        assert (devs["roleRef"]["name"], devs["subjects"][0]["name"]) == (
            "edit",
            team.developers_group,
        )


def test_rbac_matrix_binds_sre_as_cluster_admin_and_auditors_read_only(each_env: Rendered) -> None:
    access = each_env.env.access
    bindings = {
        (b["roleRef"]["name"], s["name"])
        for b in each_env.of_kind("ClusterRoleBinding")
        for s in b["subjects"]
        if s["kind"] == "Group"
    }
    assert ("cluster-admin", access.cluster_admin_group) in bindings
    assert ("view", access.auditor_group) in bindings
    auditor_roles = {role for role, group in bindings if group == access.auditor_group}
    assert "cluster-admin" not in auditor_roles and "edit" not in auditor_roles
    read = each_env.get("ClusterRole", "mk8s-auditor-cluster-read")
    for rule in read["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        assert "secrets" not in rule["resources"]


def test_every_container_has_limits_runs_as_non_root_and_drops_all_capabilities(
    each_env: Rendered,
) -> None:
    for where, spec in pod_specs(each_env):
        pod_nonroot = spec.get("securityContext", {}).get("runAsNonRoot")
        for c in containers(spec):
            name = f"{where}/{c['name']}"
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(
                res["limits"]
            ), name
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            if where == "DaemonSet/node-agent":
                # Velero's file-system backup reads every pod's files as root with the default
                # capabilities: the one exception, confined to the `velero` namespace (PSA
                # privileged) and justified for checkov (test_velero_node_agent_...).
                continue
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc.get("runAsNonRoot", pod_nonroot) is True, name


def test_velero_node_agent_keeps_the_capabilities_file_system_backup_needs(
    rendered: dict[str, Rendered],
) -> None:
    # velero@v1.16.1:pkg/install/daemonset.go: RunAsUser 0, default capabilities. Dropping ALL
    # loses DAC_OVERRIDE (reading files other users own) and CHOWN/FOWNER (restoring owners).
    agent = rendered["prod"].get("DaemonSet", "node-agent", "velero")["spec"]["template"]["spec"]
    assert agent["securityContext"]["runAsUser"] == 0
    (container,) = agent["containers"]
    assert container["securityContext"]["capabilities"] == {"drop": ["NET_RAW"]}


def test_velero_server_can_write_its_credentials_under_tmp(
    rendered: dict[str, Rendered],
) -> None:
    # velero@v1.16.1:pkg/cmd/server/config/config.go: credentials go to /tmp/credentials/<ns>,
    # created at start (internal/credentials/file_store.go); the root filesystem is read-only.
    pod = rendered["prod"].get("Deployment", "velero", "velero")["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_no_deployment_an_hpa_scales_sets_replicas(each_env: Rendered) -> None:
    # A replicas field beside an HPA is reset by every forced server-side apply and reverted by
    # Argo CD self-heal: the HPA's minReplicas is the floor instead.
    for hpa in each_env.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        deployment = each_env.get(target["kind"], target["name"], hpa["metadata"]["namespace"])
        assert "replicas" not in deployment["spec"], target["name"]
    floor = {"dev": 2, "stage": 3, "prod": 3}[each_env.env.name]
    assert (
        each_env.get("HorizontalPodAutoscaler", "sample-app", "sample-app")["spec"]["minReplicas"]
        == floor
    )


def test_every_app_has_its_own_service_account(each_env: Rendered) -> None:
    accounts = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in each_env.of_kind("ServiceAccount")
    }
    for o in each_env.objects:
        if o["kind"] in WORKLOADS:
            sa = o["spec"]["template"]["spec"].get("serviceAccountName")
            assert (o["metadata"]["namespace"], sa) in accounts, o["metadata"]["name"]
    app = each_env.get("ServiceAccount", "sample-app", "sample-app")
    assert app["automountServiceAccountToken"] is False
    roles = [b for b in each_env.objects if b["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert not any(s.get("name") == "sample-app" for b in roles for s in b["subjects"])


def test_no_dashboard_in_prod(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    assert "dashboard" not in prod.env.microk8s.addons
    assert not any("dashboard" in str(o["metadata"]).lower() for o in prod.objects)


# --- networking ----------------------------------------------------------------------------


def test_metallb_pool_is_the_inventory_range_in_layer_2(each_env: Rendered) -> None:
    pool = each_env.get("IPAddressPool", "default-addresspool", "metallb-system")
    assert pool["spec"]["addresses"] == [str(each_env.env.network.metallb_range)]
    l2 = each_env.get("L2Advertisement", "default-advertise-all-pools", "metallb-system")
    assert l2["spec"]["ipAddressPools"] == ["default-addresspool"]


CHECKLIST_LIMITS = {"dev": None, "stage": (50, 100), "prod": (200, 400)}


def test_rate_limits_per_env_as_the_checklist_says(each_env: Rendered) -> None:
    want = CHECKLIST_LIMITS[each_env.env.name]
    annotations = each_env.get("Ingress", "sample-app", "sample-app")["metadata"]["annotations"]
    conf = each_env.get("ConfigMap", "nginx-load-balancer-microk8s-conf", "ingress")["data"]
    assert conf["limit-req-status-code"] == "429"
    assert conf["limit-conn-status-code"] == "429"
    if want is None:
        assert "nginx.ingress.kubernetes.io/limit-rps" not in annotations
        assert "http-snippet" not in conf
        return
    rps, burst = want
    assert annotations["nginx.ingress.kubernetes.io/limit-rps"] == str(rps)
    multiplier = int(annotations["nginx.ingress.kubernetes.io/limit-burst-multiplier"])
    assert rps * multiplier == burst
    # The env-wide default for every ingress, per client IP, answered with 429.
    assert (
        f"rate={rps}r/s" in conf["http-snippet"] and "$binary_remote_addr" in conf["http-snippet"]
    )
    assert f"burst={burst}" in conf["location-snippet"]


def test_websocket_friendly_timeouts(each_env: Rendered) -> None:
    conf = each_env.get("ConfigMap", "nginx-load-balancer-microk8s-conf", "ingress")["data"]
    assert int(conf["proxy-read-timeout"]) >= 3600


def test_traefik_gives_the_same_limits_tls_and_routing(
    render_variant: Callable[[Any], Rendered],
) -> None:
    env = variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    r = render_variant(env)
    assert not r.of_kind("ConfigMap"), "no NGINX ConfigMap with Traefik"
    ingress = r.get("Ingress", "sample-app", "sample-app")
    assert ingress["spec"]["ingressClassName"] == "public"  # the add-on's default either way
    assert ingress["spec"]["rules"][0]["host"] == "app.example.com"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == (
        "sample-app-rate-limit@kubernetescrd"
    )
    limit = r.get("Middleware", "rate-limit", "sample-app")["spec"]["rateLimit"]
    assert (limit["average"], limit["burst"], limit["period"]) == (200, 400, "1s")
    assert r.get("Middleware", "rate-limit", "ingress")["spec"] == {"rateLimit": limit}
    assert r.get("TLSOption", "default", "ingress")["spec"]["minVersion"] == "VersionTLS12"


def test_traefik_redirects_plain_http_to_https_like_nginx(
    render_variant: Callable[[Any], Rendered],
) -> None:
    r = render_variant(
        variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    )
    http = r.get("Ingress", "sample-app-http", "sample-app")
    annotations = http["metadata"]["annotations"]
    assert annotations["traefik.ingress.kubernetes.io/router.entrypoints"] == "web"
    assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == (
        "sample-app-redirect-https@kubernetescrd"
    )
    assert http["spec"]["rules"][0]["host"] == "app.example.com"
    redirect = r.get("Middleware", "redirect-https", "sample-app")["spec"]
    assert redirect == {"redirectScheme": {"scheme": "https", "permanent": True}}
    https = r.get("Ingress", "sample-app", "sample-app")["metadata"]["annotations"]
    assert https["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"


def test_traefik_shares_the_charts_service_pinned_and_keeping_client_ips(
    render_variant: Callable[[Any], Rendered],
) -> None:
    env = variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    r = render_variant(env)
    services = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in r.of_kind("Service")}
    assert ("ingress", "ingress-lb") not in services, "a second Service waits for the same IP"
    svc = r.get("Service", "traefik", "ingress")
    assert svc["spec"] == {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}
    assert svc["metadata"]["annotations"] == {
        "metallb.io/loadBalancerIPs": str(env.network.metallb_range.start),
        "mk8s.io/prune": "disabled",  # the chart's object: configured, never deleted
        "mk8s.io/managed-by-label": "Helm",
    }
    # Helm's label survives the overlay's labels: the forced apply never takes it over.
    assert svc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    others = [s for s in r.objects if s["metadata"]["name"] != "traefik"]
    assert {o["metadata"]["labels"]["app.kubernetes.io/managed-by"] for o in others} == {"mk8s"}


# --- TLS and DNS ---------------------------------------------------------------------------


def test_prod_issuer_is_lets_encrypt_prod_over_cloudflare_dns01(
    rendered: dict[str, Rendered],
) -> None:
    prod = rendered["prod"]
    acme = prod.get("ClusterIssuer", "letsencrypt-prod")["spec"]["acme"]
    assert acme["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    (solver,) = acme["solvers"]
    ref = solver["dns01"]["cloudflare"]["apiTokenSecretRef"]
    assert ref == {"name": "cloudflare-api-token", "key": "api-token"}
    cert = prod.get("Certificate", "sample-app-tls", "sample-app")["spec"]
    assert cert["dnsNames"] == ["example.com", "*.example.com"]
    assert cert["issuerRef"]["name"] == "letsencrypt-prod"


@pytest.mark.parametrize("name", ["dev", "stage"])
def test_non_prod_uses_le_staging_over_http01_with_the_public_class(
    rendered: dict[str, Rendered], name: str
) -> None:
    acme = rendered[name].get("ClusterIssuer", "letsencrypt-staging")["spec"]["acme"]
    assert "acme-staging-v02" in acme["server"]
    assert acme["solvers"] == [{"http01": {"ingress": {"ingressClassName": "public"}}}]
    assert not rendered[name].of_kind("ClusterIssuer")[1:]


def test_certificates_renew_60_days_before_expiry(each_env: Rendered) -> None:
    cert = each_env.get("Certificate", "sample-app-tls", "sample-app")["spec"]
    assert cert["renewBefore"] == f"{60 * 24}h"


def test_external_dns_only_in_stage_and_prod_restricted_to_the_env_domain(
    rendered: dict[str, Rendered],
) -> None:
    assert not [
        o for o in rendered["dev"].objects if o["metadata"].get("namespace") == "external-dns"
    ]
    for name in ("stage", "prod"):
        r = rendered[name]
        args = r.get("Deployment", "external-dns", "external-dns")["spec"]["template"]["spec"][
            "containers"
        ][0]["args"]
        assert f"--domain-filter={r.env.ingress.domain}" in args
        assert f"--txt-owner-id=mk8s-{name}" in args
        assert [a for a in args if a.startswith("--domain-filter")] == [
            f"--domain-filter={r.env.ingress.domain}"
        ]


# --- storage -------------------------------------------------------------------------------

CHECKLIST_DEFAULT = {
    "dev": ("microk8s-hostpath", "Delete"),
    "stage": ("sc-nfs", "Delete"),
    "prod": ("sc-ceph-rbd", "Retain"),
}


def test_exactly_one_default_storage_class_per_checklist(each_env: Rendered) -> None:
    classes = each_env.of_kind("StorageClass")
    defaults = [
        c
        for c in classes
        if c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    ]
    assert [(c["metadata"]["name"], c["reclaimPolicy"]) for c in defaults] == [
        CHECKLIST_DEFAULT[each_env.env.name]
    ]
    assert "sc-fast" in {c["metadata"]["name"] for c in classes}


def test_prod_ceph_class_and_connection_come_from_the_inventory(
    rendered: dict[str, Rendered],
) -> None:
    prod = rendered["prod"]
    ceph = prod.env.storage.ceph
    assert ceph is not None
    sc = prod.get("StorageClass", "sc-ceph-rbd")
    # microk8s-core-addons@1.33:addons/rook-ceph/plugin/connect-external-ceph creates
    # microk8s-rbd0 unless told otherwise; the shipped inventory names that pool.
    assert sc["parameters"]["pool"] == ceph.pool == "microk8s-rbd0"
    assert sc["parameters"]["clusterID"] == "rook-ceph-external"
    assert sc["metadata"]["annotations"]["mk8s.io/ceph-fsid"] == ceph.cluster_id
    conf = (prod.directory / "ceph" / "ceph.conf").read_text()
    assert f"fsid = {ceph.cluster_id}\n" in conf
    assert f"mon_host = {','.join(ceph.monitors)}\n" in conf
    keyring = (prod.directory / "ceph" / "keyring.template").read_text()
    assert keyring == f"[client.{ceph.user_id}]\n\tkey = ${{{ceph.user_key_env}}}\n"


def test_stage_nfs_class_uses_the_inventory_export(rendered: dict[str, Rendered]) -> None:
    stage = rendered["stage"]
    sc = stage.get("StorageClass", "sc-nfs")
    nfs = stage.env.storage.nfs
    assert nfs is not None
    assert sc["provisioner"] == "nfs.csi.k8s.io"
    assert sc["parameters"] == {"server": str(nfs.server), "share": nfs.share}
    assert sc["mountOptions"] == nfs.mount_options
    values = (stage.directory / "helm" / "csi-driver-nfs.values.yaml").read_text()
    assert f"kubeletDir: {KUBELET_DIR}" in values


def test_prod_can_fall_back_to_nfs_from_the_inventory(
    render_variant: Callable[[Any], Rendered],
) -> None:
    r = render_variant(variant("prod", storage__default_class="sc-nfs"))
    defaults = [
        c["metadata"]["name"]
        for c in r.of_kind("StorageClass")
        if c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    ]
    assert defaults == ["sc-nfs"]
    assert r.get("StorageClass", "sc-nfs")["reclaimPolicy"] == "Retain"


# --- operations ----------------------------------------------------------------------------


def test_velero_uses_the_microk8s_kubelet_dir_and_checklist_schedules(
    rendered: dict[str, Rendered],
) -> None:
    assert not rendered["dev"].of_kind("Schedule")
    for name in ("stage", "prod"):
        r = rendered[name]
        agent = r.get("DaemonSet", "node-agent", "velero")["spec"]["template"]["spec"]
        paths = [v["hostPath"]["path"] for v in agent["volumes"] if "hostPath" in v]
        assert paths == [f"{KUBELET_DIR}/pods"]
        ttl = {s["metadata"]["name"]: s["spec"]["template"]["ttl"] for s in r.of_kind("Schedule")}
        assert ttl == {
            "daily": "720h0m0s",
            "weekly": "2016h0m0s",
            "monthly": "8760h0m0s",
            "tier1": "48h0m0s",
        }
        scope = {
            s["metadata"]["name"]: s["spec"]["template"]["includedNamespaces"]
            for s in r.of_kind("Schedule")
        }
        # The 15-minute RPO schedule covers the Tier-1 app only; the others the whole cluster.
        assert scope == {"daily": ["*"], "weekly": ["*"], "monthly": ["*"], "tier1": ["sample-app"]}
        bsl = r.get("BackupStorageLocation", "default", "velero")["spec"]
        assert r.env.backup is not None
        assert bsl["config"]["s3Url"] == r.env.backup.target.endpoint


def test_pdbs_cover_platform_components_and_the_sample_app(each_env: Rendered) -> None:
    pdbs = {
        (p["metadata"]["namespace"], p["metadata"]["name"])
        for p in each_env.of_kind("PodDisruptionBudget")
    }
    assert {
        ("sample-app", "sample-app"),
        ("kube-system", "coredns"),
        ("cert-manager", "cert-manager"),
    } <= pdbs
    for p in each_env.of_kind("PodDisruptionBudget"):
        assert p["spec"]["maxUnavailable"] == 1


def test_argocd_auto_syncs_non_prod_and_waits_for_a_human_in_prod(
    rendered: dict[str, Rendered],
) -> None:
    for name, r in rendered.items():
        root = r.get("Application", f"mk8s-{name}", "argocd")["spec"]
        # What `invoke publish` commits, not build/ (git-ignored: Argo CD would find nothing).
        assert root["source"]["path"] == f"clusters/{name}/apps"
        assert root["source"]["repoURL"] == r.env.gitops.repo_url
        assert ("automated" in root["syncPolicy"]) is (name != "prod")


@pytest.mark.parametrize(("name", "days"), [("dev", 14), ("prod", 30)])
def test_monitoring_scrapes_every_30s_and_keeps_logs_per_env(
    rendered: dict[str, Rendered], name: str, days: int
) -> None:
    out = rendered[name].directory / "observability"
    prom = (out / "kube-prometheus-stack.values.yaml").read_text()
    assert "scrapeInterval: 30s" in prom
    loki = (out / "loki-stack.values.yaml").read_text()
    assert f"retention_period: {days * 24}h" in loki


def test_no_secret_value_is_rendered(each_env: Rendered) -> None:
    assert not each_env.of_kind("Secret")
    refs = (each_env.directory / "manifests" / "secrets.json").read_text()
    assert "${" in refs or refs.strip() == "[]"


def test_http01_solver_pods_are_reachable_from_the_ingress_controller(each_env: Rendered) -> None:
    policy = each_env.get("NetworkPolicy", "allow-acme-http01-solver", "sample-app")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"acme.cert-manager.io/http01-solver": "true"}
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8089}]


def test_ingress_controller_gets_a_metallb_address_and_keeps_client_ips(each_env: Rendered) -> None:
    svc = each_env.get("Service", "ingress-lb", "ingress")["spec"]
    assert svc["type"] == "LoadBalancer"
    assert svc["externalTrafficPolicy"] == "Local"
    assert {p["port"] for p in svc["ports"]} == {80, 443}


def test_ingress_address_is_pinned_to_the_first_pool_address_and_published_by_external_dns(
    each_env: Rendered,
) -> None:
    first = str(each_env.env.network.metallb_range.start)
    svc = each_env.get("Service", "ingress-lb", "ingress")
    # metallb@v0.14.9:controller/service.go: metallb.universe.tf/ is the deprecated prefix.
    assert svc["metadata"]["annotations"] == {"metallb.io/loadBalancerIPs": first}
    annotations = each_env.get("Ingress", "sample-app", "sample-app")["metadata"]["annotations"]
    # ExternalDNS >= v0.22 reads external-dns.kubernetes.io/ only (source/annotations).
    assert not any(k.startswith("external-dns.alpha.") for k in annotations)
    if each_env.env.dns.external_dns:
        assert annotations["external-dns.kubernetes.io/target"] == first
    else:
        assert "external-dns.kubernetes.io/target" not in annotations


@pytest.mark.parametrize("count", [0, 3])
def test_any_number_of_inventory_teams_gets_the_same_guard_rails(
    render_variant: Callable[[Any], Rendered], count: int
) -> None:
    teams = [
        {
            "name": f"team-{i}",
            "leads_group": f"team-{i}-leads",
            "developers_group": f"team-{i}-devs",
            "quota": {"cpu": str(2 + i), "memory": f"{4 + i}Gi", "pods": 10 + i},
        }
        for i in range(count)
    ]
    r = render_variant(variant("stage", teams=teams))
    labelled = [
        n["metadata"]["name"]
        for n in r.of_kind("Namespace")
        if n["metadata"]["labels"].get("mk8s.io/team") == "true"
    ]
    assert sorted(labelled) == [t["name"] for t in teams]
    for t in teams:
        ns = t["name"]
        assert r.get("NetworkPolicy", "default-deny", ns)
        assert r.get("ResourceQuota", "compute", ns)["spec"]["hard"]["pods"] == str(
            t["quota"]["pods"]
        )
        assert r.get("RoleBinding", "developer", ns)["subjects"][0]["name"] == t["developers_group"]
