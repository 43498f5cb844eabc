#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: moatd built with AddressSanitizer (LeakSanitizer included) and
# UBSan through a realistic run, then SIGTERM: zero leaks, zero errors.
#
#   build   make O=${O:-build}/asan SANITIZE=1 all (the tree make check's sanitize
#           suite uses; skip, 77, only if that fails)
#   run     one node, app/web, app/db, app/other served on TCP/UDP 80-81;
#           moatd --veth-prefix m --archive-dir (flight recorder, small
#           segments rotating) --tokens --audit-log --config; traffic
#           allowed, denied, audited; policy changes (added, changed, a bad
#           file refused, a too-large set refused, deleted), a pod deleted
#           and another created, SIGHUP reload; API calls: status, sources,
#           policies, endpoints, identities, explain, metrics, observe (last
#           N, and --follow cut by the client), flows, archive list and
#           query, report, a manifest PUT through the API (audited) and a
#           refused one, a token user's calls; moatctl is the ASan build too
#   end     SIGTERM: moatd exits 0 (ASAN_OPTIONS exitcode=23 on a leak), its
#           log has no AddressSanitizer, LeakSanitizer or UBSan report; then
#           a second ASan moatd adopts the pinned state and stops cleanly too;
#           moatd refusing to start (a bad flag, a pin directory not on
#           bpffs) exits 2 / 1 without a leak
#   more    LEAKS_WITH="faults k8s_source" also runs those scripts with the
#           ASan build: no sanitizer report may appear (faults.sh: ~150 s)
# Exit 0 pass, 77 skip (not root, or no ASan build possible), else fail.
cd "$(dirname "$0")/../.." || exit 1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
export O=${LEAKS_O:-${O:-build}/asan}
if ! make -s O="$O" SANITIZE=1 all >/tmp/moat-leaks-build.$$ 2>&1; then
	echo "SKIP: cannot build the ASan tree ($O):"
	tail -5 /tmp/moat-leaks-build.$$
	rm -f /tmp/moat-leaks-build.$$
	exit 77
fi
rm -f /tmp/moat-leaks-build.$$
# every sanitized process of this test (moatd, moatctl, probe): leaks are
# errors (exit 23), reports go to the process's stderr
export ASAN_OPTIONS=detect_leaks=1:exitcode=23:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=report_objects=1
. tests/e2e/lib.bash
NODES=1
e2e_begin leak

section "lab, moatd (ASan) with archive, tokens, audit log"
lab up "$LAB" --nodes 1 >/dev/null
lab pod "$LAB" n1 app/web --label app=web >/dev/null
lab pod "$LAB" n1 app/db --label app=db >/dev/null
lab pod "$LAB" n1 app/other --label app=other >/dev/null
lab_load
for w in app/web app/db app/other; do serve "$w" --tcp 80,81 --udp 80,81; done
wait_served 81 app/web app/db app/other
man_cluster
np() { # name selector-app from-app port [audit]
	cat <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: $1, namespace: app${5:+, annotations: {moat.io/audit: \"true\"\}}}
spec:
  podSelector: {matchLabels: {app: $2}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: $3}}}]
    ports: [{protocol: TCP, port: $4}, {protocol: UDP, port: $4}]
EOF
}
np db-in db web 80 | man_put base.yaml
tok() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
T_VIEW=$(tok)
cat >"$E2E_TMP/tokens.yaml" <<EOF
tokens:
- {user: vera, role: viewer, namespaces: [app], token: $T_VIEW}
EOF
printf 'logLevel: info\narchive:\n  namespaces: {app: {maxAge: 1h}}\n' >"$E2E_TMP/moatd.yaml"
ARCH=$E2E_TMP/archive
mkdir -p "$ARCH"
moat_start 1 --veth-prefix m --tokens "$E2E_TMP/tokens.yaml" --audit-log "$E2E_TMP/audit.log" \
	--config "$E2E_TMP/moatd.yaml" --archive-dir "$ARCH" --archive-segment-size 32Ki --archive-segment-age 2s
sync_or_die
LOG=$E2E_TMP/moatd-n1.log
SOCK=$(sock_of 1)
api() { curl -s --max-time 10 --unix-socket "$SOCK" "$@"; }
traffic() {
	probe_matrix "$1" <<EOF
app/web app/db tcp 80 ok
app/web app/db udp 80 ok
app/other app/db tcp 80 $2
app/other app/db tcp 81 timeout
app/db app/web tcp 81 ok
EOF
}
traffic "base policy (ASan moatd)" timeout

section "policy changes, pods coming and going, bad input, API calls"
np web-in web db 81 audit | man_put audit.yaml
np db-in-other db other 80 | man_put more.yaml
sync_or_die
traffic "more policies" ok
printf 'kind: NetworkPolicy\nmetadata: {name: broken\n' | man_put bad.yaml
for i in $(seq 300); do np "big-$i" db web $((1000 + i)); echo "---"; done | man_put big.yaml
rc=0
moat_sync >/dev/null || rc=$?
expect "bad and oversized files read, refused (sync exit 2)" "$rc" 2
man_rm bad.yaml
man_rm big.yaml
man_rm more.yaml
sync_or_die
traffic "after the refusals and removals" timeout
lab rmpod "$LAB" app/other >/dev/null
man_rm pod-app_other.json
lab pod "$LAB" n1 app/late --label app=other >/dev/null
lab_load
man_cluster
serve app/late --tcp 80,81
wait_served 81 app/late
sync_or_die
probe_matrix "the new pod" <<EOF
app/late app/db tcp 80 timeout
app/web app/late tcp 80 ok
EOF
kill -HUP "${DPID[1]}"
sleep 0.5
for c in status "get sources" "get policies" "get endpoints" "get identities" metrics \
	"observe --last 50" "observe --last 20 --verdict deny" "flows" "flows --verdict deny" \
	"archive list" "report" "report -o json" "-o json status" \
	"explain --from app/web --to app/db --port 80/TCP" "explain --from app/late --to app/db --port 81/UDP"; do
	# shellcheck disable=SC2086
	if ctl 1 $c >"$E2E_TMP/out" 2>"$E2E_TMP/err"; then
		pass "moatctl $c"
	else
		fail "moatctl $c: exit $?: $(head -c 300 "$E2E_TMP/err")"
	fi
done
ctl 1 archive query --namespace app -w "$E2E_TMP/q.pcapng" 2>"$E2E_TMP/err" &&
	[ -s "$E2E_TMP/q.pcapng" ] && pass "archive query" || fail "archive query: $(head -c 300 "$E2E_TMP/err")"
ctl 1 archive query --namespace app --verdict deny --filter "tcp dst port 80" --format pcap -w "$E2E_TMP/q.pcap" \
	2>"$E2E_TMP/err" && pass "archive query with a filter, pcap" || fail "archive query --filter: $(head -c 300 "$E2E_TMP/err")"
# observe --follow, cut by the client in the middle of its stream
timeout 2 "$MOATCTL" --socket "$SOCK" observe --follow >"$E2E_TMP/follow" 2>&1 &
fpid=$!
probe_matrix "traffic while a follower streams" <<EOF
app/late app/db tcp 80 timeout
app/web app/db tcp 80 ok
EOF
wait $fpid || true
[ -s "$E2E_TMP/follow" ] && pass "observe --follow streamed ($(wc -l <"$E2E_TMP/follow") lines)" || fail "observe --follow: nothing"
api --max-time 1 "http://moatd/v1/observe?follow=1" >/dev/null || true
code=$(api -o /dev/null -w '%{http_code}' -X PUT --data-binary @<(np web-in-api web other 81) http://moatd/v1/manifests/api.yaml)
expect "manifest PUT through the API" "$code" 200
ls "$MAN/n1" | grep -q api && pass "the PUT manifest is in the directory" || fail "PUT manifest not in $MAN/n1"
code=$(api -o /dev/null -w '%{http_code}' -X PUT --data-binary 'kind: [' http://moatd/v1/manifests/api-bad.yaml)
[ "$code" != 200 ] && pass "a bad manifest PUT refused ($code)" || fail "bad manifest PUT accepted"
code=$(api -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $T_VIEW" http://moatd/v1/flows)
expect "a viewer's flows" "$code" 200
code=$(api -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $T_VIEW" -X PUT --data-binary x http://moatd/v1/manifests/v.yaml)
expect "a viewer's write refused" "$code" 403
code=$(api -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" http://moatd/v1/status)
expect "a wrong token refused" "$code" 401
[ -s "$E2E_TMP/audit.log" ] && pass "audit log written" || fail "no audit log"
segs=$(find "$ARCH" -name '*.pcapng*' | wc -l)
[ "$segs" -ge 1 ] && pass "archive segments written ($segs)" || fail "no archive segment"

section "SIGTERM: exit 0, no sanitizer report"
sanitized() { grep -E "AddressSanitizer|LeakSanitizer|runtime error:|SUMMARY: " "$1" | head -20 || true; }
stop_checked() { # what
	local pid=${DPID[1]} rc=0
	kill -TERM "$pid"
	wait "$pid" || rc=$?
	unset "DPID[1]"
	expect "$1: moatd exit status (23 = leaks)" "$rc" 0
	local r
	r=$(sanitized "$LOG")
	[ -z "$r" ] && pass "$1: no sanitizer report in the log" || { fail "$1: sanitizer report:"; grep -A12 -E "^(Direct|Indirect) leak|ERROR: AddressSanitizer|runtime error" "$LOG" | head -150; }
}
stop_checked "first run"
grep -q "moatd stopping; enforcement stays in place" "$LOG" && pass "it stopped through its clean path" ||
	fail "no clean stop logged"
probe_matrix "enforcement stays after the stop" <<EOF
app/web app/db tcp 80 ok
app/late app/db tcp 80 timeout
app/late app/db tcp 81 timeout
EOF
: >"$LOG"
nsenter --net="/run/netns/$LAB-n1" "$MOATD" --node "$LAB-n1" --manifests "$MAN/n1" --pin-dir "$(pin_of 1)" \
	--socket "$SOCK" --veth-prefix m --archive-dir "$ARCH" >>"$LOG" 2>&1 &
DPID[1]=$!
for i in $(seq 150); do ctl 1 status >/dev/null 2>&1 && break; sleep 0.1; done
sync_or_die
grep -q "datapath adopted" "$LOG" && pass "second run adopted the pinned state" || fail "second run did not adopt"
probe_matrix "second run" <<EOF
app/web app/db tcp 80 ok
app/late app/db tcp 80 timeout
app/late app/web tcp 81 ok
EOF
ctl 1 observe --last 10 >/dev/null && pass "second run: observe" || fail "second run: observe"
stop_checked "second run"
"$MOATCTL" uninstall "$(pin_of 1)" >/dev/null 2>&1
[ ! -e "$(pin_of 1)" ] && pass "uninstalled: its pin directory is gone" || fail "$(pin_of 1) is still there"

section "moatd refusing to start: no leak on its error paths either"
rc=0
"$MOATD" --node x --manifests "$MAN/n1" --no-such-flag >"$E2E_TMP/e1.log" 2>&1 || rc=$?
expect "an unknown flag: exit 2 (23 = leaks)" "$rc" 2
rc=0
"$MOATD" --node x --manifests "$MAN/n1" --pin-dir "$E2E_TMP/notbpf/p" --socket "$E2E_TMP/x.sock" \
	>"$E2E_TMP/e2.log" 2>&1 || rc=$?
expect "a pin directory not on bpffs: exit 1 (23 = leaks)" "$rc" 1
r=$(sanitized "$E2E_TMP/e1.log"; sanitized "$E2E_TMP/e2.log")
[ -z "$r" ] && pass "no sanitizer report" || { fail "sanitizer report:"; cat "$E2E_TMP/e1.log" "$E2E_TMP/e2.log"; }

# LEAKS_WITH="faults k8s_source ...": other e2e scripts with the ASan build,
# every sanitizer report written to a file (log_path): none may appear
for t in ${LEAKS_WITH:-}; do
	section "tests/e2e/$t.sh with the ASan build"
	mkdir -p "$E2E_TMP/san-$t"
	rc=0
	ASAN_OPTIONS=detect_leaks=1:exitcode=23:log_path=$E2E_TMP/san-$t/asan \
		UBSAN_OPTIONS=print_stacktrace=1:log_path=$E2E_TMP/san-$t/ubsan \
		bash "tests/e2e/$t.sh" >"$E2E_TMP/$t.out" 2>&1 || rc=$?
	expect "$t.sh: $(tail -1 "$E2E_TMP/$t.out")" "$rc" 0
	[ "$rc" = 0 ] || grep -E "FAIL|ERROR" "$E2E_TMP/$t.out" | head -10
	n=$(find "$E2E_TMP/san-$t" -type f | wc -l)
	[ "$n" = 0 ] && pass "$t.sh: no sanitizer report" ||
		{ fail "$t.sh: $n sanitizer reports"; cat "$E2E_TMP/san-$t"/* | grep -vE "libsanitizer|libc_start" | head -60; }
done
e2e_end
