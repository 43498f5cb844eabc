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
set -u
[ "$(id -u)" -eq 0 ] || { echo "needs root"; exit 77; }
cd "$(dirname "$0")/../.."
O=${O:-build}
LAB=upg$$
LABT=tests/lab/lab
PROBE=$O/tests/tools/probe
DIR=$(mktemp -d /tmp/moat-upgrade.XXXXXX)
PIN=/sys/fs/bpf/moat/$LAB-n1
SOCK=$DIR/moatd.sock
ABI=$(awk '/define MOAT_ABI_VERSION/ {print $3; exit}' include/moat/abi.h)
fails=0
bg=()
MOATD_PID=

cleanup() {
	[ -n "$MOATD_PID" ] && kill -9 "$MOATD_PID" 2>/dev/null
	for p in "${bg[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	"$O"/moatctl uninstall "$PIN" >/dev/null 2>&1
	$LABT down "$LAB" >/dev/null 2>&1
	if [ "$fails" -eq 0 ]; then rm -rf "$DIR"; else echo "logs kept in $DIR"; fi
}
trap cleanup EXIT
check() { if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected $2, got $3"; fails=$((fails+1)); fi; }

start_moatd() {
	nsenter --net=/run/netns/$LAB-n1 "${1:-$O/moatd}" --node "$LAB-n1" --manifests "$DIR/m" --pin-dir "$PIN" \
		--socket "$SOCK" --veth-prefix m >>"$DIR/moatd.log" 2>&1 &
	MOATD_PID=$!
}
wait_ready() {
	for _ in $(seq 150); do "$O"/moatctl --socket "$SOCK" status >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "FAIL moatd did not become ready"; fails=$((fails+1)); return 1
}
# every pinned link as "name link-id prog-id", sorted
links() {
	for l in "$PIN"/links/*; do
		bpftool -j link show pinned "$l" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sys.argv[1], d["id"], d["prog_id"])' "$(basename "$l")"
	done | sort
}
# rewrites the pinned meta's ABI version (its first 4 bytes, little endian)
fake_abi() {
	bpftool -j map dump pinned "$PIN/moat_meta" | python3 -c '
import json, sys, subprocess
v = [int(b, 16) for b in json.load(sys.stdin)[0]["value"]]
v[0:4] = list(int(sys.argv[1]).to_bytes(4, "little"))
subprocess.check_call(["bpftool", "map", "update", "pinned", sys.argv[2], "key", "0", "0", "0", "0",
                       "value"] + [str(b) for b in v])' "$1" "$PIN/moat_meta"
}
meta_abi() {
	bpftool -j map dump pinned "$PIN/moat_meta" | python3 -c 'import json,sys; v=json.load(sys.stdin)[0]["value"]; print(int.from_bytes(bytes(int(b,16) for b in v[0:4]), "little"))'
}

$LABT up "$LAB" --nodes 1 >/dev/null || exit 1
$LABT pod "$LAB" n1 app/client --label role=client >/dev/null
$LABT pod "$LAB" n1 app/intruder --label role=intruder >/dev/null
SRV=$($LABT pod "$LAB" n1 app/server --label role=server | cut -d' ' -f1)
NS_C=$($LABT get "$LAB" app/client netnsPath)
NS_I=$($LABT get "$LAB" app/intruder netnsPath)
NS_S=$($LABT get "$LAB" app/server netnsPath)
mkdir -p "$DIR/m"
$LABT manifests "$LAB" "$DIR/m" >/dev/null
cat > "$DIR/m/policy.yaml" <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-in, namespace: app}
spec:
  podSelector: {matchLabels: {role: server}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]
---
# the client accepts nothing new: the server's replies pass only as replies
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-isolated, namespace: app}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Ingress]
EOF

$PROBE serve --netns "$NS_S" --tcp 80 >/dev/null 2>&1 & bg+=($!)
nsenter --net="$NS_S" python3 -c '
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
' & bg+=($!)

start_moatd "${MOATD_FIRST:-}"
wait_ready || exit 1
sleep 0.5
FIRST_ABI=$(meta_abi)

nsenter --net="$NS_C" python3 -c '
import socket, sys, signal
# only reads: after the switch the first packet of this flow comes from the
# server, and the client is isolated for ingress
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
' >"$DIR/longlived.out" 2>&1 & LL=$!; bg+=($LL)

( while :; do echo "c $($PROBE connect --netns "$NS_C" --proto tcp --timeout 1 "$SRV" 80)"; sleep 0.1; done ) >"$DIR/client.out" & bg+=($!)
( while :; do echo "i $($PROBE connect --netns "$NS_I" --proto tcp --timeout 1 "$SRV" 80)"; sleep 0.1; done ) >"$DIR/intruder.out" & bg+=($!)
sleep 2

olds="$((ABI - 1)) $((ABI + 1))"
[ -n "${MOATD_FIRST:-}" ] && olds=$FIRST_ABI
for old in $olds; do
	what=upgrade; [ "$old" -gt "$ABI" ] && what=rollback
	echo "== $what: pinned state of ABI $old, moatd of ABI $ABI"
	kill -TERM "$MOATD_PID"; wait "$MOATD_PID" 2>/dev/null; MOATD_PID=
	[ -n "${MOATD_FIRST:-}" ] || fake_abi "$old"
	check "pinned meta now says ABI $old" "$old" "$(meta_abi)"
	before=$(links)
	: >"$DIR/moatd.log.cur"
	start_moatd; wait_ready; sleep 2
	after=$(links)
	check "same links, each with a new program" yes "$(join -j1 <(echo "$before") <(echo "$after") |
		awk -v n="$(echo "$before" | wc -l)" '$2 == $4 && $3 != $5 {k++} END {print (k == n && n >= 4) ? "yes" : "no: " k "/" n}')"
	check "pinned meta says ABI $ABI again" "$ABI" "$(meta_abi)"
	check "old state removed" no "$([ -e "$PIN/abi$old" ] && echo yes || echo no)"
	carried=$(grep "upgraded in place from ABI $old to $ABI" "$DIR/moatd.log" | tail -1 | grep -o '[0-9]* conntrack entries carried' | cut -d' ' -f1)
	check "the upgrade was logged with conntrack carried over (>= 1 entry)" yes "$([ "${carried:-0}" -ge 1 ] && echo yes || echo "no (${carried:-none})")"
	check "moatd refused nothing" 0 "$(grep -c 'ERROR\|refused' "$DIR/moatd.log")"
done

kill "${bg[@]:2}" 2>/dev/null
kill -TERM "$LL" 2>/dev/null
sleep 0.5
cok=$(grep -c "^c ok" "$DIR/client.out"); cbad=$(grep -vc "^c ok" "$DIR/client.out")
iok=$(grep -c "^i ok" "$DIR/intruder.out"); idrop=$(grep -c "^i timeout" "$DIR/intruder.out")
ll=$(grep -o "^longlived [0-9]* [0-9]*" "$DIR/longlived.out" | head -1)
echo "     client flows: $cok ok, $cbad not; intruder flows: $idrop dropped, $iok got through; $ll (lines, errors)"
check "allowed flows that failed" 0 "$cbad"
check "denied flows that got through" 0 "$iok"
check "long-lived connection errors (the server's pushes pass only through conntrack)" 0 "$(echo "$ll" | awk '{print $3}')"
check "traffic actually ran (client flows > 30)" yes "$([ "$cok" -gt 30 ] && echo yes || echo "no: $cok")"
check "traffic actually ran (long-lived lines > 100)" yes "$([ "$(echo "$ll" | awk '{print $2}')" -gt 100 ] 2>/dev/null && echo yes || echo no)"

echo
[ $fails -eq 0 ] && { echo "upgrade: all checks passed"; exit 0; }
echo "upgrade: $fails check(s) failed"; exit 1
