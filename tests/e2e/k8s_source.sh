#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: moatd reading the Kubernetes API (--kubeconfig), real traffic.
#
# A fake API server (tests/tools/fakeapi.py: HTTPS, the real list/watch
# protocol and object JSON) runs inside node n1's network namespace on
# 127.0.0.1, where moatd for n1 reaches it through a kubeconfig (CA file,
# bearer token).  The lab's Nodes, Namespaces and Pods are served by it;
# NetworkPolicies are added, changed and deleted through its control port,
# and the traffic app/client (n2) -> app/server (n1) follows:
#   no policy                       tcp/80 and udp/80 allowed
#   ADDED deny-all ingress          both denied
#   MODIFIED to allow tcp/80        tcp allowed, udp denied
#   a bad version (port 70000)      refused with the object and field named in
#                                   status; the last good version stays
#   DELETED                         both allowed
#   API server down (listener closed, watches cut): status says disconnected,
#   enforcement stays; changed while down (policy back): converges when it
#   returns.  Down again, the policy deleted and the history compacted: the
#   watch gets 410, moatd relists and deletes the policy it missed.
#   Garbage in the middle of a watch stream and a hanging stream: reconnects,
#   later changes still apply.
#   moatd restarted --in-cluster (token file and CA of a service-account
#   directory, KUBERNETES_SERVICE_HOST/PORT): adopts the pinned state without
#   a gap; the token file is rotated and the old token refused: moatd
#   re-reads it and goes on.
#   A datapath update failing (failpoint MOAT_FAULT_ENOMEM): the last
#   generation stays; once memory is back the change is retried with every
#   object sent again by the API server (the compiler had rolled back).
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
e2e_begin k8s

FAKEAPI=$E2E_ROOT/tests/tools/fakeapi.py
TOKEN=moatd-token-$$-$RANDOM

section "lab: app/server on n1, app/client on n2; fake API server in n1's netns"
lab up "$LAB" --nodes 2 >/dev/null
lab pod "$LAB" n1 app/server --label app=server --port 80/tcp --port 80/udp >/dev/null
lab pod "$LAB" n2 app/client --label app=client >/dev/null
lab_load
serve app/server --tcp 80 --udp 80
wait_served 80 app/server

"$PY" "$FAKEAPI" gen-certs "$E2E_TMP/certs"
# the server's stdin stays open as long as this test runs (some versions of
# fakeapi.py stop when their stdin closes)
mkfifo "$E2E_TMP/fakeapi.stdin"
exec {FAKEAPI_STDIN}<>"$E2E_TMP/fakeapi.stdin"
nsenter --net="${NETNS[@n1]}" "$PY" "$FAKEAPI" serve --certs "$E2E_TMP/certs" --token "$TOKEN" \
	<"$E2E_TMP/fakeapi.stdin" >"$E2E_TMP/fakeapi.out" 2>"$E2E_TMP/fakeapi.err" &
E2E_BG+=($!)
for i in $(seq 100); do grep -q READY "$E2E_TMP/fakeapi.out" 2>/dev/null && break; sleep 0.1; done
read -r _ APIPORT CTLPORT <"$E2E_TMP/fakeapi.out" || die "fake API server did not start: $(cat "$E2E_TMP/fakeapi.err")"

fa() { # op [json]: the fake API server's control port
	local body=${2:-}
	[ -n "$body" ] || body='{}'
	nsenter --net="${NETNS[@n1]}" curl -sf --max-time 10 -X POST "http://127.0.0.1:$CTLPORT/$1" \
		-H 'Content-Type: application/json' -d "$body"
}
fa_get() { nsenter --net="${NETNS[@n1]}" curl -sf --max-time 10 "http://127.0.0.1:$CTLPORT/$1"; }

# the lab's Nodes, Namespaces and Pods, as the API server would have them
mkdir -p "$E2E_TMP/cluster"
lab manifests "$LAB" "$E2E_TMP/cluster" >/dev/null
jq -s '{objects: [.[] | if .kind == "List" then .items[] else . end]}' "$E2E_TMP"/cluster/*.json \
	>"$E2E_TMP/cluster.json"
fa put "$(cat "$E2E_TMP/cluster.json")" >/dev/null

cat >"$E2E_TMP/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: lab
clusters:
- name: lab
  cluster:
    server: https://127.0.0.1:$APIPORT
    certificate-authority: $E2E_TMP/certs/ca.crt
users:
- name: moatd
  user: {token: $TOKEN}
contexts:
- name: lab
  context: {cluster: lab, user: moatd}
EOF
# short timeouts so that a test run sees reconnects, stalls and 410 quickly
cat >"$E2E_TMP/moatd.yaml" <<EOF
kubernetes: {watchTimeoutSeconds: 20, backoffMaxMs: 1000, idleTimeoutMs: 3000}
EOF

SOCK=$(sock_of 1)
moatd_k8s_start() {
	local node=$LAB-n1 i
	"$MOATCTL" uninstall "$(pin_of 1)" >/dev/null 2>&1 || true
	rm -f "$SOCK"
	nsenter --net="/run/netns/$node" "$MOATD" --node "$node" --kubeconfig "$E2E_TMP/kubeconfig" \
		--config "$E2E_TMP/moatd.yaml" --pin-dir "$(pin_of 1)" --socket "$SOCK" \
		--log-level info >>"$E2E_TMP/moatd-n1.log" 2>&1 &
	DPID[1]=$!
	for i in $(seq 300); do
		kill -0 "${DPID[1]}" 2>/dev/null || { tail -5 "$E2E_TMP/moatd-n1.log" >&2; die "moatd exited"; }
		[ -S "$SOCK" ] && curl -sf --max-time 2 --unix-socket "$SOCK" http://moatd/v1/status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "moatd did not answer"
}
st() { curl -sf --max-time 5 --unix-socket "$SOCK" http://moatd/v1/status; }
gen() { st | jq -r .generation; }
# true when moatd answers and the jq expression holds (jq -e alone is true
# on no input at all)
status_is() { st | jq -e "$1" >/dev/null; }
kind_st() { st | jq -r --arg k "$1" ".kubernetes.kinds[] | select(.kind == \$k) | .$2"; }
wait_for() { # seconds description command...: polls until the command succeeds
	local s=$1 what=$2 i
	shift 2
	for i in $(seq $((s * 10))); do "$@" >/dev/null 2>&1 && { pass "$what"; return 0; }; sleep 0.1; done
	fail "$what (not within $s s)"
	st | jq -c '.kubernetes.kinds[] | select(.kind == "NetworkPolicy")' >&2 || true
	return 1
}
gen_above() { [ "$(gen)" -gt "$1" ]; }
has_policy() { curl -sf --unix-socket "$SOCK" http://moatd/v1/policies | jq -e --arg n "$1" 'any(.[]; .name == $n)'; }
no_policy() { ! has_policy "$1"; }
traffic() { # title tcp-want udp-want
	probe_matrix "$1" <<EOF
app/client app/server tcp 80 $2
app/client app/server udp 80 $3
EOF
}
np() { # name spec-json
	fa put "{\"object\": {\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\",
		\"metadata\": {\"name\": \"$1\", \"namespace\": \"app\"}, \"spec\": $2}}" >/dev/null
}
DENY='{"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"]}'
ALLOW_TCP='{"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
	"ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
	             "ports": [{"protocol": "TCP", "port": 80}]}]}'
BAD='{"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
	"ingress": [{"ports": [{"protocol": "TCP", "port": 70000}]}]}'

section "moatd --kubeconfig: lists every kind, builds the first generation"
moatd_k8s_start
wait_for 20 "synced with the API server (every required kind listed)" \
	status_is ".kubernetes.ready and .generation > 0"
expect "Pods known from the API" "$(kind_st Pod objects)" 2
expect "Pod watch connected" "$(kind_st Pod connected)" true
expect "Blueprint CRD absent: said so, not fatal" "$(kind_st Blueprint state)" not-found
expect "the unix-socket API refuses manifest writes in Kubernetes mode" \
	"$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" -X PUT --data-binary @/dev/null http://moatd/v1/manifests/x.yaml)" 409
traffic "no policy" ok ok

section "ADDED, MODIFIED, bad version, DELETED"
g=$(gen); np deny "$DENY"
wait_for 10 "ADDED NetworkPolicy app/deny applied" gen_above "$g"
traffic "deny-all ingress" timeout timeout
g=$(gen); np deny "$ALLOW_TCP"
wait_for 10 "MODIFIED app/deny applied" gen_above "$g"
traffic "tcp/80 from app=client allowed" ok timeout
np deny "$BAD"
wait_for 10 "a bad version is reported naming the object and field" \
	status_is ".kubernetes.object_errors | any(test(\"NetworkPolicy app/deny: spec.ingress\\\\[0\\\\].ports\\\\[0\\\\].port: 70000\"))"
expect "recent_errors names it too" \
	"$(st | jq '[.recent_errors[] | select(test("NetworkPolicy app/deny: spec.ingress"))] | length > 0')" true
traffic "the last good version stays enforced" ok timeout
g=$(gen); np deny "$ALLOW_TCP"
wait_for 10 "fixed: the error is gone" status_is ".kubernetes.object_errors == []"
g=$(gen); fa delete '{"kind": "NetworkPolicy", "namespace": "app", "name": "deny"}' >/dev/null
wait_for 10 "DELETED app/deny applied" no_policy deny
traffic "no policy again" ok ok

section "API server down: enforcement stays; changed while down: converges on return"
g=$(gen); np deny "$DENY"
wait_for 10 "deny-all applied" gen_above "$g"
traffic "deny-all before the outage" timeout timeout
fa down >/dev/null
wait_for 10 "status says disconnected" status_is "[.kubernetes.kinds[] | select(.kind == \"NetworkPolicy\") | .connected] == [false]"
expect "metrics: networkpolicies watch not connected" \
	"$(ctl 1 metrics | awk '/^moat_k8s_watch_connected\{resource="networkpolicies"\}/ {print $2}')" 0
sleep 2
traffic "while the API server is down, the last state is enforced" timeout timeout
g=$(gen); np deny "$ALLOW_TCP" # changed while moatd cannot see it
fa up >/dev/null
wait_for 20 "reconnected" status_is "[.kubernetes.kinds[] | select(.kind == \"NetworkPolicy\") | .connected] == [true]"
wait_for 10 "the change made during the outage applied" gen_above "$g"
traffic "converged" ok timeout
reconnects=$(kind_st NetworkPolicy reconnects)
[ "$reconnects" -ge 1 ] && pass "reconnects counted ($reconnects)" || fail "reconnects not counted"

section "410 Gone: deleted while disconnected and compacted -> relist deletes it"
relists0=$(kind_st NetworkPolicy relists)
fa down >/dev/null
wait_for 10 "disconnected again" status_is "[.kubernetes.kinds[] | select(.kind == \"NetworkPolicy\") | .connected] == [false]"
fa delete '{"kind": "NetworkPolicy", "namespace": "app", "name": "deny"}' >/dev/null
fa compact >/dev/null
# fakeapi's compaction makes even the current revision too old; a later write
# gives the relist a revision a watch can start from, as etcd's would
fa put '{"object": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "spare"}}}' >/dev/null
traffic "still enforced while away" ok timeout
fa up >/dev/null
wait_for 20 "relisted and deleted what it missed" no_policy deny
relists=$(kind_st NetworkPolicy relists)
[ "$relists" -gt "$relists0" ] && pass "relist counted ($relists0 -> $relists)" || fail "relists $relists0 -> $relists"
traffic "no policy after the relist" ok ok

section "garbage mid-stream and a hanging stream"
errs0=$(kind_st NetworkPolicy errors)
fa fault '{"resource": "networkpolicies", "fault": "garbage"}' >/dev/null
fa drop '{"resource": "networkpolicies"}' >/dev/null
g=$(gen)
wait_for 15 "garbage reported" sh -c "[ \$(curl -sf --unix-socket '$SOCK' http://moatd/v1/status | jq '.kubernetes.kinds[] | select(.kind == \"NetworkPolicy\") | .errors') -gt $errs0 ]"
np deny "$DENY"
wait_for 15 "a change after the garbage applies" gen_above "$g"
traffic "deny-all after the garbage" timeout timeout
fa fault '{"resource": "networkpolicies", "fault": "hang"}' >/dev/null
fa drop '{"resource": "networkpolicies"}' >/dev/null
sleep 1
g=$(gen); fa delete '{"kind": "NetworkPolicy", "namespace": "app", "name": "deny"}' >/dev/null
wait_for 20 "a hanging stream is abandoned (idle timeout) and the change arrives" no_policy deny
traffic "after the hang" ok ok
expect "no generation was refused" "$(st | jq .last_apply.error)" 0

section "restart --in-cluster: service-account token and CA, KUBERNETES_SERVICE_HOST/PORT; adopts without a gap; token rotation"
g=$(gen); np deny "$DENY"
wait_for 10 "deny-all applied" gen_above "$g"
kill -TERM "${DPID[1]}"
wait "${DPID[1]}" 2>/dev/null || true
unset "DPID[1]"
traffic "moatd stopped: the pinned generation keeps enforcing" timeout timeout
mkdir -p "$E2E_TMP/sa"
cp "$E2E_TMP/certs/ca.crt" "$E2E_TMP/sa/ca.crt"
TOKEN2=sa-token-one-$RANDOM$RANDOM
echo "$TOKEN2" >"$E2E_TMP/sa/token"
fa set "{\"tokens\": [\"$TOKEN2\"]}" >/dev/null # the old token no longer works
cat >"$E2E_TMP/moatd-ic.yaml" <<EOF
inCluster: true
serviceAccountDir: $E2E_TMP/sa
kubernetes: {watchTimeoutSeconds: 20, backoffMaxMs: 1000, idleTimeoutMs: 3000}
EOF
rm -f "$SOCK"
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$APIPORT nsenter --net="${NETNS[@n1]}" \
	"$MOATD" --node "$LAB-n1" --config "$E2E_TMP/moatd-ic.yaml" --pin-dir "$(pin_of 1)" \
	--socket "$SOCK" --log-level info >>"$E2E_TMP/moatd-n1.log" 2>&1 &
DPID[1]=$!
wait_for 20 "in-cluster moatd synced" \
	status_is ".kubernetes.ready and .adopted"
traffic "after the restart: the same policy, no gap" timeout timeout
expect "authenticated with the service-account token" \
	"$(fa_get requests | jq -r --arg t "$TOKEN2" '[.[] | select(.token == $t)] | length > 0')" true
# kubelet rotates projected tokens by swapping the file; the old one stops working
TOKEN3=sa-token-two-$RANDOM$RANDOM
echo "$TOKEN3" >"$E2E_TMP/sa/.token.new"
mv -f "$E2E_TMP/sa/.token.new" "$E2E_TMP/sa/token"
fa set "{\"tokens\": [\"$TOKEN3\"]}" >/dev/null
fa drop >/dev/null
g=$(gen); fa delete '{"kind": "NetworkPolicy", "namespace": "app", "name": "deny"}' >/dev/null
wait_for 20 "rotated token re-read, the change arrives" no_policy deny
traffic "after the token rotation" ok ok
expect "the rotated token is in use" \
	"$(fa_get requests | jq -r --arg t "$TOKEN3" '[.[] | select(.token == $t and .status == 200)] | length > 0')" true

section "a datapath update failing (ENOMEM): the last generation stays; retried with every object sent again"
# moatd's failpoint MOAT_FAULT_ENOMEM=FILE: table updates fail while FILE exists
FAULT=$E2E_TMP/enomem
g0=$(gen)
kill -TERM "${DPID[1]}"
wait "${DPID[1]}" 2>/dev/null || true
unset "DPID[1]"
rm -f "$SOCK"
MOAT_FAULT_ENOMEM=$FAULT KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$APIPORT \
	nsenter --net="${NETNS[@n1]}" "$MOATD" --node "$LAB-n1" --config "$E2E_TMP/moatd-ic.yaml" \
	--pin-dir "$(pin_of 1)" --socket "$SOCK" --log-level info >>"$E2E_TMP/moatd-n1.log" 2>&1 &
DPID[1]=$!
wait_for 20 "moatd synced, its first generation built (failpoint armed, file absent)" \
	status_is ".kubernetes.ready and .generation > $g0 and .last_apply.error == 0"
g=$(gen)
relists0=$(kind_st NetworkPolicy relists)
touch "$FAULT"
np deny "$DENY"
wait_for 20 "the update failed: reported in status" \
	status_is ".last_apply.message | test(\"datapath update failed \\\\(Cannot allocate memory\\\\), generation $g stays enforced\")"
expect "generation unchanged" "$(gen)" "$g"
no_policy deny >/dev/null && pass "the compiler went back to what is enforced" || fail "app/deny kept after the failure"
traffic "the last generation stays enforced (no policy)" ok ok
rm -f "$FAULT"
wait_for 40 "memory back: retried, app/deny applied" status_is ".generation > $g and .last_apply.error == 0"
grep -q "retrying the change whose datapath update failed (every object sent again by the Kubernetes API)" \
	"$E2E_TMP/moatd-n1.log" && pass "the retry logged" || fail "no retry in the log"
relists=$(kind_st NetworkPolicy relists)
[ "$relists" -gt "$relists0" ] && pass "every kind listed again ($relists0 -> $relists relists of NetworkPolicy)" ||
	fail "relists $relists0 -> $relists"
has_policy deny >/dev/null && pass "app/deny known again" || fail "app/deny not known after the retry"
traffic "the change enforced after the retry" timeout timeout

e2e_end
