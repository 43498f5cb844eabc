#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Services: traffic to a ClusterIP that kube-proxy-style nftables DNAT sends
# to a backend pod is judged with the backend pod's identity and the real
# (container) port, after DNAT; replies come back through the un-DNAT.
#   - 2 nodes; client pods on n1; backends on n1 and n2; ClusterIP
#     10.96.0.10:80 -> backends :8080 with an nft DNAT in each node
#   - ingress policy on the backends: allow app=client on 8080 -> the client
#     reaches the VIP (both backends), app=other does not
#   - the service port (80) is not what NetworkPolicy means: a policy
#     allowing port 80 on the backends denies the VIP traffic
#   - client egress policy allowing only backends:8080 still reaches the VIP
set -u
[ "$(id -u)" -eq 0 ] || { echo "needs root"; exit 77; }
cd "$(dirname "$0")/../.."
O=${O:-build}
LAB=svc$$
LABT=tests/lab/lab
PROBE=$O/tests/tools/probe
DIR=$(mktemp -d /tmp/moat-svc.XXXXXX)
fails=0
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for n in n1 n2; do "$O"/moatctl uninstall "/sys/fs/bpf/moat/$LAB-$n" >/dev/null 2>&1; done
	$LABT down "$LAB" >/dev/null 2>&1
	if [ "$fails" -eq 0 ]; then rm -rf "$DIR"; else echo "logs kept in $DIR"; fi
}
trap cleanup EXIT

check() { # description, expected, actual
	if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected $2, got $3"; fails=$((fails+1)); fi
}

$LABT up "$LAB" --nodes 2 >/dev/null || exit 1
$LABT pod "$LAB" n1 shop/client --label app=client >/dev/null
$LABT pod "$LAB" n1 shop/other --label app=other >/dev/null
B1=$($LABT pod "$LAB" n1 shop/backend-1 --label app=backend --port http:8080/TCP | cut -d' ' -f1)
B2=$($LABT pod "$LAB" n2 shop/backend-2 --label app=backend --port http:8080/TCP | cut -d' ' -f1)
VIP=10.96.0.10

for b in backend-1 backend-2; do
	$PROBE serve --netns "$($LABT get "$LAB" shop/$b netnsPath)" --name "$b" --tcp 8080,80 >/dev/null 2>&1 &
	pids+=($!)
done
# kube-proxy (nftables mode) in miniature: DNAT the VIP to a random backend
for n in n1 n2; do
	nsenter --net=/run/netns/$LAB-$n nft -f - <<EOF || exit 1
table ip kubeproxy {
	chain prerouting {
		type nat hook prerouting priority dstnat;
		ip daddr $VIP tcp dport 80 dnat ip to numgen random mod 2 map { 0 : $B1 . 8080, 1 : $B2 . 8080 }
	}
}
EOF
done

for n in n1 n2; do
	mkdir -p "$DIR/$n"
	$LABT manifests "$LAB" "$DIR/$n" >/dev/null
	cat > "$DIR/$n/svc.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: shop}
spec: {clusterIP: $VIP, ports: [{port: 80, targetPort: 8080}], selector: {app: backend}}
EOF
	nsenter --net=/run/netns/$LAB-$n "$O"/moatd --node "$LAB-$n" --manifests "$DIR/$n" \
		--pin-dir "/sys/fs/bpf/moat/$LAB-$n" --socket "$DIR/$n.sock" >"$DIR/moatd-$n.log" 2>&1 &
	pids+=($!)
done
for n in n1 n2; do
	for _ in $(seq 100); do "$O"/moatctl --socket "$DIR/$n.sock" status >/dev/null 2>&1 && break; sleep 0.2; done
done

apply() { # file content, for both nodes; waits until both applied it
	for n in n1 n2; do printf '%s\n' "$2" > "$DIR/$n/.$1.tmp"; mv "$DIR/$n/.$1.tmp" "$DIR/$n/$1"; done
	sleep 1
}

# connect N times to the VIP from a pod; prints "ok" counts and backends seen
vip_tries() { # pod, tries
	local ok=0 t=0 r
	for _ in $(seq "$2"); do
		r=$($PROBE connect --netns "$($LABT get "$LAB" "$1" netnsPath)" --proto tcp --timeout 1 $VIP 80)
		[ "$r" = ok ] && ok=$((ok+1)) || t=$((t+1))
	done
	echo "$ok/$t"
}

echo "== no policy"
check "client -> VIP:80 (all tries)" "6/0" "$(vip_tries shop/client 6)"

echo "== ingress on backends: allow app=client on 8080"
apply np.yaml "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: backend}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 8080}]}]"
check "client -> VIP:80 reaches both backends (8 tries)" "8/0" "$(vip_tries shop/client 8)"
check "other -> VIP:80 denied" "0/3" "$(vip_tries shop/other 3)"
# which backends answered? the probe prints the server name with --reply
seen=$(for _ in $(seq 12); do $PROBE connect --netns "$($LABT get "$LAB" shop/client netnsPath)" --proto tcp --timeout 1 --reply $VIP 80; done | sort -u | tr '\n' ' ')
case "$seen" in *backend-1*backend-2*|*backend-2*backend-1*) echo "ok   both backends answered ($seen)";;
	*) echo "FAIL expected both backends to answer, saw: $seen"; fails=$((fails+1));; esac

echo "== the service port is not the container port"
apply np.yaml "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: backend}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 80}]}]"
check "client -> VIP:80 with a policy on port 80 denied" "0/3" "$(vip_tries shop/client 3)"
apply np.yaml "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: backend}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: http}]}]"
check "client -> VIP:80 with the named port http (8080) allowed" "4/0" "$(vip_tries shop/client 4)"

echo "== egress of the client is judged after DNAT"
apply egress.yaml "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: backend}}}], ports: [{port: 8080}]}]"
check "client -> VIP:80 allowed by egress to backends:8080" "4/0" "$(vip_tries shop/client 4)"
apply egress.yaml "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: backend}}}], ports: [{port: 80}]}]"
check "client -> VIP:80 denied by egress allowing only port 80" "0/3" "$(vip_tries shop/client 3)"

# the explanation names the backend's policy for the real flow
x=$("$O"/moatctl --socket "$DIR/n2.sock" explain --from shop/client --to shop/backend-2 --port 8080/TCP | head -1)
echo "     explain: $x"

echo
if [ $fails -eq 0 ]; then echo "service_dnat: all checks passed"; exit 0; fi
echo "service_dnat: $fails check(s) failed"
exit 1
