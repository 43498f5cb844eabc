#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Restart without a gap: while moatd is killed (-9, also in the middle of
# applying an update), stopped (SIGTERM) and restarted (adopting what is
# pinned, replacing its programs atomically), traffic keeps being judged by
# the last generation.  Under continuous traffic we count wrongly judged
# packets: allowed flows that failed, denied flows that got through, and a
# long-lived allowed connection that broke.  All must be zero.  Finally an
# explicit uninstall removes enforcement.
set -u
[ "$(id -u)" -eq 0 ] || { echo "needs root"; exit 77; }
cd "$(dirname "$0")/../.."
O=${O:-build}
LAB=rst$$
LABT=tests/lab/lab
PROBE=$O/tests/tools/probe
DIR=$(mktemp -d /tmp/moat-restart.XXXXXX)
PIN=/sys/fs/bpf/moat/$LAB-n1
SOCK=$DIR/moatd.sock
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
	nsenter --net=/run/netns/$LAB-n1 "$O"/moatd --node "$LAB-n1" --manifests "$DIR/m" --pin-dir "$PIN" \
		--socket "$SOCK" --veth-prefix m >>"$DIR/moatd.log" 2>&1 &
	MOATD_PID=$!
}
wait_ready() {
	for _ in $(seq 150); do "$O"/moatctl --socket "$SOCK" status >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "FAIL moatd did not become ready"; fails=$((fails+1)); return 1
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
EOF

$PROBE serve --netns "$NS_S" --tcp 80 >/dev/null 2>&1 & bg+=($!)
# a line echo server and a long-lived client that sends a line every 50 ms
nsenter --net="$NS_S" python3 -c '
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(8)
def serve(c):
    f = c.makefile("rb")
    for line in f:
        c.sendall(line)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
' & bg+=($!)

start_moatd
wait_ready || exit 1
sleep 0.5

nsenter --net="$NS_C" python3 -c '
import socket, sys, time, signal
s = socket.create_connection(("'"$SRV"'", 9000), timeout=3)
s.settimeout(2); f = s.makefile("rb"); n = 0; bad = 0
def done(*a):
    print("longlived %d %d" % (n, bad), flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    try:
        s.sendall(b"ping %d\n" % n)
        if f.readline().strip() != b"ping %d" % n: bad += 1
    except Exception as e:
        bad += 1; print("longlived error", e, flush=True); time.sleep(0.5)
    n += 1; time.sleep(0.05)
' >"$DIR/longlived.out" 2>&1 & LL=$!; bg+=($LL)

# short flows: client -> server must always connect; intruder -> server never
( while :; do echo "c $($PROBE connect --netns "$NS_C" --proto tcp --timeout 1 "$SRV" 80)"; sleep 0.1; done ) >"$DIR/client.out" & bg+=($!)
( while :; do echo "i $($PROBE connect --netns "$NS_I" --proto tcp --timeout 1 "$SRV" 80)"; sleep 0.1; done ) >"$DIR/intruder.out" & bg+=($!)

sleep 2
echo "== kill -9 moatd; traffic continues on the pinned datapath"
kill -9 "$MOATD_PID"; wait "$MOATD_PID" 2>/dev/null; MOATD_PID=
sleep 3
echo "== restart: adopt the pinned maps, replace the programs"
start_moatd; wait_ready; sleep 2
grep -q "datapath adopted" "$DIR/moatd.log" && echo "ok   the second moatd adopted the pinned datapath" || { echo "FAIL no adoption logged"; fails=$((fails+1)); }

echo "== kill -9 in the middle of applying an update"
for i in $(seq 300); do
	printf 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bulk-%d, namespace: other}\nspec:\n  podSelector: {matchLabels: {app: x%d}}\n  ingress: [{ports: [{port: %d}]}]\n---\n' "$i" "$i" $((1000+i))
done > "$DIR/bulk.yaml"
mv "$DIR/bulk.yaml" "$DIR/m/bulk.yaml"
sleep 0.02
kill -9 "$MOATD_PID"; wait "$MOATD_PID" 2>/dev/null; MOATD_PID=
sleep 2
start_moatd; wait_ready; sleep 2

echo "== SIGTERM leaves enforcement in place"
kill -TERM "$MOATD_PID"; wait "$MOATD_PID" 2>/dev/null; MOATD_PID=
links=$(ls "$PIN/links" 2>/dev/null | wc -l)
check "links still pinned after SIGTERM" "yes" "$([ "$links" -ge 4 ] && echo yes || echo "no ($links)")"
sleep 2
start_moatd; wait_ready; sleep 2

kill "${bg[@]:2}" 2>/dev/null   # traffic loops and the long-lived client
kill -TERM "$LL" 2>/dev/null
sleep 0.5
cok=$(grep -c "^c ok" "$DIR/client.out"); cbad=$(grep -vc "^c ok" "$DIR/client.out")
iok=$(grep -c "^i ok" "$DIR/intruder.out"); idrop=$(grep -c "^i timeout" "$DIR/intruder.out")
ll=$(grep -o "^longlived [0-9]* [0-9]*" "$DIR/longlived.out" | head -1)
echo "     client flows: $cok ok, $cbad not; intruder flows: $idrop dropped, $iok got through; $ll (lines, errors)"
check "allowed flows that failed" 0 "$cbad"
check "denied flows that got through" 0 "$iok"
check "long-lived connection errors" 0 "$(echo "$ll" | awk '{print $3}')"
check "traffic actually ran (client flows > 50)" yes "$([ "$cok" -gt 50 ] && echo yes || echo "no: $cok")"
check "traffic actually ran (long-lived lines > 200)" yes "$([ "$(echo "$ll" | awk '{print $2}')" -gt 200 ] 2>/dev/null && echo yes || echo no)"

echo "== uninstall removes enforcement"
kill -TERM "$MOATD_PID"; wait "$MOATD_PID" 2>/dev/null; MOATD_PID=
"$O"/moatctl uninstall "$PIN" || { echo "FAIL uninstall"; fails=$((fails+1)); }
left=$( (nsenter --net=/run/netns/$LAB-n1 ip -o link; for ns in "$NS_C" "$NS_I" "$NS_S"; do nsenter --net="$ns" ip -o link; done) | grep -c prog/xdp)
check "no XDP program left after uninstall" 0 "$left"
check "intruder reaches the server after uninstall" ok "$($PROBE connect --netns "$NS_I" --proto tcp --timeout 1 "$SRV" 80)"

echo
[ $fails -eq 0 ] && { echo "restart: all checks passed"; exit 0; }
echo "restart: $fails check(s) failed"; exit 1
