"""The inventory contract: one validated `Environment` per `inventory/<env>.yaml`.

Structure and single-field rules live here (pydantic, strict, unknown keys rejected);
rules that relate several fields live in `mk8s.inventory.rules` so that all of them are reported at once.
Field names follow DESIGN.md; they may grow but should not be renamed.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# RFC 1123 host label; node names become hostnames and Kubernetes node names.
HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
CHANNEL = re.compile(r"^(?P<major>1)\.(?P<minor>\d+)/(?P<risk>stable|candidate|beta|edge)$")
SSH_PUBLIC_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com)"
    r" [A-Za-z0-9+/=]{16,}( .*)?$"
)

# Oldest channel mk8s drives: launch configuration 0.2.0 (extraCNIEnv) needs 1.28+, and
# joining by IP literal is enforced from 1.29 (shared/reference/microk8s.md).
MIN_MINOR = 28
# MicroK8s ships NGINX ingress through 1.34 and Traefik from 1.35 (core-addons, 1.35 branch).
LAST_NGINX_MINOR = 34

KNOWN_ADDONS = frozenset(
    {
        "dns",
        "hostpath-storage",
        "metrics-server",
        "dashboard",
        "metallb",
        "ingress",
        "cert-manager",
        "rbac",
        "observability",
        "registry",
        "community",
        "rook-ceph",
        "cis-hardening",
        "ha-cluster",
        "helm",
        "helm3",
        "prometheus",
        "host-access",
    }
)


def _env_var_name(value: str) -> str:
    if not ENV_VAR_NAME.match(value):
        raise ValueError(
            "must name an environment variable (A-Z, 0-9, _), not hold a secret; "
            "put the value in that variable or in secrets_file"
        )
    return value


def _domain(value: str) -> str:
    if not DOMAIN.match(value):
        raise ValueError(f"{value!r} is not a valid DNS domain (lowercase labels, dot separated)")
    return value


EnvVarName = Annotated[str, AfterValidator(_env_var_name)]


def _repo_path(value: str) -> str:
    parts = value.split("/")
    if not all(REPO_PATH_PART.match(p) and p not in (".", "..") for p in parts):
        raise ValueError("must be a relative directory in the repository, like clusters/dev")
    return value


REPO_PATH_PART = re.compile(r"^[A-Za-z0-9._-]+$")
RepoPath = Annotated[str, AfterValidator(_repo_path)]
DomainName = Annotated[str, AfterValidator(_domain)]


class Model(BaseModel):
    """Strict base: unknown keys are errors, no silent coercion of strings to numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class IPRange(Model):
    start: IPv4Address
    end: IPv4Address

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, IPv4Address) and int(self.start) <= int(ip) <= int(self.end)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def parse_ip_range(value: object) -> object:
    """`A-B` in YAML; the model keeps both ends as addresses."""
    if isinstance(value, str):
        parts = value.split("-")
        if len(parts) != 2:
            raise ValueError(f"{value!r} must look like 192.168.10.50-192.168.10.69")
        return {"start": parts[0].strip(), "end": parts[1].strip()}
    return value


class Proxmox(Model):
    endpoint: str = Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    token_id_env: EnvVarName = "PVE_TOKEN_ID"
    token_secret_env: EnvVarName = "PVE_TOKEN_SECRET"
    verify_tls: bool = True
    ca_bundle: str | None = None
    template: str | int
    datastore: str = Field(min_length=1)
    snippets_datastore: str = Field(min_length=1)
    bridge: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    vlan: int | None = Field(default=None, ge=1, le=4094)
    # Parallel clones on one PVE host hit "can't lock file" (bpg/terraform-provider-proxmox#995).
    parallelism: int = Field(default=2, ge=1, le=16)
    # The bpg provider uploads snippets over SSH to each PVE host at the address the API reports;
    # `pve_node: host:port` overrides that address (NAT, a jump port, the lab's fake hosts).
    node_ssh: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+:\d{1,5}$")]] = {}


class Network(Model):
    subnet: IPv4Network
    gateway: IPv4Address
    dns_servers: list[IPv4Address] = Field(min_length=1)
    pod_cidr: IPv4Network = IPv4Network("10.1.0.0/16")
    service_cidr: IPv4Network = IPv4Network("10.152.183.0/24")
    metallb_range: IPRange
    api_vip: IPv4Address | None = None
    mtu: int = Field(default=1500, ge=576, le=9216)

    @field_validator("metallb_range", mode="before")
    @classmethod
    def _range(cls, value: object) -> object:
        return parse_ip_range(value)


class NodeSpec(Model):
    name: str = Field(pattern=HOST_LABEL.pattern)
    vmid: int = Field(ge=100, le=999_999_999)
    ip: IPv4Address
    pve_node: str = Field(min_length=1)


class Size(Model):
    cores: int = Field(ge=1, le=512)
    memory_gib: int = Field(ge=1, le=4096)
    disk_gib: int = Field(ge=10, le=65536)


class Ssh(Model):
    user: str = Field(default="mk8s", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    authorized_keys: list[str] = Field(min_length=1)
    # Where the operator's private key lives (a path, not the key): used by bootstrap.
    private_key_file: str = "~/.ssh/id_ed25519"
    port: int = Field(default=22, ge=1, le=65535)

    @field_validator("authorized_keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if not SSH_PUBLIC_KEY.match(key.strip()):
                raise ValueError(
                    "each entry must be an OpenSSH public key line (ssh-ed25519 AAAA...)"
                )
        return keys


class MicroK8s(Model):
    channel: str
    addons: list[str] = Field(min_length=1)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        match = CHANNEL.match(value)
        if not match:
            raise ValueError(f"{value!r} must look like 1.33/stable (track/risk)")
        if int(match["minor"]) < MIN_MINOR:
            raise ValueError(
                f"{value!r} is older than 1.{MIN_MINOR}, the oldest channel mk8s supports"
            )
        return value

    @field_validator("addons")
    @classmethod
    def _addons(cls, addons: list[str]) -> list[str]:
        unknown = [a for a in addons if a not in KNOWN_ADDONS]
        if unknown:
            raise ValueError(
                f"unknown add-on(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_ADDONS))}"
            )
        if len(set(addons)) != len(addons):
            raise ValueError("add-ons must be listed once each")
        return addons

    @property
    def minor(self) -> int:
        match = CHANNEL.match(self.channel)
        assert match is not None  # validated above
        return int(match["minor"])


class RateLimit(Model):
    rps: int = Field(ge=1)
    burst: int = Field(ge=1)
    status_code: Literal[429, 503] = 429


class Ingress(Model):
    controller: Literal["nginx", "traefik"] = "nginx"
    domain: DomainName
    rate_limit: RateLimit | None = None
    # WebSocket connections stay open; the controller's 60 s default would cut them.
    proxy_timeout_s: int = Field(default=3600, ge=1, le=86400)


class Tls(Model):
    issuer: Literal["letsencrypt-staging", "letsencrypt-prod"]
    challenge: Literal["http-01", "dns-01"]
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    dns01_provider: Literal["cloudflare"] | None = None
    dns01_token_env: EnvVarName | None = None
    wildcard: bool = False
    renew_before_days: int = Field(default=60, ge=1, le=89)


class Dns(Model):
    external_dns: bool = False
    provider: Literal["cloudflare", "manual"] = "manual"
    api_token_env: EnvVarName | None = None


class NfsStorage(Model):
    server: IPv4Address
    share: str = Field(pattern=r"^/\S*$")
    mount_options: list[str] = ["nfsvers=4.1", "rw", "noatime", "hard", "timeo=600"]


class CephStorage(Model):
    cluster_id: str = Field(min_length=1)
    pool: str = Field(min_length=1)
    monitors: list[str] = Field(min_length=1)
    user_id: str = "kubernetes"
    user_key_env: EnvVarName


StorageClassName = Literal["microk8s-hostpath", "sc-nfs", "sc-ceph-rbd"]


class Storage(Model):
    default_class: StorageClassName
    nfs: NfsStorage | None = None
    ceph: CephStorage | None = None
    # sc-fast: an SSD tier on node-local disks (hostpath provisioner on the SSD datastore).
    fast_class: bool = True
    reclaim_policy: Literal["Delete", "Retain"] | None = None


class BackupTarget(Model):
    kind: Literal["s3"] = "s3"
    endpoint: str = Field(pattern=r"^https?://\S+$")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = "us-east-1"
    access_key_env: EnvVarName
    secret_key_env: EnvVarName


class BackupSchedule(Model):
    name: str = Field(pattern=HOST_LABEL.pattern)
    cron: str = Field(pattern=r"^(\S+\s+){4}\S+$")
    ttl_days: int = Field(ge=1, le=3650)
    # Namespaces this schedule backs up; ["*"] is the whole cluster. A frequent schedule for the
    # Tier-1 namespaces is what makes slo.rpo_minutes true without backing up everything often.
    namespaces: list[str] = Field(default=["*"], min_length=1)


class Backup(Model):
    tool: Literal["velero"] = "velero"
    target: BackupTarget
    schedules: list[BackupSchedule] = Field(min_length=1)
    # Velero's file-system backup (kopia/restic) for PV data.
    fs_backup: bool = True


class Slo(Model):
    p95_ms: int = Field(ge=1)
    error_rate: float = Field(ge=0, le=1)
    pod_start_s: int = Field(ge=1)
    availability: float = Field(default=0.999, gt=0, le=1)
    rto_minutes: int = Field(default=60, ge=1)
    rpo_minutes: int = Field(default=15, ge=1)


class LoadTest(Model):
    users: int = Field(default=20, ge=1)
    spawn_rate: int = Field(default=10, ge=1)
    duration_s: int = Field(default=60, ge=5)
    target_rps: int = Field(default=50, ge=1)


class Maintenance(Model):
    """When day-2 tasks may disrupt nodes (mk8s.day2.window; docs/day2.md).

    `window` is a weekday and a start time in UTC (the inventory holds no time zone, so a window
    is the same instant for every operator and in CI); `cadence: monthly` means the first such
    weekday of each month; `ad-hoc` (window and cadence together) means no window.
    """

    window: str = Field(pattern=r"^(ad-hoc|(mon|tue|wed|thu|fri|sat|sun) ([01]\d|2[0-3]):[0-5]\d)$")
    duration_minutes: int = Field(default=60, ge=0, le=24 * 60)
    cadence: Literal["ad-hoc", "weekly", "monthly"] = "ad-hoc"

    @model_validator(mode="after")
    def _window_matches_cadence(self) -> Maintenance:
        if (self.window == "ad-hoc") != (self.cadence == "ad-hoc"):
            raise ValueError(
                f"window {self.window!r} with cadence {self.cadence!r}: ad-hoc goes with ad-hoc, "
                "a weekday window with weekly or monthly"
            )
        if self.window != "ad-hoc" and self.duration_minutes < 1:
            raise ValueError("duration_minutes: a scheduled window needs at least 1 minute")
        return self


class Signer(Model):
    """Someone who may sign this environment's evidence: an allowed_signers line, split."""

    name: str = Field(pattern=r"^[^\s\"]+$")  # e.g. alice@example.com; ssh-keygen's principal
    key: str  # the OpenSSH public key line (Ed25519 recommended), no options

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        if not SSH_PUBLIC_KEY.match(key.strip()):
            raise ValueError("must be an OpenSSH public key line (ssh-ed25519 AAAA...)")
        return key.strip()


class Promotion(Model):
    after: str | None = None
    max_age_hours: int = Field(default=168, ge=1)
    # Who may sign this environment's evidence; the gate refuses evidence signed by anyone else.
    signers: list[Signer] = []
    # Where this environment's runs are kept (relative to the checkout, or absolute to share).
    evidence_dir: str = Field(default="reports", pattern=r"^\S+$")
    # Days the previous environment must have run the target channel after a green upgrade to
    # it before this one is promoted (PRD checklist: prod two weeks after stage); only when the
    # previous environment has upgrade evidence at all (mk8s.promotion.gate).
    soak_days: int = Field(default=14, ge=0)


class Quota(Model):
    cpu: str = "8"
    memory: str = "16Gi"
    pods: int = 50


class Team(Model):
    name: str = Field(pattern=HOST_LABEL.pattern)
    leads_group: str = Field(min_length=1)
    developers_group: str = Field(min_length=1)
    quota: Quota = Quota()


class Access(Model):
    cluster_admin_group: str = "sre"
    auditor_group: str = "auditors"


class Monitoring(Model):
    enabled: bool = True
    stack: Literal["observability", "kube-prometheus-stack"] = "observability"
    scrape_interval_s: int = Field(default=30, ge=5)
    log_retention_days: int = Field(default=14, ge=1)


class GitOps(Model):
    enabled: bool = True
    repo_url: str = Field(default="https://git.example.com/platform/mk8s.git", pattern=r"^\S+$")
    # The branch Argo CD follows and `invoke publish` pushes to.
    revision: str = Field(default="main", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    # This environment's directory in the repository (default clusters/ENV): `invoke publish`
    # commits the built manifests there, the Applications point at it.
    path: RepoPath | None = None
    auto_sync: bool = True


Tier = Literal["dev", "stage", "prod", "lab"]


class Environment(Model):
    """One environment: everything mk8s needs to build, verify and promote it."""

    name: str = Field(pattern=HOST_LABEL.pattern)
    tier: Tier | None = None
    ha: bool = True
    secrets_file: str | None = None
    proxmox: Proxmox
    network: Network
    nodes: list[NodeSpec] = Field(min_length=1)
    size: Size
    ssh: Ssh
    microk8s: MicroK8s
    ingress: Ingress
    tls: Tls
    dns: Dns = Dns()
    storage: Storage
    backup: Backup | None = None
    slo: Slo
    loadtest: LoadTest = LoadTest()
    maintenance: Maintenance = Maintenance(window="ad-hoc")
    promotion: Promotion = Promotion()
    access: Access = Access()
    teams: list[Team] = []
    monitoring: Monitoring = Monitoring()
    gitops: GitOps = GitOps()

    @property
    def effective_tier(self) -> Tier:
        """`tier` when given, else the name when it is one of dev/stage/prod (checked in rules)."""
        if self.tier is not None:
            return self.tier
        if self.name in ("dev", "stage", "prod"):
            return self.name  # type: ignore[return-value]
        return "lab"

    @property
    def first_node(self) -> NodeSpec:
        return self.nodes[0]

    @property
    def api_address(self) -> IPv4Address:
        return self.network.api_vip or self.first_node.ip
