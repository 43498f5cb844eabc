#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: malformed manifests.  Each bad file must be reported in
# `moatctl get sources` (and /v1/sources) and in `moatctl status` with an error
# that names the file (and line), the object (kind namespace/name) and the
# field, on both nodes, while everything else stays enforced (real traffic),
# and fixing the file must apply it.
#
#   n1: shop/web1 (app=web), shop/db1 (app=db)    n2: shop/db2 (app=db), other/x2 (app=x)
#   good.yaml        NetworkPolicy shop/db-ingress: db admits web on 80 only
#   bad-yaml.yaml    not YAML (an unclosed flow mapping)        -> parse-error
#   endport.yaml     a good NetworkPolicy other/x-80 and then a NetworkPolicy
#                    shop/wide with endPort 70000               -> partial
#   enum-np.yaml     protocol: XTP                              -> partial
#   enum-anp.yaml    AdminNetworkPolicy action: Maybe           -> partial
# Then a good object made bad keeps its last good version; then every file is
# fixed and each fix shows in the traffic.
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
e2e_begin badi

section "lab and daemons"
lab up "$LAB" --nodes 2 >/dev/null
lab pod "$LAB" n1 shop/web1 --label app=web >/dev/null
lab pod "$LAB" n1 shop/db1 --label app=db >/dev/null
lab pod "$LAB" n2 shop/db2 --label app=db >/dev/null
lab pod "$LAB" n2 other/x2 --label app=x >/dev/null
lab_load
for w in shop/web1 shop/db1 shop/db2 other/x2; do serve "$w" --tcp 80,81 --udp 80,81; done
wait_served 81 shop/web1 shop/db1 shop/db2 other/x2
man_cluster
moat_start 1
moat_start 2
sync_or_die

good_db_ingress() { # port
	cat <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{protocol: TCP, port: $1}, {protocol: UDP, port: $1}]
EOF
}
good_db_ingress 80 | man_put good.yaml
sync_or_die
FAM=4
probe_matrix "good.yaml enforced" <<EOF
$(flows shop/web1 shop/db1 ok timeout "tcp udp")
$(flows shop/web1 shop/db2 ok timeout "tcp udp")
$(flows other/x2 shop/db1 timeout timeout "tcp udp")
$(flows shop/web1 other/x2 ok ok "tcp udp")
$(flows other/x2 shop/web1 ok ok "tcp udp")
EOF

section "bad files"
man_put bad-yaml.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-isolate, namespace: shop
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
EOF
man_put endport.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x-80, namespace: other}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
  - ports: [{protocol: TCP, port: 80}, {protocol: UDP, port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: wide, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}}]
    ports:
    - {protocol: TCP, port: 80, endPort: 70000}
EOF
man_put enum-np.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-udp, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{protocol: XTP, port: 81}]
EOF
man_put enum-anp.yaml <<'EOF'
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: no-other-to-shop}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: shop}}}
  ingress:
  - name: deny-other
    action: Maybe
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: other}}}]
EOF
rc=0
moat_sync >"$E2E_TMP/sync.out" || rc=$?
expect "sync: every file read, some with errors (exit 2)" "$rc" 2

src_field() { # node file jq-expr
	curl -s --max-time 5 --unix-socket "$(sock_of "$1")" http://moatd/v1/sources |
		jq -r --arg f "$2" ".[] | select(.file == \$f) | $3"
}
check_err() { # file status substring-of-error...
	local f=$1 st=$2 n e s
	shift 2
	for n in 1 2; do
		expect "n$n: $f status" "$(src_field $n "$f" .status)" "$st"
		e=$(src_field $n "$f" '.errors | join(" / ")')
		for s in "$@"; do
			case $e in
			*"$s"*) pass "n$n: $f error names '$s'" ;;
			*) fail "n$n: $f error lacks '$s': $e" ;;
			esac
		done
	done
	# the same error in moatctl's own output
	ctl 1 get sources | grep -qF -- "$f" && ctl 1 get sources | grep -F -- "$f" | grep -qF -- "$1" &&
		pass "moatctl get sources lists $f" || fail "moatctl get sources does not list $f"
	ctl 1 status | grep -F -- "$f:" | grep -qF -- "${!#}" && pass "moatctl status shows the $f error" ||
		fail "moatctl status does not show the $f error: $(ctl 1 status | grep -F "$f" || echo none)"
}
check_err bad-yaml.yaml parse-error "bad-yaml.yaml:4:" "flow mapping"
check_err endport.yaml partial "endport.yaml:10:" "NetworkPolicy shop/wide" "spec.ingress[0].ports[0].endPort" "70000"
check_err enum-np.yaml partial "enum-np.yaml:1:" "NetworkPolicy shop/db-udp" "spec.ingress[0].ports[0].protocol" '"XTP"'
check_err enum-anp.yaml partial "enum-anp.yaml:1:" "AdminNetworkPolicy no-other-to-shop" "spec.ingress[0].action" '"Maybe"'
for n in 1 2; do
	expect "n$n: endport.yaml: the good object in it is applied" \
		"$(src_field $n endport.yaml '"\(.objects) \(.applied_digest == .digest)"')" "1 true"
	expect "n$n: good.yaml untouched" "$(src_field $n good.yaml '"\(.status) \(.errors | length)"')" "ok 0"
	expect "n$n: policies live" "$(ctl $n get policies -o json | jq -r '[.[] | "\(.namespace // "")/\(.name)"] | sort | join(" ")')" \
		"other/x-80 shop/db-ingress"
done
probe_matrix "other objects still enforced" <<EOF
$(flows shop/web1 shop/db1 ok timeout "tcp udp")
$(flows shop/web1 shop/db2 ok timeout "tcp udp")
$(flows other/x2 shop/db1 timeout timeout "tcp udp")
$(flows shop/web1 other/x2 ok timeout "tcp udp")
$(flows other/x2 shop/web1 ok ok "tcp udp")
EOF

section "a good object made bad keeps its last good version"
man_put good.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{protocol: TCP, port: 81, endPort: 70000}, {protocol: UDP, port: 81}]
EOF
rc=0
moat_sync >"$E2E_TMP/sync.out" || rc=$?
expect "sync exit" "$rc" 2
check_err good.yaml partial "good.yaml:1:" "NetworkPolicy shop/db-ingress" "spec.ingress[0].ports[0].endPort" "70000"
probe_matrix "shop/db-ingress: still the old version (80, not 81)" <<EOF
$(flows shop/web1 shop/db1 ok timeout "tcp udp")
$(flows shop/web1 shop/db2 ok timeout "tcp udp")
EOF

section "fixing the files applies them"
good_db_ingress 80 | man_put good.yaml
sed -i 's/namespace: shop$/namespace: shop}/' "$MAN"/n*/bad-yaml.yaml
rc=0
moat_sync >"$E2E_TMP/sync.out" || rc=$?
expect "sync exit (enum and endport files still bad)" "$rc" 2
for n in 1 2; do
	expect "n$n: bad-yaml.yaml fixed" "$(src_field $n bad-yaml.yaml '"\(.status) \(.errors | length) \(.applied_digest == .digest)"')" "ok 0 true"
	expect "n$n: good.yaml fixed" "$(src_field $n good.yaml '"\(.status) \(.errors | length) \(.applied_digest == .digest)"')" "ok 0 true"
done
probe_matrix "shop/web-isolate (was bad-yaml.yaml) now enforced" <<EOF
$(flows other/x2 shop/web1 timeout timeout "tcp udp")
$(flows shop/web1 shop/db1 ok timeout "tcp udp")
EOF
sed -i 's/endPort: 70000/endPort: 81/' "$MAN"/n*/endport.yaml
sed -i 's/protocol: XTP/protocol: UDP/' "$MAN"/n*/enum-np.yaml
rc=0
moat_sync >"$E2E_TMP/sync.out" || rc=$?
expect "sync exit (only the ANP still bad)" "$rc" 2
probe_matrix "shop/wide (endPort 81) and shop/db-udp (UDP 81) now enforced" <<EOF
$(flows other/x2 shop/db1 ok ok "tcp")
$(flows other/x2 shop/db2 ok ok "tcp")
$(flows shop/web1 shop/db1 ok ok "udp")
$(flows shop/web1 shop/db2 ok timeout "tcp")
EOF
sed -i 's/action: Maybe/action: Deny/' "$MAN"/n*/enum-anp.yaml
rc=0
moat_sync >"$E2E_TMP/sync.out" || rc=$?
expect "sync exit (all files good)" "$rc" 0
cat "$E2E_TMP/sync.out"
for n in 1 2; do
	expect "n$n: every source ok" "$(ctl $n get sources -o json | jq -r '[.[] | select(.status != "ok" or (.errors | length) > 0 or .applied_digest != .digest) | .file] | join(",")')" ""
done
probe_matrix "AdminNetworkPolicy no-other-to-shop now enforced (Admin tier beats shop/wide)" <<EOF
$(flows other/x2 shop/db1 timeout timeout "tcp udp")
$(flows other/x2 shop/db2 timeout timeout "tcp udp")
$(flows shop/web1 shop/db2 ok timeout "tcp")
EOF
expect "explain x2 -> db1 80/TCP" "$(ctl 2 -o json explain --from other/x2 --to shop/db1 --port 80/TCP | jq -r '"\(.verdict)|\(.decided_by)"')" \
	'deny|AdminNetworkPolicy no-other-to-shop ingress[0] "deny-other"'

e2e_end
