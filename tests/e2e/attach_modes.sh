#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: XDP attach modes.
#
# 1. moatd --mode auto (default) on veths: every interface is "native" in
#    `moatctl status -o json`, with the hardware rejection recorded
#    (rejected.hw), and the kernel agrees (ip link: xdp mode 1 = driver).
# 2. moatd --mode generic: every interface "generic" (kernel: mode 2 = skb),
#    and the same policy gives exactly the same verdicts on real traffic
#    (TCP/UDP/SCTP, IPv4/IPv6, same-node and cross-node).
# 3. The fallback, with tests/tools/attachcheck (moat's own loader,
#    MOAT_MODE_AUTO): a veth takes native; a macvlan and a bridge (no
#    native XDP in their drivers on this kernel) end up generic with the
#    native failure recorded; --mode native on the macvlan fails and says why.
# 4. The fallback inside moatd, on real traffic: node n2 gets a macvlan "mv0"
#    on its uplink (10.99.0.102, fd00:99::102); the external host reaches n2's
#    pods through it; moatd --uplink mv0 attaches there in generic mode (native
#    rejection recorded) and denied external traffic is dropped on mv0 itself:
#    its verdict events say hook "uplink", and n2 forwards none of it.
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
e2e_begin atm

[ -x "$ATTACHCHECK" ] || make -s -C "$E2E_ROOT" O="$O" "$O/tests/tools/attachcheck" >/dev/null ||
	die "cannot build $ATTACHCHECK"

section "lab: n1 app/a1 app/b1, n2 app/a2 app/b2, external host"
lab up "$LAB" --nodes 2 >/dev/null
for n in 1 2; do
	lab pod "$LAB" n$n app/a$n --label app=a >/dev/null
	lab pod "$LAB" n$n app/b$n --label app=b >/dev/null
done
ext_up
lab_load
for w in app/a1 app/a2 app/b1 app/b2 @ext; do serve "$w" --tcp 80,81 --udp 80,81 --sctp 80,81; done
wait_served 81 app/a1 app/a2 app/b1 app/b2 @ext
man_cluster
# b admits a only, on 80
man_put np-b.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: app}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{protocol: TCP, port: 80}, {protocol: UDP, port: 80}, {protocol: SCTP, port: 80}]
EOF

# kernel's view: ip link's xdp.mode (1 driver, 2 skb/generic, 3 hw) of every
# pod veth end, "netns:ifname=mode" sorted
kernel_modes() {
	local p st hv pn
	st=$(lab state "$LAB")
	while read -r p hv node pn; do
		echo "$(ip -n "$node" -j -d link show dev "$hv" | jq -r '.[0].xdp.mode // "none"')"
		echo "$(nsenter --net="$pn" ip -j -d link show dev eth0 | jq -r '.[0].xdp.mode // "none"')"
	done < <(jq -r '.pods[] | "\(.ns)/\(.name) \(.hostVeth) \(.node) \(.netnsPath)"' <<<"$st") | sort | uniq -c |
		awk '{printf "%s%sx%s", (NR > 1 ? " " : ""), $1, $2}'
}
status_modes() { # n -> "count x mode ..." of attached interfaces
	ctl "$1" status -o json | jq -r '[.interfaces[] | select(.attached) | .mode] | group_by(.) |
		map("\(length)x\(.[0])") | join(" ")'
}
enforcement() { # title
	for FAM in 4 6; do
		probe_matrix "$1" <<EOF
$(flows app/a1 app/b1 ok timeout)
$(flows app/a1 app/b2 ok timeout)
$(flows app/a2 app/b1 ok timeout)
$(flows app/b1 app/b2 timeout timeout)
$(flows @ext app/b2 timeout timeout)
$(flows @ext app/a2 ok ok)
$(flows app/b1 app/a2 ok ok)
EOF
	done
}

section "1. --mode auto on veths: native"
moat_start 1
moat_start 2
sync_or_die
for n in 1 2; do
	expect "n$n: interface modes" "$(status_modes $n)" "4xnative"
	expect "n$n: hw rejection recorded, native not rejected" \
		"$(ctl $n status -o json | jq -r '[.interfaces[] | "\(.rejected.hw != null and (.rejected.hw | length) > 0) \(.rejected.native // "-")"] | unique | join(",")')" \
		"true -"
done
expect "kernel: xdp mode of the 8 pod veth ends (1 = driver)" "$(kernel_modes)" "8x1"
enforcement "native"

section "2. --mode generic: same verdicts"
moat_stop 1
moat_stop 2
expect "kernel: nothing attached after uninstall" "$(kernel_modes)" "8xnone"
moat_start 1 --mode generic
moat_start 2 --mode generic
sync_or_die
for n in 1 2; do
	expect "n$n: interface modes" "$(status_modes $n)" "4xgeneric"
done
expect "kernel: xdp mode of the 8 pod veth ends (2 = generic)" "$(kernel_modes)" "8x2"
enforcement "generic"
moat_stop 1
moat_stop 2

section "3. the loader's fallback (attachcheck, MOAT_MODE_AUTO)"
N2=/run/netns/$LAB-n2
ip -n "$LAB-n2" link add mv0 link eth0 type macvlan mode bridge
ip -n "$LAB-n2" link add br9 type bridge
ip -n "$LAB-n2" link set mv0 up
ip -n "$LAB-n2" link set br9 up
ac() { "$ATTACHCHECK" --netns "$N2" "$@" 2>&1 | paste -sd'|'; }
expect "veth eth0 (auto)" "$(ac eth0)" "mode native|why hw: the NIC has no XDP hardware offload (profile and probe)"
expect "macvlan mv0 (auto)" "$(ac mv0)" \
	"mode generic|why hw: the NIC has no XDP hardware offload (profile and probe)|why native: driver has no native XDP: Operation not supported"
expect "bridge br9 (auto)" "$(ac br9)" \
	"mode generic|why hw: the NIC has no XDP hardware offload (profile and probe)|why native: driver has no native XDP: Operation not supported"
rc=0
out=$("$ATTACHCHECK" --netns "$N2" --mode native mv0 2>&1) || rc=$?
expect "macvlan mv0 (--mode native): refused" "$rc $(paste -sd'|' <<<"$out")" \
	"1 mode none|error Operation not supported|why native: driver has no native XDP: Operation not supported"
expect "attachcheck left nothing behind" "$(find /sys/fs/bpf/moat -maxdepth 1 -name 'attachcheck-*' | wc -l) \
$(ip -n "$LAB-n2" -j -d link show dev mv0 | jq -r '.[0].xdp.mode // "none"')" "0 none"

section "4. moatd --uplink on a macvlan: generic fallback, judged there"
ip -n "$LAB-n2" addr add 10.99.0.102/32 dev mv0
ip -n "$LAB-n2" addr add fd00:99::102/128 dev mv0 nodad
mac=$(ip -n "$LAB-n2" -j link show dev mv0 | jq -r '.[0].address')
E=$LAB-ext
ip -n "$E" neigh replace 10.99.0.102 lladdr "$mac" dev eth0 nud permanent
ip -n "$E" neigh replace fd00:99::102 lladdr "$mac" dev eth0 nud permanent
ip -n "$E" route replace 10.102.0.0/16 via 10.99.0.102
ip -n "$E" route replace fd00:1:2::/64 via fd00:99::102
rx0=$(ip -n "$LAB-n2" -j -s link show dev mv0 | jq '.[0].stats64.rx.packets')
FAM=4 probe_matrix "external -> n2 pods via mv0, no daemon" <<EOF
$(flows @ext app/b2 ok ok tcp)
EOF
rx1=$(ip -n "$LAB-n2" -j -s link show dev mv0 | jq '.[0].stats64.rx.packets')
[ $((rx1 - rx0)) -ge 4 ] && pass "external traffic to n2's pods arrives on mv0 ($((rx1 - rx0)) packets)" ||
	fail "external traffic does not arrive on mv0 ($((rx1 - rx0)) packets)"

moat_start 1
moat_start 2 --uplink mv0
sync_or_die
up=$(ctl 2 status -o json | jq -c '.interfaces[] | select(.hook == "uplink")')
expect "n2: uplink mv0 attached, mode" "$(jq -r '"\(.attached) \(.mode)"' <<<"$up")" "true generic"
expect "n2: uplink native rejection recorded" "$(jq -r '.rejected.native' <<<"$up")" \
	"driver has no native XDP: Operation not supported"
expect "kernel: mv0 xdp mode (2 = generic)" "$(ip -n "$LAB-n2" -j -d link show dev mv0 | jq -r '.[0].xdp.mode // "none"')" 2
expect "n2: pod veths still native" "$(ctl 2 status -o json | jq -r '[.interfaces[] | select(.hook != "uplink") | .mode] | unique | join(",")')" native

fwd() { # IPv4 + IPv6 datagrams forwarded by n2
	nsenter --net="$N2" awk '/^Ip: [0-9]/ { print $7 }' /proc/net/snmp
	nsenter --net="$N2" awk '$1 == "Ip6OutForwDatagrams" { print $2 }' /proc/net/snmp6
}
fsum() { fwd | awk '{ s += $1 } END { print s }'; }
seq0=$(ctl 2 -o json observe --last 100000 2>/dev/null | jq -s 'map(.seq) | max // 0')
f0=$(fsum)
for FAM in 4 6; do
	probe_matrix "external -> n2 pods, denied (dropped on mv0)" <<EOF
$(flows @ext app/b2 timeout timeout)
EOF
done
f1=$(fsum)
expect "n2 forwarded none of the denied packets (IPv4+IPv6 ForwDatagrams delta)" "$((f1 - f0))" 0
ev=$(ctl 2 -o json observe --last 100000 2>/dev/null | jq -r --argjson s "$seq0" \
	'select(.seq > $s and .verdict == "deny" and (.src.ip == "10.99.0.200" or .src.ip == "fd00:99::200")) | "\(.hook) \(.ifindex)"' | sort | uniq -c |
	awk '{ printf "%s%s@%s", (NR > 1 ? " " : ""), $2, $3 }')
mvidx=$(ip -n "$LAB-n2" -j link show dev mv0 | jq '.[0].ifindex')
expect "n2: deny events of the external host's probes: hook@ifindex" "$ev" "uplink@$mvidx"
for FAM in 4 6; do
	probe_matrix "external -> n2 pods via mv0, allowed" <<EOF
$(flows @ext app/a2 ok ok)
EOF
done
f2=$(fsum)
[ $((f2 - f1)) -gt 0 ] && pass "allowed external packets were forwarded by n2 ($((f2 - f1)))" ||
	fail "allowed external packets were not forwarded by n2"

e2e_end
