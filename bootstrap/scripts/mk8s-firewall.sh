#!/bin/sh
# Host firewall (ufw) for a MicroK8s node of subnet ${SUBNET}. Idempotent and declarative:
# it starts from a reset, so a rule removed here is removed on the node too, and a re-run
# leaves the same rules (tests/bootstrap/test_firewall_netns.py runs it twice in a namespace).
#
# Ports (shared/reference/microk8s-behaviour.md "cloud-init and the node firewall"), all only
# from the environment subnet: 16443 API, 10250 kubelet, 25000 cluster agent, 19001 dqlite,
# 4789/udp Calico VXLAN, 10257/10259 controller-manager/scheduler, 7946 tcp/udp MetalLB
# memberlist, 7472 MetalLB metrics, and with monitoring node-exporter 9100 and kube-proxy 10249
# (Prometheus scrapes every node's IP from another node's IP; observability sets kube-proxy's
# --metrics-bind-address=0.0.0.0:10249: microk8s-core-addons@1.33:addons/observability/enable).
# Not 10255: MicroK8s 1.33 runs the kubelet with --read-only-port=0
# (microk8s@1.33:microk8s-resources/default-args/kubelet). No rule for the service CIDR:
# service IPs are destinations, never the source of a packet that reaches a node.
set -eu

# Traffic that ufw's INPUT chain never sees is limited in mk8s-edge, a mangle PREROUTING chain
# that ufw-init starts and stops with ufw through its before.init hook (man ufw-framework):
# - the ingress hostPorts 80/443/10254: Calico's portmap plugin DNATs them to the pod in nat
#   PREROUTING (microk8s@1.33:upgrade-scripts/000-switch-to-calico/resources/calico.yaml,
#   "type": "portmap"; hostPorts in microk8s-core-addons@1.33:addons/ingress/ingress.yaml),
#   so they cross FORWARD, where `default allow routed` accepts them;
# - NodePorts, which kube-proxy DNATs the same way.
# mangle PREROUTING runs after conntrack and before nat, so the original port is still there,
# and `--ctstate NEW` leaves alone the replies of pod egress, which Calico masquerades with
# --random-fully to source ports that may lie in 30000-32767. (The former raw-table DROP
# dropped those replies, and ufw never flushes raw, so every reload appended it again.)
# Calico's own mangle PREROUTING chain, which Felix may put in front of ours, accepts only
# established traffic and what host-endpoint policy accepted (projectcalico/calico
# felix/rules/static.go StaticManglePreroutingChain); MicroK8s creates no HostEndpoint (its
# calico.yaml only defines the CRD), so new connections still reach mk8s-edge.
# IPv4 only: MicroK8s' Calico runs with FELIX_IPV6SUPPORT=false (calico.yaml above).
# ufw-init runs `before.init start` twice on a reload (/lib/ufw/ufw-init-functions ufw_reload):
# start flushes and refills the chain and adds the jump only when it is missing.
cat > /etc/ufw/before.init <<'HOOK'
#!/bin/sh
# Written by mk8s-firewall.sh (mk8s); rewritten on every run, do not edit.
set -e
jump="-m conntrack --ctstate NEW -m addrtype --dst-type LOCAL -j mk8s-edge"
case "$1" in
start)
    iptables -t mangle -N mk8s-edge 2>/dev/null || iptables -t mangle -F mk8s-edge
    iptables -t mangle -A mk8s-edge -i lo -j RETURN
    iptables -t mangle -A mk8s-edge -s ${SUBNET} -j RETURN
    iptables -t mangle -A mk8s-edge -s ${POD_CIDR} -j RETURN
    iptables -t mangle -A mk8s-edge -p tcp -m multiport --dports 80,443,10254 -j DROP
    iptables -t mangle -A mk8s-edge -p tcp --dport 30000:32767 -j DROP
    iptables -t mangle -A mk8s-edge -p udp --dport 30000:32767 -j DROP
    iptables -t mangle -C PREROUTING $jump 2>/dev/null || iptables -t mangle -I PREROUTING 1 $jump
    ;;
stop|flush-all)
    while iptables -t mangle -D PREROUTING $jump 2>/dev/null; do :; done
    iptables -t mangle -F mk8s-edge 2>/dev/null || true
    iptables -t mangle -X mk8s-edge 2>/dev/null || true
    ;;
status)
    iptables -t mangle -S mk8s-edge
    ;;
*)
    echo "usage: before.init {start|stop|flush-all|status}" >&2
    exit 1
    ;;
esac
HOOK
chmod 0750 /etc/ufw/before.init

# Nodes set up by an earlier mk8s put the NodePort DROP in the raw table; ufw never removes it
# (it appended one copy per reload): delete every copy.
for proto in tcp udp; do
  while iptables -t raw -D PREROUTING -p "$proto" ! -s ${SUBNET} -m addrtype --dst-type LOCAL \
    --dport 30000:32767 -j DROP 2>/dev/null; do :; done
done

# `ufw reset` renames every *.rules file to NAME.YYYYMMDD_HHMMSS before restoring the defaults
# and prints one "Backing up 'X' to 'PATH'" line per file (ufw 0.36 backend_iptables.py
# reset): delete exactly those, so re-runs do not pile up backups (a same-second second reset
# would even abort on an existing name).
backups=$(LC_ALL=C ufw --force reset | sed -n "s/^Backing up '.*' to '\(.*\)'$/\1/p")
for backup in $backups; do rm -f -- "$backup"; done
ufw default deny incoming
ufw default allow outgoing
# Pod traffic is routed through the host: a dropped FORWARD chain breaks pod networking
# (MicroK8s docs, "Configure host interfaces"; ufw's default routed policy is deny).
ufw default allow routed
ufw allow in on vxlan.calico
ufw allow out on vxlan.calico
ufw allow in on cali+
ufw allow out on cali+
ufw allow from ${POD_CIDR}
# SSH: mk8s drives the nodes over it (keys only, root login off).
ufw allow proto tcp from any to any port 22
# 80/443 here serve only an ingress on the host network; the hostPort path is mk8s-edge's.
for port in 16443 80 443 10250 25000 19001 10257 10259 7946 7472 ${MONITORING_PORTS}; do
  ufw allow proto tcp from ${SUBNET} to any port "$port"
done
for port in 4789 7946; do
  ufw allow proto udp from ${SUBNET} to any port "$port"
done
# NodePorts in ufw's own rules too, so `ufw status` shows the policy (the DROP is mk8s-edge's).
ufw allow proto tcp from ${SUBNET} to any port 30000:32767
ufw allow proto udp from ${SUBNET} to any port 30000:32767
ufw deny proto tcp to any port 30000:32767
ufw deny proto udp to any port 30000:32767
ufw --force enable
