#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Upgrade and rollback across map ABI versions without a gap.  The pinned
# state is made to look like another ABI version's (its meta rewritten, as
# an older or newer moatd would have left it); moatd then starts without
# --reset.  It must set the old state aside, keep the old programs enforcing
# until its first generation is committed, switch every pinned link to the
# new program in place (same link, new program), carry conntrack over, and
# remove the old state.  Under continuous traffic: no allowed flow fails, no
# denied flow gets through, and a long-lived connection whose server pushes
# data to a client isolated for ingress (that data passes only as the reply
# of a tracked flow) never stalls.
#   MOATD_FIRST=/path/to/an/older/moatd tests/e2e/upgrade.sh
# starts that binary first and upgrades from what it really pinned instead.
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
e2e_begin upg
NODES=1
ABI=$(awk '/define MOAT_ABI_VERSION/ {print $3; exit}' "$E2E_ROOT/include/moat/abi.h")
PIN=$(pin_of 1)
at_exit "$MOATCTL uninstall $PIN"

# every pinned link as "name link-id prog-id", sorted
links() {
	local l
	for l in "$PIN"/links/*; do
		bpftool -j link show pinned "$l" |
			jq -r --arg n "$(basename "$l")" '"\($n) \(.id) \(.prog_id)"'
	done | sort
}
# the pinned meta's ABI version (its first 4 bytes, little endian), or set it
meta_abi() {
	bpftool -j map dump pinned "$PIN/moat_meta" |
		jq -r '.[0].value[0:4] | map(ltrimstr("0x") | ascii_downcase) | reverse | join("")' |
		xargs -I{} printf '%d\n' 0x{}
}
fake_abi() { # version
	local v
	v=$(bpftool -j map dump pinned "$PIN/moat_meta" | jq -r '.[0].value[4:] | join(" ")')
	# shellcheck disable=SC2086
	bpftool map update pinned "$PIN/moat_meta" key 0 0 0 0 \
		value $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)) $v
}

section "lab: app/client (isolated for ingress), app/intruder, app/server"
lab up "$LAB" --nodes 1 >/dev/null
lab pod "$LAB" n1 app/client --label role=client >/dev/null
lab pod "$LAB" n1 app/intruder --label role=intruder >/dev/null
lab pod "$LAB" n1 app/server --label role=server >/dev/null
lab_load
SRV=$(addr_of app/server)
serve app/server --tcp 80
wait_served 80 app/server
man_cluster
man_put policy.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-in, namespace: app}
spec:
  podSelector: {matchLabels: {role: server}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]
---
# the client accepts nothing new: the server's data passes only as replies
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-isolated, namespace: app}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Ingress]
EOF
nsenter --net="${NETNS[app/server]}" "$PY" -c '
import socket, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(8)
def push(c):
    n = 0
    try:
        while True:
            c.sendall(b"tick %d\n" % n); n += 1; time.sleep(0.05)
    except OSError:
        pass
while True:
    c, _ = s.accept(); threading.Thread(target=push, args=(c,), daemon=True).start()
' &
E2E_BG+=($!)

MOATD=${MOATD_FIRST:-$MOATD} moat_start 1
sync_or_die
FIRST_ABI=$(meta_abi)
pass "moatd ready (pinned state of ABI $FIRST_ABI)"

# only reads: after the switch the first packet of this flow comes from the
# server, and the client is isolated for ingress
nsenter --net="${NETNS[app/client]}" "$PY" -c '
import socket, sys, signal
s = socket.create_connection(("'"$SRV"'", 9000), timeout=3)
s.settimeout(2); f = s.makefile("rb"); n = 0; bad = 0
def done(*a):
    print("longlived %d %d" % (n, bad), flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    try:
        line = f.readline()
        if not line.startswith(b"tick "): raise Exception("connection closed")
        n += 1
    except Exception as e:
        bad += 1; print("longlived error", e, flush=True)
        if bad > 20: done()
' >"$E2E_TMP/longlived.out" 2>&1 &
LL=$!
E2E_BG+=("$LL")
# short flows: client -> server must always connect; intruder -> server never
for who in client intruder; do
	(while :; do echo "$("$PROBE" connect --netns "${NETNS[app/$who]}" --proto tcp --timeout 1 "$SRV" 80)"; sleep 0.1; done) \
		>"$E2E_TMP/$who.out" 2>/dev/null &
	E2E_BG+=($!)
done
sleep 2

olds="$((ABI - 1)) $((ABI + 1))"
[ -n "${MOATD_FIRST:-}" ] && olds=$FIRST_ABI
for old in $olds; do
	what=upgrade
	[ "$old" -gt "$ABI" ] && what=rollback
	section "$what: pinned state of ABI $old, moatd of ABI $ABI"
	moat_halt 1
	[ -n "${MOATD_FIRST:-}" ] || fake_abi "$old"
	expect "pinned meta says ABI $old" "$(meta_abi)" "$old"
	before=$(links)
	MOAT_ADOPT=1 moat_start 1
	sync_or_die
	sleep 1
	after=$(links)
	expect "the same links, each with a new program" "$(join -j1 <(echo "$before") <(echo "$after") |
		awk -v n="$(echo "$before" | wc -l)" '$2 == $4 && $3 != $5 {k++} END {print (k == n && n >= 4) ? "yes" : "no: " k "/" n}')" yes
	expect "pinned meta says ABI $ABI again" "$(meta_abi)" "$ABI"
	expect "old state removed" "$([ -e "$PIN/abi$old" ] && echo present || echo gone)" gone
	carried=$(grep "upgraded in place from ABI $old to $ABI" "$E2E_TMP/moatd-n1.log" | tail -1 |
		grep -o '[0-9]* conntrack entries carried' | cut -d' ' -f1 || true)
	expect "upgrade logged with conntrack carried over (>= 1 entry)" \
		"$([ "${carried:-0}" -ge 1 ] && echo yes || echo "no (${carried:-none})")" yes
done
expect "nothing refused in the daemon's log" "$(grep -c 'ERROR\|refused' "$E2E_TMP/moatd-n1.log" || true)" 0

if [ -z "${MOATD_FIRST:-}" ]; then
	old=$((ABI - 1))
	section "upgrade held: the first generation fails (table updates fail, failpoint)"
	moat_halt 1
	fake_abi "$old"
	before=$(links)
	FAULT=$E2E_TMP/enomem
	touch "$FAULT"
	MOAT_FAULT_ENOMEM=$FAULT MOAT_ADOPT=1 moat_start 1
	sleep 2
	expect "status says the upgrade from ABI $old is pending" \
		"$(ctl 1 -o json status | jq -r '.upgrading_from_abi // "none"')" "$old"
	expect "moatctl status says so" "$(ctl 1 status | grep -c "from ABI $old pending" || true)" 1
	expect "the links still run the old programs" "$([ "$(links)" = "$before" ] && echo same || echo changed)" same
	expect "the old state is still there" "$([ -e "$PIN/abi$old/moat_ct4" ] && echo present || echo gone)" present
	expect "the hold was logged" "$(grep -c "upgrade from ABI $old held" "$E2E_TMP/moatd-n1.log" || true)" 1
	rm -f "$FAULT"
	for _ in $(seq 100); do [ -e "$PIN/abi$old" ] || break; sleep 0.1; done
	expect "once an update succeeds: switched, old state removed" \
		"$([ -e "$PIN/abi$old" ] && echo present || echo gone)" gone
	expect "status no longer says an upgrade is pending" \
		"$(ctl 1 -o json status | jq -r '.upgrading_from_abi // "none"')" none
	after=$(links)
	expect "the same links, each with a new program" "$(join -j1 <(echo "$before") <(echo "$after") |
		awk -v n="$(echo "$before" | wc -l)" '$2 == $4 && $3 != $5 {k++} END {print (k == n && n >= 4) ? "yes" : "no: " k "/" n}')" yes
	sleep 1
fi

section "traffic throughout"
kill "$LL" 2>/dev/null || true
sleep 0.5
for p in "${E2E_BG[@]}"; do [ "$p" = "$LL" ] || kill "$p" 2>/dev/null || true; done
cok=$(grep -c "^ok" "$E2E_TMP/client.out" || true)
cbad=$(grep -vc "^ok" "$E2E_TMP/client.out" || true)
iok=$(grep -c "^ok" "$E2E_TMP/intruder.out" || true)
idrop=$(grep -c "^timeout" "$E2E_TMP/intruder.out" || true)
ll=$(grep -o "^longlived [0-9]* [0-9]*" "$E2E_TMP/longlived.out" | head -1 || true)
echo "     client flows: $cok ok, $cbad not; intruder flows: $idrop dropped, $iok got through; $ll (lines, errors)"
expect "allowed flows that failed" "$cbad" 0
expect "denied flows that got through" "$iok" 0
expect "long-lived connection errors (the server's pushes pass only through conntrack)" \
	"$(echo "$ll" | awk '{print $3}')" 0
expect "traffic actually ran (client flows > 30)" "$([ "$cok" -gt 30 ] && echo yes || echo "no: $cok")" yes
expect "traffic actually ran (long-lived lines > 100)" \
	"$([ "$(echo "$ll" | awk '{print $2}')" -gt 100 ] 2>/dev/null && echo yes || echo no)" yes
e2e_end
