#!/bin/sh
# Host firewall (ufw) for a MicroK8s node of subnet ${SUBNET}. Idempotent and declarative:
# it starts from a reset, so a rule removed here is removed on the node too.
# Ports: PRD (16443 API, 80/443 ingress, 10250-10255 kubelet) and what nodes need between each
# other (shared/reference/microk8s.md "Ports"): 25000 cluster agent, 19001 dqlite,
# 4789/udp Calico VXLAN, 10257/10259 controller-manager/scheduler, 7946 tcp/udp MetalLB
# memberlist, 7472 MetalLB metrics. All only from the environment subnet.
set -eu
ufw --force reset >/dev/null
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
ufw allow from ${SERVICE_CIDR}
# SSH: mk8s drives the nodes over it (keys only, root login off).
ufw allow proto tcp from any to any port 22
for port in 16443 80 443 10250:10255 25000 19001 10257 10259 7946 7472; do
  ufw allow proto tcp from ${SUBNET} to any port "$port"
done
for port in 4789 7946; do
  ufw allow proto udp from ${SUBNET} to any port "$port"
done
# NodePorts: from the subnet only. ufw's INPUT rules do not see NodePort traffic once
# kube-proxy has DNAT-ed it to a pod, so drop it earlier, in the raw table, too.
ufw allow proto tcp from ${SUBNET} to any port 30000:32767
ufw allow proto udp from ${SUBNET} to any port 30000:32767
ufw deny proto tcp to any port 30000:32767
ufw deny proto udp to any port 30000:32767
if ! grep -q 'mk8s-nodeports' /etc/ufw/before.rules; then
  cat - /etc/ufw/before.rules > /etc/ufw/before.rules.mk8s <<RULES
# mk8s-nodeports: drop NodePort traffic from outside ${SUBNET} before kube-proxy's DNAT
*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp ! -s ${SUBNET} -m addrtype --dst-type LOCAL --dport 30000:32767 -j DROP
-A PREROUTING -p udp ! -s ${SUBNET} -m addrtype --dst-type LOCAL --dport 30000:32767 -j DROP
COMMIT
RULES
  mv /etc/ufw/before.rules.mk8s /etc/ufw/before.rules
fi
ufw --force enable
