#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: revocation of established flows.
#
# Long-lived flows (a "ping N" every 200 ms, echoed back) from app/client1
# (n1) to app/server1 (n1, same node) and app/server2 (n2, cross node), TCP
# and UDP, IPv4 and IPv6.  Once they are flowing, a NetworkPolicy isolating
# the servers for ingress (no rule) is written:
#   default moatd:       every flow stops within a second, silently (the TCP
#                        client sees no RST and no ICMP error, only silence;
#                        the UDP client gets no ICMP error either); the
#                        "revoked" conntrack event and drop reason count it.
#   moatd --no-revoke:   the established flows keep going (their pings are
#                        still echoed seconds later) while new connections
#                        are denied.
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
e2e_begin revk

section "lab: client1 and server1 on n1, server2 on n2; echo servers tcp/7000 udp/7001"
lab up "$LAB" --nodes 2 >/dev/null
lab pod "$LAB" n1 app/client1 --label app=client >/dev/null
lab pod "$LAB" n1 app/server1 --label app=server --port 7000/tcp --port 7001/udp >/dev/null
lab pod "$LAB" n2 app/server2 --label app=server --port 7000/tcp --port 7001/udp >/dev/null
lab_load
for s in app/server1 app/server2; do
	for pr in tcp:7000 udp:7001; do
		nsenter --net="${NETNS[$s]}" "$PY" "$LIBPY" echo-server --proto "${pr%:*}" --port "${pr#*:}" &
		E2E_BG+=($!)
	done
	serve "$s" --tcp 80 --udp 80
done
wait_served 80 app/server1 app/server2
man_cluster
moat_start 1
moat_start 2
sync_or_die
pass "lab and daemons ready"

# flows: name proto family server port
FLOWS=(
	"tcp4-cross tcp 4 app/server2 7000"
	"tcp6-same tcp 6 app/server1 7000"
	"tcp4-same tcp 4 app/server1 7000"
	"udp4-cross udp 4 app/server2 7001"
	"udp6-same udp 6 app/server1 7001"
	"udp6-cross udp 6 app/server2 7001"
)
declare -A HPID=()

holds_start() {
	local f name proto fam srv port i
	for f in "${FLOWS[@]}"; do
		read -r name proto fam srv port <<<"$f"
		: >"$E2E_TMP/hold-$name"
		nsenter --net="${NETNS[app/client1]}" "$PY" "$LIBPY" hold --proto "$proto" --interval 0.2 \
			--timeout 1 --linger 2 "$(addr_of "$srv" "$fam")" "$port" >"$E2E_TMP/hold-$name" 2>&1 &
		HPID[$name]=$!
		E2E_BG+=($!)
	done
	# flowing: at least 3 echoes each
	for f in "${FLOWS[@]}"; do
		read -r name _ <<<"$f"
		for i in $(seq 100); do
			[ "$(pongs "$name")" -ge 3 ] && break
			sleep 0.05
		done
		[ "$(pongs "$name")" -ge 3 ] && pass "$name flowing ($(pongs "$name") echoes)" ||
			fail "$name not flowing: $(tail -1 "$E2E_TMP/hold-$name")"
	done
}
pongs() { grep -c '^pong' "$E2E_TMP/hold-$1" || true; }
result() { grep '^result' "$E2E_TMP/hold-$1" | head -1 || true; }

new_conn() { # what want
	local out=()
	out+=("$(lab exec "$LAB" app/client1 -- "$PROBE" connect -q --timeout 1 --proto tcp "${IP4[app/server2]}" 80 || true)")
	out+=("$(lab exec "$LAB" app/client1 -- "$PROBE" connect -q --timeout 1 --proto udp "${IP6[app/server1]}" 80 || true)")
	expect "$1: new connections (tcp4 cross, udp6 same)" "${out[*]}" "$2 $2"
}

put_deny() {
	man_put np-isolate-servers.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-servers, namespace: app}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
EOF
}

section "default: a new deny policy cuts established flows, silently"
holds_start
new_conn "before the policy" ok
r0=$(( $(metric 1 'moat_conntrack_events_total{event="revoked"}') + $(metric 2 'moat_conntrack_events_total{event="revoked"}') ))
put_deny
t0=$(ms)
sync_or_die
t1=$(ms)
echo "  policy live on both nodes $((t1 - t0)) ms after it was written"
declare -A PONGS_AT=()
for f in "${FLOWS[@]}"; do read -r name _ <<<"$f"; PONGS_AT[$name]=$(pongs "$name"); done
for f in "${FLOWS[@]}"; do
	read -r name _ <<<"$f"
	# cut -> "result timeout" after 1 s without echo plus 2 s watching for a reset
	for i in $(seq 100); do [ -n "$(result "$name")" ] && break; sleep 0.05; done
	r=$(result "$name")
	set -- $r
	if [ "${2:-}" = timeout ]; then
		after=$(( ${3:-0} - PONGS_AT[$name] ))
		# at most one echo may have been in flight when the policy went live
		[ "$after" -le 1 ] && pass "$name: cut silently (no RST/ICMP), $3 echoes in all, $after after the policy" ||
			fail "$name: cut, but $after echoes came after the policy was live"
	else
		fail "$name: want 'result timeout', got '${r:-still running: $(pongs "$name") echoes}'"
	fi
done
new_conn "after the policy" timeout
r1=$(( $(metric 1 'moat_conntrack_events_total{event="revoked"}') + $(metric 2 'moat_conntrack_events_total{event="revoked"}') ))
d1=$(( $(metric 1 'moat_drops_total{reason="revoked"}') + $(metric 2 'moat_drops_total{reason="revoked"}') ))
[ $((r1 - r0)) -ge ${#FLOWS[@]} ] && pass "conntrack 'revoked' events: $((r1 - r0)) (>= ${#FLOWS[@]} flows)" ||
	fail "conntrack 'revoked' events: $((r1 - r0)), want >= ${#FLOWS[@]}"
[ "$d1" -ge ${#FLOWS[@]} ] && pass "drops with reason 'revoked': $d1" || fail "drops with reason 'revoked': $d1, want >= ${#FLOWS[@]}"
for n in "${HPID[@]}"; do wait "$n" 2>/dev/null || true; done

section "moatd --no-revoke: established flows survive, new ones are denied"
man_rm np-isolate-servers.yaml
moat_stop 1
moat_stop 2
moat_start 1 --no-revoke
moat_start 2 --no-revoke
sync_or_die
new_conn "no policy" ok
holds_start
put_deny
sync_or_die
for f in "${FLOWS[@]}"; do read -r name _ <<<"$f"; PONGS_AT[$name]=$(pongs "$name"); done
sleep 2.5
new_conn "after the policy" timeout
for f in "${FLOWS[@]}"; do
	read -r name _ <<<"$f"
	kill "${HPID[$name]}" 2>/dev/null || true
	wait "${HPID[$name]}" 2>/dev/null || true
	r=$(result "$name")
	set -- $r
	after=$(( ${3:-0} - PONGS_AT[$name] ))
	if [ "${2:-}" = alive ] && [ "$after" -ge 8 ]; then
		pass "$name: survived, $after echoes after the policy was live"
	else
		fail "$name: want 'result alive' with >= 8 echoes after the policy, got '$r' ($after after)"
	fi
done

e2e_end
