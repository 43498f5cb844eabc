#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: moatd's control-API roles from Kubernetes RBAC (TokenReview and
# SubjectAccessReview through the API server; docs/kubernetes.md).
#
# A fake API server with the review APIs (tests/tools/fakeauthz.py) runs in
# node n1's netns; moatd --kubeconfig reads the cluster from it and asks it
# about every bearer token.  moatd itself authenticates with a client
# certificate (client-certificate-data in its kubeconfig).  Users and RBAC-like
# rules:
#   alice  "admin" flows.moat.io cluster-wide            -> platform-admin
#   bob    "get" flows.moat.io in shop (RoleBinding)     -> viewer [shop]
#   carol  group team-shop: get flows + update networkpolicies in shop,
#          and get flows in other                        -> namespace-admin
#                                                           [other (read-only), shop]
#   erin   "get" flows.moat.io cluster-wide              -> viewer [every namespace]
#   dave   authenticated, no moat permission             -> 403
#   a token the API server does not know                 -> 401
# What each sees (policies, endpoints, metrics) follows; answers are cached
# (repeated requests ask nothing), a revoked rule takes effect after the
# cache time, and while the API server is away uncached tokens get 503 and
# cached ones still work.
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
e2e_begin k8sr

FAKEAPI=$E2E_ROOT/tests/tools/fakeapi.py
FAKEAUTHZ=$E2E_ROOT/tests/tools/fakeauthz.py
TOKEN=moatd-token-$$-$RANDOM

section "lab: shop/web, shop/db, other/x on n1; fake API server with review APIs in n1's netns"
lab up "$LAB" --nodes 1 >/dev/null
lab pod "$LAB" n1 shop/web --label app=web >/dev/null
lab pod "$LAB" n1 shop/db --label app=db >/dev/null
lab pod "$LAB" n1 other/x --label app=x >/dev/null
lab_load
"$PY" "$FAKEAPI" gen-certs "$E2E_TMP/certs"
# the server's stdin stays open as long as this test runs (some versions of
# fakeapi.py stop when their stdin closes)
mkfifo "$E2E_TMP/fakeapi.stdin"
exec {FAKEAPI_STDIN}<>"$E2E_TMP/fakeapi.stdin"
nsenter --net="${NETNS[@n1]}" "$PY" "$FAKEAUTHZ" serve --certs "$E2E_TMP/certs" --token "$TOKEN" \
	<"$E2E_TMP/fakeapi.stdin" >"$E2E_TMP/fakeapi.out" 2>"$E2E_TMP/fakeapi.err" &
E2E_BG+=($!)
for i in $(seq 100); do grep -q READY "$E2E_TMP/fakeapi.out" 2>/dev/null && break; sleep 0.1; done
read -r _ APIPORT CTLPORT <"$E2E_TMP/fakeapi.out" || die "fake API server did not start: $(cat "$E2E_TMP/fakeapi.err")"
fa() {
	local body=${2:-}
	[ -n "$body" ] || body='{}'
	nsenter --net="${NETNS[@n1]}" curl -sf --max-time 10 -X POST "http://127.0.0.1:$CTLPORT/$1" \
		-H 'Content-Type: application/json' -d "$body"
}
fa_get() { nsenter --net="${NETNS[@n1]}" curl -sf --max-time 10 "http://127.0.0.1:$CTLPORT/$1"; }

mkdir -p "$E2E_TMP/cluster"
lab manifests "$LAB" "$E2E_TMP/cluster" >/dev/null
fa put "$(jq -s '{objects: [.[] | if .kind == "List" then .items[] else . end]}' "$E2E_TMP"/cluster/*.json)" >/dev/null
for ns in shop other; do
	fa put "{\"object\": {\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\",
		\"metadata\": {\"name\": \"$ns-deny\", \"namespace\": \"$ns\"},
		\"spec\": {\"podSelector\": {}, \"policyTypes\": [\"Ingress\"]}}}" >/dev/null
done

T_ALICE=alice-$RANDOM$RANDOM T_BOB=bob-$RANDOM$RANDOM T_CAROL=carol-$RANDOM$RANDOM
T_ERIN=erin-$RANDOM$RANDOM T_DAVE=dave-$RANDOM$RANDOM T_FRANK=frank-$RANDOM$RANDOM
authz() { # bob's rule on or off
	local bob=''
	[ "$1" = on ] && bob='{"user": "bob", "namespace": "shop", "verbs": ["get"], "apiGroups": ["moat.io"], "resources": ["flows"]},'
	fa authz "{\"users\": {
		\"$T_ALICE\": {\"username\": \"alice\"}, \"$T_BOB\": {\"username\": \"bob\"},
		\"$T_CAROL\": {\"username\": \"carol\", \"groups\": [\"team-shop\"]},
		\"$T_ERIN\": {\"username\": \"erin\"}, \"$T_DAVE\": {\"username\": \"dave\"},
		\"$T_FRANK\": {\"username\": \"frank\"}},
	  \"rules\": [
		{\"user\": \"alice\", \"verbs\": [\"admin\"], \"apiGroups\": [\"moat.io\"], \"resources\": [\"flows\"]},
		$bob
		{\"group\": \"team-shop\", \"namespace\": \"shop\", \"verbs\": [\"get\"], \"apiGroups\": [\"moat.io\"], \"resources\": [\"flows\"]},
		{\"group\": \"team-shop\", \"namespace\": \"shop\", \"verbs\": [\"update\", \"patch\"], \"apiGroups\": [\"networking.k8s.io\"], \"resources\": [\"networkpolicies\"]},
		{\"user\": \"carol\", \"namespace\": \"other\", \"verbs\": [\"get\"], \"apiGroups\": [\"moat.io\"], \"resources\": [\"flows\"]},
		{\"user\": \"erin\", \"verbs\": [\"get\", \"list\"], \"apiGroups\": [\"moat.io\"], \"resources\": [\"flows\"]},
		{\"user\": \"frank\", \"verbs\": [\"get\"], \"apiGroups\": [\"moat.io\"], \"resources\": [\"flows\"]}]}" >/dev/null
}
authz on

cat >"$E2E_TMP/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: lab
clusters:
- name: lab
  cluster: {server: "https://127.0.0.1:$APIPORT", certificate-authority: $E2E_TMP/certs/ca.crt}
users:
- name: moatd
  user:
    client-certificate-data: $(base64 -w0 "$E2E_TMP/certs/client.crt")
    client-key-data: $(base64 -w0 "$E2E_TMP/certs/client.key")
contexts:
- name: lab
  context: {cluster: lab, user: moatd}
EOF
SOCK=$(sock_of 1)
"$MOATCTL" uninstall "$(pin_of 1)" >/dev/null 2>&1 || true
nsenter --net="${NETNS[@n1]}" "$MOATD" --node "$LAB-n1" --kubeconfig "$E2E_TMP/kubeconfig" \
	--pin-dir "$(pin_of 1)" --socket "$SOCK" --log-level info >>"$E2E_TMP/moatd-n1.log" 2>&1 &
DPID[1]=$!
for i in $(seq 300); do
	curl -sf --max-time 2 --unix-socket "$SOCK" http://moatd/v1/status 2>/dev/null |
		jq -e '.kubernetes.ready and .generation > 0' >/dev/null 2>&1 && break
	kill -0 "${DPID[1]}" 2>/dev/null || die "moatd exited: $(tail -3 "$E2E_TMP/moatd-n1.log")"
	[ "$i" -lt 300 ] || die "moatd not synced with the fake API server"
	sleep 0.1
done
pass "moatd synced with the API server"
expect "moatd authenticated with its client certificate" \
	"$(fa_get requests | jq -r '[.[] | select(.path == "/api/v1/pods") | .auth] | unique | join(",")')" cert

as() { # token path: the body; the HTTP code in $CODE
	local out hdr=()
	[ -z "$1" ] || hdr=(-H "Authorization: Bearer $1")
	out=$(curl -s --max-time 15 --unix-socket "$SOCK" "${hdr[@]}" -w '\n%{http_code}' "http://moatd$2")
	CODE=${out##*$'\n'}
	BODY=${out%$'\n'*}
}
whoami() { as "$1" /v1/whoami; echo "$CODE $(jq -c '[.user, .role, .namespaces, .read_only_namespaces]' <<<"$BODY" 2>/dev/null)"; }

section "roles from TokenReview + SubjectAccessReview"
expect "alice" "$(whoami "$T_ALICE")" '200 ["alice","platform-admin",[],[]]'
expect "bob" "$(whoami "$T_BOB")" '200 ["bob","viewer",["shop"],[]]'
expect "carol (group binding)" "$(whoami "$T_CAROL")" '200 ["carol","namespace-admin",["other","shop"],["other"]]'
expect "erin (cluster-wide viewer)" "$(whoami "$T_ERIN")" '200 ["erin","viewer",["other","shop"],[]]'
as "$T_DAVE" /v1/whoami
expect "dave: authenticated, no moat permission" "$CODE" 403
as "not-a-token-the-server-knows" /v1/whoami
expect "unknown token" "$CODE" 401

section "what each role sees"
pols() { as "$1" /v1/policies; jq -c '[.[].name] | sort' <<<"$BODY"; }
eps() { as "$1" /v1/endpoints; jq -c '[.[].name] | sort' <<<"$BODY"; }
expect "alice: policies" "$(pols "$T_ALICE")" '["other-deny","shop-deny"]'
expect "bob: policies" "$(pols "$T_BOB")" '["shop-deny"]'
expect "carol: policies" "$(pols "$T_CAROL")" '["other-deny","shop-deny"]'
expect "bob: endpoints" "$(eps "$T_BOB")" '["db","web"]'
as "$T_BOB" /metrics
expect "bob: /metrics is platform-admin only" "$CODE" 403
as "$T_ALICE" /metrics
expect "alice: /metrics" "$CODE" 200
as "$T_BOB" /v1/status
expect "bob: status without errors that name objects" "$(jq -c '[(.kubernetes | has("object_errors")), .recent_errors]' <<<"$BODY")" '[false,[]]'

section "cache: repeated requests ask nothing; a revoked rule ends after the cache time"
n0=$(fa_get authz/stats | jq '.tokenreviews + .subjectaccessreviews')
for i in 1 2 3 4 5; do as "$T_BOB" /v1/whoami; done
n1=$(fa_get authz/stats | jq '.tokenreviews + .subjectaccessreviews')
expect "five more requests by bob: reviews asked" "$((n1 - n0))" 0
authz off
as "$T_BOB" /v1/whoami
expect "bob right after revocation (cached)" "$CODE" 200
sleep 11
as "$T_BOB" /v1/whoami
expect "bob after the cache time" "$CODE" 403
authz on

section "API server away: cached tokens work, others get 503"
as "$T_ALICE" /v1/whoami
fa down >/dev/null
as "$T_ALICE" /v1/whoami
expect "alice (cached) while the API server is away" "$CODE" 200
as "$T_FRANK" /v1/whoami
expect "frank (not cached) while the API server is away" "$CODE" 503
fa up >/dev/null
sleep 1
as "$T_FRANK" /v1/whoami
expect "frank when it is back" "$CODE $(jq -c .role <<<"$BODY")" '200 "viewer"'
as "" /v1/whoami
expect "uid 0 on the unix socket without a token stays platform-admin" "$(jq -r .role <<<"$BODY")" platform-admin

e2e_end
