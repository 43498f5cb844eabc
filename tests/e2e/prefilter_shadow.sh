#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: the hardware pre-filter's tables kept by moatd from real
# manifests (issue 6).  No offload NIC here, so `moatd --prefilter-shadow`
# keeps them in a host copy no packet reaches; everything else is the path a
# NIC's pre-filter takes: the compiler decides what can go to the NIC, each
# generation updates it in two halves around the switch, settings follow,
# and `moatctl status` shows it.  The full program judges the same traffic
# for real (the external host against the pods), so what the tables claim is
# checked against what the datapath does.
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
NODES=1
e2e_begin pfsh

section "lab: web and api on n1, an external host 10.99.0.200"
lab up "$LAB" --nodes 1 >/dev/null
lab pod "$LAB" n1 app/web --label app=web >/dev/null
lab pod "$LAB" n1 app/api --label app=api >/dev/null
lab_load
ext_up
for w in app/web app/api @ext; do serve "$w" --tcp 80 --udp 80; done
wait_served 80 app/web app/api @ext
man_cluster
moat_start 1 --prefilter-shadow --uplink eth0
sync_or_die

section "attach plans: profile and probe per interface (no offload NIC here)"
plan() { ctl 1 -o json status | jq -r ".interfaces[] | select($1) | .plan$2"; }
expect "uplink eth0 (a veth): plan" "$(plan '.hook == "uplink"' '| "\(.kind) \(.driver) \(.profile)"')" \
	"native veth veth.json"
plan '.hook == "uplink"' '.rejected["hw-prefilter+native"]' | grep -q "no XDP hardware offload" &&
	pass "uplink: why no hardware pre-filter: $(plan '.hook == "uplink"' '.rejected["hw-prefilter+native"]')" ||
	fail "uplink: hardware rejection not explained: $(plan '.hook == "uplink"' '.rejected')"
expect "pod veths: plans" "$(plan '.hook != "uplink"' .kind | sort | uniq -c | awk '{print $1 "x" $2}' | xargs)" "4xnative"
ctl 1 status | grep -E '^uplink +.* native +native +hw-prefilter\+native: no XDP hardware offload' >/dev/null &&
	pass "moatctl status shows the uplink's plan and why" ||
	fail "moatctl status: $(ctl 1 status | grep '^uplink')"

section "the pre-filter's tables (shadow copy)"
pf() { ctl 1 -o json status | jq -c ".prefilter$1"; }
expect "pre-filter active" "$(pf .active)" true
expect "shadow copy" "$(pf .interface)" '"(shadow)"'
expect "nothing to place without CIDR policies" "$(pf .tables.why_empty)" '"no policy names a CIDR"'

section "a blocklist both ways: web takes nothing from 10.99.0.128/25 and sends it nothing"
man_put block.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: not-bad, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.99.0.128/25]}}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: no-bad}
spec:
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  egress: [{action: Deny, to: [{networks: [10.99.0.128/25]}]}]
EOF
sync_or_die
expect "one pair placed" "$(pf .tables.pairs)" 1
expect "its source prefix" "$(pf '.pairs[0].source')" '"10.99.0.128/25"'
expect "every protocol group" "$(pf '.pairs[0].deny')" '["tcp","udp","sctp","other"]'
expect "web's address as destination" "$(pf .tables.destinations4)" 1
# 0.0.0.0/0 holds the cluster: never on the NIC
expect "regions holding cluster addresses" "$(pf .tables.regions_in_cluster)" 1
ctl 1 status | grep -q '^prefilter   (shadow) (host, enforcing): 1 pairs' &&
	pass "moatctl status shows it" || fail "moatctl status: $(ctl 1 status | grep -A2 '^prefilter')"
# the full program agrees: web is closed to the external host, api is not
FAM=4 probe_matrix "the full program on the same traffic" <<EOF
@ext app/web tcp 80 timeout
@ext app/web udp 80 timeout
@ext app/api tcp 80 ok
app/web @ext tcp 80 timeout
app/api @ext tcp 80 ok
EOF

section "egress allowed again: replies must come back, nothing stays on the NIC"
man_put block.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: not-bad, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.99.0.128/25]}}]}]
EOF
sync_or_die
expect "no pair" "$(pf .tables.pairs)" 0
expect "why" "$(pf .tables.why_empty)" '"no CIDR outside the cluster is denied on every port both ways"'
w=$(pf .last_update.writes)
[ "$w" -ge 1 ] && pass "the update was incremental ($w map writes)" || fail "no writes: $w"
FAM=4 probe_matrix "web may reach the external host" <<EOF
app/web @ext tcp 80 ok
@ext app/web tcp 80 timeout
EOF

section "settings follow: --observe-only and --no-revoke"
man_put block.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: not-bad, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.99.0.128/25]}}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: no-bad}
spec:
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  egress: [{action: Deny, to: [{networks: [10.99.0.128/25]}]}]
EOF
sync_or_die
expect "placed again" "$(pf .tables.pairs)" 1
moat_stop 1
moat_start 1 --prefilter-shadow --uplink eth0 --observe-only
sync_or_die
expect "observe only" "$(pf .enforce)" false
expect "still placed (counted, not dropped)" "$(pf .tables.pairs)" 1
moat_stop 1
moat_start 1 --prefilter-shadow --uplink eth0 --no-revoke
sync_or_die
expect "--no-revoke places nothing" "$(pf .tables.pairs)" 0
pf .tables.why_empty | grep -q no-revoke && pass "and says why" || fail "why: $(pf .tables.why_empty)"

section "without --prefilter-shadow and no offload NIC: none, and why"
moat_stop 1
moat_start 1 --uplink eth0
sync_or_die
expect "inactive" "$(pf .active)" false
expect "why" "$(pf .why)" '"no interface has a hardware pre-filter"'
e2e_end
