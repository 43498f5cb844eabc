#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: moat enforces on every path real traffic takes, with two nodes,
# one moatd each, TCP, UDP and raw SCTP, IPv4 and IPv6.
#
#   n1: prod/srv1 dev/cli1 dev/bad1 open/o1     n2: prod/srv2 dev/cli2 dev/bad2 open/o2
#   an "external" host (10.99.0.200, fd00:99::200) on the lab's wire bridge,
#   routing the pod CIDRs via the nodes; probe servers (ports 80 and 81) in
#   every pod, both nodes and the external host.
#
# 1. no policy: everything answers (the paths work).
# 2. ingress: prod/srv-ingress lets dev/cli in on 80, the external host in on
#    80, and the node network (10.99.0.0/24 minus the external host) in on
#    81; dev/deny-ingress isolates dev.  Checked for same-node and cross-node
#    pod-to-pod, own node to pod (exempt: kubelet), remote node to pod
#    (judged: 81 yes, 80 no), external to pod, pod to external, and the
#    reverse of allowed flows (denied as new flows, while the replies of the
#    allowed flows pass).  `moatctl explain` and the per-rule counters name
#    the deciding rules.
# 3. egress: dev/cli-egress lets cli out to prod/srv on 80 and to the external
#    host on 81 only; prod/srv-no-egress forbids srv to open anything, yet
#    srv's replies to allowed flows pass.  Pod to own node and to a remote
#    node are judged as egress.
# 4. moatd --no-local-node with the ingress policies again: the own node's
#    traffic is judged like any other source.
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
e2e_begin enfp

section "lab: 2 nodes, 8 pods, an external host, probe servers"
t0=$(ms)
lab up "$LAB" --nodes 2 >/dev/null
for n in 1 2; do
	lab pod "$LAB" n$n prod/srv$n --label app=srv --port 80/tcp >/dev/null
	lab pod "$LAB" n$n dev/cli$n --label app=cli >/dev/null
	lab pod "$LAB" n$n dev/bad$n --label app=bad >/dev/null
	lab pod "$LAB" n$n open/o$n --label app=open >/dev/null
done
ext_up
lab_load
ALL=(prod/srv1 prod/srv2 dev/cli1 dev/cli2 dev/bad1 dev/bad2 open/o1 open/o2 @n1 @n2 @ext)
for w in "${ALL[@]}"; do serve "$w" --tcp 80,81 --udp 80,81 --sctp 80,81; done
wait_served 81 "${ALL[@]}"
man_cluster
pass "lab ready in $(($(ms) - t0)) ms"

section "moatd on both nodes"
t0=$(ms)
moat_start 1
moat_start 2
sync_or_die
pass "2 daemons up and synced in $(($(ms) - t0)) ms"
for n in 1 2; do
	expect "n$n: interfaces attached (2 per pod, all native)" \
		"$(ctl $n status -o json | jq -r '[.interfaces[] | select(.attached) | .mode] | "\(length) \(unique | join(","))"')" "8 native"
done

section "1. no policy: every path answers"
for FAM in 4 6; do
	probe_matrix "no policy" <<EOF
$(flows dev/cli1 prod/srv1 ok ok)
$(flows dev/bad1 prod/srv2 ok ok)
$(flows @n2 prod/srv1 ok ok)
$(flows @ext prod/srv2 ok ok)
$(flows prod/srv1 @ext ok ok)
$(flows open/o2 @n1 ok ok)
EOF
done

NP80='[{protocol: TCP, port: 80}, {protocol: UDP, port: 80}, {protocol: SCTP, port: 80}]'
NP81='[{protocol: TCP, port: 81}, {protocol: UDP, port: 81}, {protocol: SCTP, port: 81}]'
put_ingress() {
	man_put np-srv-ingress.yaml <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: srv-ingress, namespace: prod}
spec:
  podSelector: {matchLabels: {app: srv}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dev}}
      podSelector: {matchLabels: {app: cli}}
    - ipBlock: {cidr: 10.99.0.200/32}
    - ipBlock: {cidr: "fd00:99::200/128"}
    ports: $NP80
  - from:
    - ipBlock: {cidr: 10.99.0.0/24, except: [10.99.0.200/32]}
    - ipBlock: {cidr: "fd00:99::/64", except: ["fd00:99::200/128"]}
    # a pod's own addresses as a CIDR: its region reaches the datapath with
    # its endpoint, where its interface judges it
    - ipBlock: {cidr: $(addr_of dev/bad1 4)/32}
    - ipBlock: {cidr: "$(addr_of dev/bad1 6)/128"}
    ports: $NP81
EOF
	man_put np-dev-deny-ingress.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: dev}
spec:
  podSelector: {}
  policyTypes: [Ingress]
EOF
}

section "2. ingress policies"
put_ingress
sync_or_die
for FAM in 4 6; do
	probe_matrix "ingress, pod to pod" <<EOF
$(flows dev/cli1 prod/srv1 ok timeout)
$(flows dev/cli2 prod/srv2 ok timeout)
$(flows dev/cli1 prod/srv2 ok timeout)
$(flows dev/cli2 prod/srv1 ok timeout)
$(flows dev/bad1 prod/srv1 timeout ok)
$(flows dev/bad1 prod/srv2 timeout ok)
$(flows dev/bad2 prod/srv1 timeout timeout)
$(flows open/o1 prod/srv1 timeout timeout)
$(flows dev/bad1 open/o1 ok ok)
$(flows dev/bad1 open/o2 ok ok)
EOF
	probe_matrix "ingress, node/external to pod" <<EOF
# own node: exempt (kubelet); remote node: judged (only 81 is allowed)
$(flows @n1 prod/srv1 ok ok)
$(flows @n2 prod/srv2 ok ok)
$(flows @n2 prod/srv1 timeout ok)
$(flows @n1 prod/srv2 timeout ok)
$(flows @ext prod/srv1 ok timeout)
$(flows @ext prod/srv2 ok timeout)
$(flows @n1 dev/cli1 ok ok)
$(flows @n2 dev/cli1 timeout timeout)
$(flows @ext dev/cli2 timeout timeout)
EOF
	probe_matrix "ingress, reverse and egress of isolated pods" <<EOF
# dev is isolated for ingress: srv cannot open flows to cli (the replies of
# cli's flows to srv above passed), the external host cannot reach cli, cli
# can reach the external host (no egress policy; replies pass)
$(flows prod/srv1 dev/cli1 timeout timeout)
$(flows prod/srv2 dev/cli1 timeout timeout)
$(flows dev/cli1 @ext ok ok)
$(flows dev/cli2 @ext ok ok)
$(flows dev/cli1 @n2 ok ok)
EOF
done

explain() { # node from to port -> "verdict|decided_by"
	ctl "$1" -o json explain --from "$2" --to "$3" --port "$4" | jq -r '"\(.verdict)|\(.decided_by)"'
}
expect "explain cli1 -> srv1 80/TCP" "$(explain 1 dev/cli1 prod/srv1 80/TCP)" \
	"allow|NetworkPolicy prod/srv-ingress ingress[0]"
expect "explain cli1 -> srv2 81/UDP" "$(explain 2 dev/cli1 prod/srv2 81/UDP)" \
	"deny|NetworkPolicy prod/srv-ingress isolates ingress (no rule allows)"
expect "explain remote node -> srv1 81/SCTP" "$(explain 1 10.99.0.2 prod/srv1 81/SCTP)" \
	"allow|NetworkPolicy prod/srv-ingress ingress[1]"
expect "explain own node -> srv1 80/TCP" "$(explain 1 10.99.0.1 prod/srv1 80/TCP)" \
	"allow|from the pod's own node (always allowed)"
# asked on n1 about a pod of n2: n1 is not that pod's own node (the traffic
# above timed out), whichever daemon is asked
expect "explain on n1: n1 -> srv2 80/TCP" "$(explain 1 10.99.0.1 prod/srv2 80/TCP)" \
	"deny|NetworkPolicy prod/srv-ingress isolates ingress (no rule allows)"
expect "explain on n2: n1 -> srv2 80/TCP" "$(explain 2 10.99.0.1 prod/srv2 80/TCP)" \
	"deny|NetworkPolicy prod/srv-ingress isolates ingress (no rule allows)"
for n in 1 2; do
	v=$(metric $n 'moat_rule_packets_total{rule="' | tr -d '\n')
	d=$(ctl $n metrics | grep -F 'desc="NetworkPolicy prod/srv-ingress isolates ingress' | awk '{print $NF}')
	[ "${d:-0}" -gt 0 ] && pass "n$n: packets dropped by 'prod/srv-ingress isolates ingress': $d" ||
		fail "n$n: no packets counted for 'prod/srv-ingress isolates ingress' (rule counters total $v)"
done

section "3. egress policies"
man_rm np-srv-ingress.yaml
man_rm np-dev-deny-ingress.yaml
man_put np-cli-egress.yaml <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cli-egress, namespace: dev}
spec:
  podSelector: {matchLabels: {app: cli}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: prod}}
      podSelector: {matchLabels: {app: srv}}
    ports: $NP80
  - to:
    - ipBlock: {cidr: 10.99.0.200/32}
    - ipBlock: {cidr: "fd00:99::200/128"}
    ports: $NP81
EOF
man_put np-srv-no-egress.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: srv-no-egress, namespace: prod}
spec:
  podSelector: {matchLabels: {app: srv}}
  policyTypes: [Egress]
EOF
sync_or_die
for FAM in 4 6; do
	probe_matrix "egress, pod to pod" <<EOF
$(flows dev/cli1 prod/srv1 ok timeout)
$(flows dev/cli1 prod/srv2 ok timeout)
$(flows dev/cli2 prod/srv1 ok timeout)
$(flows dev/cli1 open/o1 timeout timeout)
$(flows dev/cli1 open/o2 timeout timeout)
$(flows dev/cli2 dev/bad2 timeout timeout)
$(flows dev/bad1 open/o1 ok ok)
$(flows dev/bad1 open/o2 ok ok)
EOF
	probe_matrix "egress, pod to node/external" <<EOF
$(flows dev/cli1 @ext timeout ok)
$(flows dev/cli2 @ext timeout ok)
$(flows dev/bad1 @ext ok ok)
$(flows dev/cli1 @n1 timeout timeout)
$(flows dev/cli1 @n2 timeout timeout)
$(flows dev/bad1 @n1 ok ok)
$(flows dev/bad2 @n1 ok ok)
EOF
	probe_matrix "egress denied, replies pass" <<EOF
# srv may open nothing, but answers what others open to it
$(flows prod/srv1 dev/cli1 timeout timeout)
$(flows prod/srv1 open/o2 timeout timeout)
$(flows prod/srv2 @ext timeout timeout)
$(flows prod/srv2 @n1 timeout timeout)
$(flows @ext prod/srv1 ok ok)
$(flows @n2 prod/srv1 ok ok)
$(flows open/o1 prod/srv1 ok ok)
$(flows open/o2 prod/srv1 ok ok)
EOF
done
expect "explain cli1 -> o2 80/UDP" "$(explain 1 dev/cli1 open/o2 80/UDP)" \
	"deny|NetworkPolicy dev/cli-egress isolates egress (no rule allows)"
expect "explain cli2 -> external 81/TCP" "$(explain 2 dev/cli2 10.99.0.200 81/TCP)" \
	"allow|NetworkPolicy dev/cli-egress egress[1]"

section "4. moatd --no-local-node, ingress policies again"
man_rm np-cli-egress.yaml
man_rm np-srv-no-egress.yaml
put_ingress
moat_stop 1
moat_stop 2
moat_start 1 --no-local-node
moat_start 2 --no-local-node
sync_or_die
for FAM in 4 6; do
	probe_matrix "--no-local-node" <<EOF
# the own node is judged now: only 81 (node network ipBlock) is allowed
$(flows @n1 prod/srv1 timeout ok)
$(flows @n2 prod/srv2 timeout ok)
$(flows @n1 dev/cli1 timeout timeout)
$(flows @n2 prod/srv1 timeout ok)
$(flows dev/cli1 prod/srv1 ok timeout)
$(flows dev/cli2 prod/srv1 ok timeout)
$(flows @ext prod/srv2 ok timeout)
EOF
done
expect "explain own node -> srv1 80/TCP (--no-local-node)" "$(explain 1 10.99.0.1 prod/srv1 80/TCP)" \
	"deny|NetworkPolicy prod/srv-ingress isolates ingress (no rule allows)"

e2e_end
