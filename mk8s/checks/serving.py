"""Is the sample app served? The LoadBalancer and ingress criteria, judged from what answered.

"Answered" means the sample app itself answered: agnhost netexec's `/hostname` prints the
name of the pod that served the request, so a reply counts only when it is the name of a
current, Ready pod of the app. A 5xx from the controller, its default backend, a maintenance
page or a pod of an old ReplicaSet are all answers that are not the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

from mk8s.checks.cluster import HttpProbe, IngressFact
from mk8s.checks.verdict import Verdict, failed, passed
from mk8s.inventory.model import IPRange


@dataclass(frozen=True)
class Answer:
    """One request for the app's host, and the way it went (`via`: LB IP, node)."""

    via: str
    probe: HttpProbe


def answer_problem(answer: Answer, pods: Sequence[str]) -> str | None:
    """Why this answer is not the app's, or None when a current pod answered."""
    probe = answer.probe
    if probe.status is None:
        return f"{answer.via}: no answer ({probe.error or 'no connection'})"
    body = probe.body.strip()
    if probe.status != 200:
        return f"{answer.via}: HTTP {probe.status} ({_excerpt(body)})"
    if body not in pods:
        current = ", ".join(pods) or "none Ready"
        return (
            f"{answer.via}: HTTP 200 but {_excerpt(body)} is not a current app pod "
            f"(Ready pods: {current})"
        )
    return None


def _excerpt(body: str, limit: int = 60) -> str:
    text = " ".join(body.split())
    if not text:
        return "empty body"
    return repr(text if len(text) <= limit else text[:limit] + "...")


def loadbalancer(
    service: str,
    ingress_ips: Sequence[str],
    pool: IPRange,
    answer: Answer | None,
    pods: Sequence[str],
) -> Verdict:
    """A LoadBalancer Service got an IP from the env's MetalLB range, and through that IP,
    with the app's Host header, a current pod of the sample app answered."""
    expected = f"an IP in {pool} through which a current app pod answers"
    if not ingress_ips:
        return failed("no ingress IP", expected, f"{service}: MetalLB assigned no IP")
    ip = ingress_ips[0]
    try:
        addr = ip_address(ip)
    except ValueError:
        return failed(ip, expected, f"{service}: ingress {ip!r} is not an IP address")
    if not isinstance(addr, IPv4Address) or addr not in pool:
        return failed(ip, expected, f"{service}: IP {ip} is outside the MetalLB range {pool}")
    if answer is None:
        return failed(ip, expected, f"{service}: {ip} in the pool was never probed")
    problem = answer_problem(answer, pods)
    if problem:
        return failed(ip, expected, f"{service}: {problem}")
    return passed(
        ip, expected, f"{service}: {ip} in {pool}; pod {answer.probe.body.strip()} answered"
    )


def ingress(
    ingresses: Sequence[IngressFact],
    namespace: str,
    host: str,
    service: str,
    answers: Sequence[Answer],
    pods: Sequence[str],
) -> Verdict:
    """The app's own Ingress routes `host` to `service`, no Ingress elsewhere claims the host,
    and every way in (each node's controller, the LB IP) reaches a current app pod."""
    expected = f"Ingress in {namespace} routes {host} -> {service}; every way in reaches the app"
    routed = [i for i in ingresses if i.namespace == namespace and (host, service) in i.routes]
    problems: list[str] = []
    if not routed:
        seen = sorted({f"{i.namespace}/{i.name}: {h}->{s}" for i in ingresses
                       for h, s in i.routes if h == host}) or ["none"]  # fmt: skip
        problems.append(
            f"no Ingress in {namespace} routes {host} to service {service} "
            f"(routes for {host}: {', '.join(seen)})"
        )
    # Two Ingresses for one host: the controller merges or picks one, so the old one may win.
    strays = [
        i for i in ingresses if i.namespace != namespace and any(h == host for h, _ in i.routes)
    ]
    problems += [
        f"Ingress {i.namespace}/{i.name} outside {namespace} also claims {host} (stale?)"
        for i in strays
    ]
    if not answers:
        problems.append("no request was sent through the ingress")
    bad = [p for a in answers if (p := answer_problem(a, pods))]
    problems += bad
    measured = f"{len(answers) - len(bad)}/{len(answers)} ways in reached the app"
    if problems:
        return failed(measured, expected, "; ".join(problems))
    ref = f"{routed[0].namespace}/{routed[0].name}"
    return passed(
        measured, expected, f"Ingress {ref}: {host} reached the app via {len(answers)} ways in"
    )
