#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Blueprints end to end, on real traffic through moatd and moatctl:
#   - the shipped blueprints (deploy/blueprints) enforce: baseline default
#     deny with DNS (version 2 also DNS over TCP), namespace isolation,
#     monitoring scrapes through namespace policies
#   - a namespace pinned to version 1 runs version 1 while others run 2
#   - status shows which namespace runs which version; diff shows what a
#     change would do before it is made (and changes nothing)
#   - rollback rewrites spec.version in the Blueprint's own manifest file
#     (the rest of the file byte for byte), is audited, and the traffic
#     follows; forward again with --to
#   - a viewer sees only its namespaces and may not roll back
#   - a broken Blueprint edit is reported with file, object and field while
#     the last good version stays enforced
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
NODES=1
e2e_begin bp

section "lab: one node; pay, legacy (pinned to baseline 1), shop (isolated), monitoring, kube-system"
lab up "$LAB" --nodes 1 >/dev/null
lab ns "$LAB" shop isolation.moat.io/enabled=true moat.io/baseline=off >/dev/null
lab ns "$LAB" monitoring moat.io/baseline=off >/dev/null
lab pod "$LAB" n1 kube-system/dns --label k8s-app=kube-dns >/dev/null
lab pod "$LAB" n1 pay/app --label app=pay >/dev/null
lab pod "$LAB" n1 legacy/old --label app=old >/dev/null
lab pod "$LAB" n1 shop/web --label app=web >/dev/null
lab pod "$LAB" n1 shop/api --label app=api >/dev/null
lab pod "$LAB" n1 monitoring/prom --label app.kubernetes.io/name=prometheus >/dev/null
lab_load
serve kube-system/dns --tcp 53 --udp 53
for p in pay/app legacy/old shop/web; do serve "$p" --tcp 80 --tcp 9090; done
wait_served 80 pay/app legacy/old shop/web
man_cluster
man_put namespace-legacy.json <<'EOF'
{"apiVersion": "v1", "kind": "Namespace",
 "metadata": {"name": "legacy", "annotations": {"blueprint.moat.io/baseline": "1"}}}
EOF
for f in baseline namespace-isolation monitoring; do
	man_put "bp-$f.yaml" <"$E2E_ROOT/deploy/blueprints/$f.yaml"
done
tok() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
T_VIEW=$(tok)
cat >"$E2E_TMP/tokens.yaml" <<EOF
tokens:
- {user: payviewer, role: viewer, namespaces: [pay], token: $T_VIEW}
EOF
moat_start 1 --tokens "$E2E_TMP/tokens.yaml" --audit-log "$E2E_TMP/audit.log"
sync_or_die
pass "lab and daemon ready"

section "the shipped blueprints enforce"
probe_matrix "baseline 2, pinned 1, isolation, scrapes" <<'EOF'
pay/app kube-system/dns udp 53 ok
pay/app kube-system/dns tcp 53 ok
legacy/old kube-system/dns udp 53 ok
legacy/old kube-system/dns tcp 53 timeout
pay/app shop/web tcp 80 timeout
kube-system/dns pay/app tcp 80 timeout
shop/api shop/web tcp 80 ok
monitoring/prom shop/web tcp 80 timeout
monitoring/prom shop/web tcp 9090 ok
EOF
x=$(ctl 1 explain --from legacy/old --to kube-system/dns --port 53/TCP 2>&1 || true)
case $x in *"baseline:default-deny@1"*deny-all*) pass "explain names the pinned version's rule" ;;
	*) fail "explain: $x" ;; esac

section "status"
st=$(ctl 1 blueprint status)
echo "$st" | sed 's/^/        /'
grep -Eq '^baseline +2 +pay +2 +no' <<<"$st" && pass "pay runs baseline 2" || fail "pay row missing"
grep -Eq '^baseline +2 +legacy +1 +yes' <<<"$st" && pass "legacy runs baseline 1, pinned" || fail "legacy row missing"
grep -Eq '^baseline .* (shop|kube-system|monitoring) ' <<<"$st" && fail "baseline where its selector excludes it" ||
	pass "no baseline in shop, monitoring, kube-system"
grep -Eq '^namespace-isolation +1 +shop +1 ' <<<"$st" && pass "shop runs namespace-isolation 1" || fail "isolation row missing"

section "diff before a change: nothing applied"
F=$MAN/n1/bp-baseline.yaml
sum0=$(sha256sum <"$F")
rc=0; d=$(ctl 1 blueprint diff baseline --to 1) || rc=$?
expect "diff exit status (1 = changes)" "$rc" 1
grep -q 'namespace pay: 2 -> 1' <<<"$d" && pass "diff: pay would move 2 -> 1" || fail "diff: $d"
grep -q 'namespace legacy' <<<"$d" && fail "diff lists the pinned namespace" || pass "diff: legacy (pinned) unaffected"
grep -q '^~ ClusterNetworkPolicy baseline:default-deny in pay (changed)' <<<"$d" &&
	grep -q '^    - .*"tcp"' <<<"$d" && pass "diff: the TCP DNS rule would go" || fail "diff: $d"
rc=0; d=$(ctl 1 blueprint diff baseline --to 2) || rc=$?
expect "diff to the running version: exit 0" "$rc" 0
rc=0; ctl 1 blueprint rollback baseline --dry-run >/dev/null || rc=$?
expect "dry-run exit" "$rc" 0
[ "$(sha256sum <"$F")" = "$sum0" ] && pass "dry run and diffs left the file alone" || fail "file changed"
probe_matrix "unchanged after diffs" <<<"pay/app kube-system/dns tcp 53 ok"

section "rollback"
cp "$F" "$E2E_TMP/before.yaml"
out=$(ctl 1 blueprint rollback baseline)
echo "$out" | head -3 | sed 's/^/        /'
changed=$(diff "$E2E_TMP/before.yaml" "$F" | grep -c '^[<>]' || true)
expect "lines changed in the manifest" "$changed" 2
{ diff "$E2E_TMP/before.yaml" "$F" || true; } | grep -q '^> *version: "1"$' && pass "spec.version now \"1\"" || fail "$(diff "$E2E_TMP/before.yaml" "$F")"
sync_or_die
probe_matrix "after rollback" <<'EOF'
pay/app kube-system/dns tcp 53 timeout
pay/app kube-system/dns udp 53 ok
legacy/old kube-system/dns tcp 53 timeout
EOF
grep -Eq '^baseline +1 +pay +1 +no' <<<"$(ctl 1 blueprint status)" && pass "status: pay runs 1" || fail "status after rollback"
grep -q '"action":"rollback".*"result":"spec.version 2 -> 1 in' "$E2E_TMP/audit.log" &&
	pass "rollback audited" || fail "audit log: $(cat "$E2E_TMP/audit.log")"
rc=0; err=$(ctl 1 blueprint rollback baseline 2>&1) || rc=$?
[ $rc -ne 0 ] && grep -q 'no version before "1"' <<<"$err" && pass "no rollback past the first version" || fail "$err"
ctl 1 blueprint rollback baseline --to 2 >/dev/null
sync_or_die
probe_matrix "forward again" <<<"pay/app kube-system/dns tcp 53 ok"

section "a viewer of pay"
vs=$(MOAT_TOKEN=$T_VIEW ctl 1 -o json blueprint status)
jq -e '[.[].namespaces[].namespace] | unique == ["pay"]' <<<"$vs" >/dev/null &&
	pass "viewer sees only pay in status" || fail "viewer status: $vs"
vd=$(MOAT_TOKEN=$T_VIEW ctl 1 blueprint diff "$E2E_ROOT/deploy/blueprints/namespace-isolation.yaml" || true)
grep -q shop <<<"$vd" && fail "viewer diff shows shop: $vd" || pass "viewer diff leaves out shop"
rc=0; err=$(MOAT_TOKEN=$T_VIEW ctl 1 blueprint rollback baseline 2>&1) || rc=$?
[ $rc -ne 0 ] && grep -q 'platform admins' <<<"$err" && pass "viewer may not roll back" || fail "$err"

section "a broken edit keeps the last good blueprint"
sed 's/number: 53}}$/number: 70000}}/' "$E2E_ROOT/deploy/blueprints/baseline.yaml" | man_put bp-baseline.yaml
rc=0; moat_sync || rc=$?
expect "sync reports the error" "$rc" 2
src=$(ctl 1 -o json get sources)
jq -e '[.[] | select(.file == "bp-baseline.yaml") | .errors[]] | any(test("Blueprint baseline: spec.versions\\[0\\].clusterNetworkPolicies\\[0\\]: spec.egress\\[0\\].protocols\\[0\\].udp.destinationPort.number: 70000 is not a port"))' \
	<<<"$src" >/dev/null && pass "error names file, object and field" || fail "sources: $src"
probe_matrix "last good version enforced" <<'EOF'
pay/app kube-system/dns tcp 53 ok
pay/app shop/web tcp 80 timeout
EOF

e2e_end
