#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: faults injected into a running moatd (one node, real traffic).
# Each fault ends with the last good policy still enforced (probes), a log
# line, a metric or status field, and recovery once the fault is gone.
#
#   n1: app/web (app=web), app/db (app=db), app/other (app=other)
#   base policy: app/db admits app=web on TCP 80 only
#
#   full map          moatd --max-policy 16; a file of 20 policies does not
#                     fit: refused as a whole (no policy of it live), the
#                     previous generation stays, logged, counted
#                     (moat_policy_apply_errors_total), the file says
#                     "refused"; removing the file settles it; a version
#                     that fits applies.
#   ENOMEM            map updates failing (failpoint MOAT_FAULT_ENOMEM, a file
#                     whose presence makes every table update fail): the
#                     change refused as a whole, the generation stays,
#                     logged, counted; when the file goes, the change is
#                     applied by moatd's retry (back-off 1, 2, 4 .. 30 s);
#                     a fresh daemon whose first generation fails (nothing
#                     enforced) gets it built by the retry too.
#   vanishing veths   a pod's veth (and stray veths with the CNI prefix)
#                     created and deleted 40 times at random moments while
#                     moatd attaches: no crash, no stale attachment or
#                     pinned link; the pod's veth that stays is enforced.
#   netlink overrun   moatd stopped (SIGSTOP) during 1000 link changes (50
#                     bridges), a pod is deleted and another one created:
#                     ENOBUFS on its netlink socket; on SIGCONT the resync is
#                     logged and counted (moat_netlink_resyncs_total) and
#                     the interfaces match the truth (the new pod enforced,
#                     the deleted one's links gone).
#   bpffs             a --pin-dir that is not on bpffs: a clear error, exit
#                     1, nothing created; bpffs not mounted at /sys/fs/bpf
#                     (a private mount namespace): moatd mounts it.
#   pin directory     removed under a running moatd (rm -rf): enforcement
#   removed           never stops (moatd holds its maps and links); within a
#                     second it pins them again, logs it and counts it
#                     (moat_pins_restored_total); a change applies; after a
#                     kill -9 the restored pins enforce and are adopted.
#   descriptors       moatd started with 1100 descriptors taken (it holds
#                     two per pod): its API answers above FD_SETSIZE.
#   kill -9           10 times: a policy change (A <-> B, plus 800 other
#                     policies), kill -9 after 0-200 ms, probes on the
#                     frozen datapath: exactly A or B, never a mix; restart
#                     (adopting the pins): converges to the new state.
# Kubernetes API server faults (errors, hangs, garbage mid-stream, 410,
# token rotation) are in k8s_source.sh; a full disk under the flight
# recorder in archives.sh; bad manifests in bad_input.sh; restarts under
# continuous traffic in restart.sh.  ENOMEM is injected with moatd's
# failpoint: the kernel cannot be starved on demand here (RLIMIT_MEMLOCK no
# longer limits BPF maps since 5.11, and on this VM's cgroup v1 the elements
# of non-preallocated maps are not charged to the creating memory cgroup:
# 200 LPM inserts with that cgroup at its limit, no failure, no charge).
# FAULTS_ONLY=a,b runs some of: map enomem vanish bpffs pindir netlink fds kill.
# Exit 0 pass, 77 skip (not root), anything else fail.
. "$(dirname "$0")/lib.bash"
NODES=1
e2e_begin flt
ONLY=${FAULTS_ONLY:-all}
want() { [ "$ONLY" = all ] || [[ ",$ONLY," == *",$1,"* ]]; }

section "lab: one node, app/web, app/db, app/other; base policy"
lab up "$LAB" --nodes 1 >/dev/null
lab pod "$LAB" n1 app/web --label app=web >/dev/null
lab pod "$LAB" n1 app/db --label app=db >/dev/null
lab pod "$LAB" n1 app/other --label app=other >/dev/null
lab_load
for w in app/web app/db app/other; do serve "$w" --tcp 80,81; done
wait_served 81 app/web app/db app/other
man_cluster
np_db() { # name port [from-app]
	cat <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: $1, namespace: app}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: ${3:-web}}}}]
    ports: [{protocol: TCP, port: $2}]
EOF
}
np_db db-ingress 80 | man_put base.yaml
SOCK=$(sock_of 1)
PIN=$(pin_of 1)
LOG=$E2E_TMP/moatd-n1.log
st() { curl -sf --max-time 5 --unix-socket "$SOCK" http://moatd/v1/status; }
policies() { ctl 1 get policies -o json | jq -r '[.[] | .name] | sort | join(" ")'; }
src_field() { # file jq-expr
	curl -s --max-time 5 --unix-socket "$SOCK" http://moatd/v1/sources |
		jq -r --arg f "$1" ".[] | select(.file == \$f) | $2"
}
logged() { # description pattern: a new log line since the mark
	if tail -c +"$((LOGMARK + 1))" "$LOG" | grep -qE -- "$2"; then
		pass "logged: $1"
	else
		fail "not logged: $1 (/$2/)"
	fi
}
logmark() { LOGMARK=$(stat -c %s "$LOG"); }
base_enforced() { # title
	probe_matrix "$1" <<EOF
app/web app/db tcp 80 ok
app/web app/db tcp 81 timeout
app/other app/db tcp 80 timeout
app/db app/web tcp 80 ok
app/other app/web tcp 81 ok
EOF
}
links_pinned() { ls "$PIN/links" 2>/dev/null | sort | tr '\n' ' ' | sed 's/ $//'; }
pod_links() { # the link pin names of the lab's pods now
	local p v
	for p in "$@"; do
		v=$(lab get "$LAB" "$p" hostVeth)
		echo "h_$v p_$v"
	done | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//'
}

moat_start 1 --max-policy 16 --veth-prefix m
sync_or_die
logmark
base_enforced "base policy enforced"

# ---- a full map -----------------------------------------------------------------
if want map; then
	section "full map: 20 policies into a table of 16"
	bulk() { # n: n policies letting app=other reach app/db, on 80 (bulk-1) or a port of its own
		local i
		for ((i = 1; i <= $1; i++)); do
			np_db "bulk-$i" "$((i == 1 ? 80 : 1000 + i))" other
			echo "---"
		done
	}
	e0=$(metric 1 moat_policy_apply_errors_total)
	g0=$(st | jq -r .generation)
	logmark
	bulk 20 | man_put bulk.yaml
	rc=0
	moat_sync >"$E2E_TMP/sync.out" || rc=$?
	expect "sync: the file read, refused (exit 2)" "$rc" 2
	expect "bulk.yaml status" "$(src_field bulk.yaml .status)" refused
	case $(src_field bulk.yaml '.errors | join(" / ")') in
	*"table moat_pol would hold "[0-9][0-9]" entries, capacity is 16"*) pass "bulk.yaml error names the table and its capacity" ;;
	*) fail "bulk.yaml error: $(src_field bulk.yaml '.errors | join(" / ")')" ;;
	esac
	expect "no policy of the refused file is live" "$(policies)" db-ingress
	expect "the generation named in the error is the live one" "$(st | jq -r .generation)" "$g0"
	expect "applied objects of bulk.yaml" "$(src_field bulk.yaml .objects)" 0
	expect "moat_policy_apply_errors_total counts it" "$(metric 1 moat_policy_apply_errors_total)" $((e0 + 1))
	logged "change refused, the previous generation stays" "error +change refused, generation [0-9]+ stays enforced: table moat_pol"
	case $(ctl 1 status) in
	*"recent errors"*"table moat_pol would hold "[0-9][0-9]" entries, capacity is 16"*) pass "moatctl status shows the refusal" ;;
	*) fail "moatctl status does not show the refusal" ;;
	esac
	expect "table fill unchanged (no entry of the refused file)" \
		"$(metric 1 'moat_table_entries{table="moat_pol"}')" 2
	base_enforced "the previous generation stays enforced (other -> db 80 still denied)"

	section "full map: the refused file removed, then a version that fits"
	man_rm bulk.yaml
	rc=0
	moat_sync --timeout 10 >"$E2E_TMP/sync.out" || rc=$?
	expect "sync after removing the refused file (exit 0)" "$rc" 0
	expect "bulk.yaml no longer listed" "$(src_field bulk.yaml .file)" ""
	bulk 13 | man_put bulk.yaml
	rc=0
	moat_sync >"$E2E_TMP/sync.out" || rc=$?
	expect "13 policies fit (sync exit 0)" "$rc" 0
	expect "table fill" "$(metric 1 'moat_table_entries{table="moat_pol"}')" 16
	expect "bulk.yaml applied" "$(src_field bulk.yaml '"\(.status) \(.objects)"')" "ok 13"
	probe_matrix "the fitting version is enforced (other -> db 80 now allowed)" <<EOF
app/other app/db tcp 80 ok
app/web app/db tcp 80 ok
app/web app/db tcp 81 timeout
EOF
	g1=$(st | jq -r .generation)
	[ "$g1" -gt "$g0" ] && pass "generation advanced ($g0 -> $g1)" || fail "generation $g0 -> $g1"
	man_rm bulk.yaml
	sync_or_die
	base_enforced "back to the base policy"
fi

# ---- map updates failing with ENOMEM -----------------------------------------------
# moatd's failpoint MOAT_FAULT_ENOMEM=FILE makes every table update fail
# with ENOMEM while FILE exists (offload/tx.c), after the same retries a
# real one gets.
if want enomem; then
	section "ENOMEM on map updates: a change, then a fresh daemon's first generation"
	FAULT=$E2E_TMP/enomem
	retried() { # what: every file applied without errors within 40 s (retries back off 1, 2, 4 .. s)
		local i rc
		for i in $(seq 400); do
			[ "$(curl -s --max-time 5 --unix-socket "$SOCK" http://moatd/v1/sources |
				jq '[.[] | select(.status != "ok" or .applied_digest != .digest)] | length')" = 0 ] && break
			sleep 0.1
		done
		rc=0
		moat_sync --timeout 5 >"$E2E_TMP/sync.out" || rc=$?
		expect "$1 (sync exit 0)" "$rc" 0
	}
	moat_stop 1
	export MOAT_FAULT_ENOMEM=$FAULT
	moat_start 1 --max-policy 16 --veth-prefix m
	unset MOAT_FAULT_ENOMEM
	sync_or_die
	base_enforced "base policy (failpoint armed, file absent)"
	e0=$(metric 1 moat_policy_apply_errors_total)
	g0=$(st | jq -r .generation)
	logmark
	touch "$FAULT"
	np_db db-ingress 81 | man_put base.yaml
	rc=0
	moat_sync >"$E2E_TMP/sync.out" || rc=$?
	expect "the change refused (sync exit 2)" "$rc" 2
	case $(src_field base.yaml '.errors | join(" / ")') in
	*"datapath update failed (Cannot allocate memory), generation $g0 stays enforced"*)
		pass "base.yaml error: the update failed, generation $g0 stays" ;;
	*) fail "base.yaml error: $(src_field base.yaml '.errors | join(" / ")')" ;;
	esac
	expect "counted" "$(metric 1 moat_policy_apply_errors_total)" $((e0 + 1))
	logged "datapath update failed" "error +datapath update failed \(Cannot allocate memory\), generation $g0 stays enforced"
	expect "generation" "$(st | jq -r .generation)" "$g0"
	base_enforced "the previous generation stays enforced (80, not 81)"
	rm -f "$FAULT"
	retried "memory back: the change applied by a retry"
	logged "the retry" "info +retrying the change whose datapath update failed"
	probe_matrix "the change enforced (db admits web on 81)" <<EOF
app/web app/db tcp 81 ok
app/web app/db tcp 80 timeout
app/other app/db tcp 81 timeout
EOF
	np_db db-ingress 80 | man_put base.yaml
	sync_or_die

	# a fresh datapath whose first generation fails: nothing would be
	# enforced until the retry
	moat_stop 1
	touch "$FAULT"
	logmark
	export MOAT_FAULT_ENOMEM=$FAULT
	moat_start 1 --max-policy 16 --veth-prefix m
	unset MOAT_FAULT_ENOMEM
	logged "the first generation failed" "warn +the first generation was refused"
	expect "generation" "$(st | jq -r .generation)" 0
	rm -f "$FAULT"
	retried "memory back: the first generation built by a retry"
	logged "a full generation retried" "info +retrying the change whose datapath update failed \(a full generation"
	base_enforced "the base policy enforced"
	moat_stop 1
	moat_start 1 --max-policy 16 --veth-prefix m
	sync_or_die
fi

# ---- interfaces vanishing while moatd attaches -------------------------------------
if want vanish; then
	section "vanishing veths: a pod's veth and stray ones come and go 40 times while moatd attaches"
	GH=$LAB-gh ST=$LAB-st
	ip netns add "$GH"
	at_exit "ip netns del $GH"
	ip netns add "$ST"
	at_exit "ip netns del $ST"
	ip -n "$GH" link set lo up
	# app/ghost (app=db): known from its manifest, its veth comes and goes
	man_put pod-app_ghost.json <<EOF
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"name": "ghost", "namespace": "app", "uid": "6f0e3e52-0000-4000-8000-000000000001", "labels": {"app": "db"}},
 "spec": {"nodeName": "$LAB-n1", "containers": [{"name": "probe", "image": "moat-lab/probe"}]},
 "status": {"phase": "Running", "hostIP": "10.99.0.1", "podIP": "10.101.0.200", "podIPs": [{"ip": "10.101.0.200"}]}}
EOF
	sync_or_die
	ghost_up() {
		ip -n "$LAB-n1" link add mghost type veth peer name eth0 netns "$GH" || return 0
		ip -n "$GH" -batch - <<EOF || true
addr add 10.101.0.200/32 dev eth0
link set eth0 up
route add default via 169.254.1.1 dev eth0 onlink
EOF
		ip -n "$LAB-n1" -batch - <<EOF || true
link set mghost up
addr add 169.254.1.1/32 dev mghost
route add 10.101.0.200/32 dev mghost src 10.99.0.1
EOF
	}
	ghost_down() { ip -n "$LAB-n1" link del mghost 2>/dev/null || true; }
	stray() { # i: a veth with the CNI prefix and no pod, deleted soon after
		ip -n "$LAB-n1" link add "mstray$1" type veth peer name "s$1" netns "$ST" || return 0
		ip -n "$LAB-n1" link set "mstray$1" up || true
		sleep "0.0$((RANDOM % 10))"
		ip -n "$LAB-n1" link del "mstray$1" 2>/dev/null || true
	}
	pid0=${DPID[1]}
	for i in $(seq 40); do
		ghost_up
		sleep "0.0$((RANDOM % 10))"
		ghost_down
		stray "$i" &
		spid=$!
		sleep "0.0$((RANDOM % 5))"
		ghost_up
		ghost_down
		wait "$spid"
	done
	ghost_up
	nsenter --net="/run/netns/$LAB-n1" sh -c 'echo 0 > /proc/sys/net/ipv4/conf/mghost/rp_filter'
	NETNS[app/ghost]=/run/netns/$GH IP4[app/ghost]=10.101.0.200
	serve app/ghost --tcp 80,81
	wait_served 81 app/ghost
	kill -0 "$pid0" && [ "${DPID[1]}" = "$pid0" ] && pass "moatd alive (the same process)" || fail "moatd died"
	want_links=$(printf '%s\n' $(pod_links app/web app/db app/other) h_mghost p_mghost | sort | tr '\n' ' ' | sed 's/ $//')
	for i in $(seq 50); do [ "$(links_pinned)" = "$want_links" ] && break; sleep 0.1; done
	expect "pinned links: the pods' and the ghost's, no stray one" "$(links_pinned)" "$want_links"
	expect "interfaces in status: attached, none failing" \
		"$(st | jq -r '[.interfaces[] | "\(.name):\(.attached)"] | sort | join(" ")')" \
		"$(for l in $want_links; do echo "$l:true"; done | sort | tr '\n' ' ' | sed 's/ $//')"
	probe_matrix "the ghost's last veth enforced (app=db), the other pods still" <<EOF
app/web app/ghost tcp 80 ok
app/web app/ghost tcp 81 timeout
app/other app/ghost tcp 80 timeout
app/ghost app/web tcp 80 ok
EOF
	base_enforced "the other pods still enforced"
	ghost_down
	man_rm pod-app_ghost.json
	sync_or_die
	want_links=$(pod_links app/web app/db app/other)
	for i in $(seq 50); do [ "$(links_pinned)" = "$want_links" ] && break; sleep 0.1; done
	expect "the ghost gone: its links unpinned" "$(links_pinned)" "$want_links"
fi

# ---- bpffs missing, pin directory removed ------------------------------------------
if want bpffs; then
	section "bpffs: a --pin-dir that is not on bpffs; bpffs not mounted at /sys/fs/bpf"
	XNS=$LAB-x
	ip netns add "$XNS"
	at_exit "ip netns del $XNS"
	mkdir -p "$E2E_TMP/xman"
	rc=0
	nsenter --net="/run/netns/$XNS" timeout 20 "$MOATD" --node "$LAB-x" --manifests "$E2E_TMP/xman" \
		--pin-dir "$E2E_TMP/notbpf/pins" --socket "$E2E_TMP/x.sock" >"$E2E_TMP/x.log" 2>&1 || rc=$?
	expect "pin directory on tmpfs: moatd exits 1" "$rc" 1
	grep -q "pin directory $E2E_TMP/notbpf/pins is not on a bpf filesystem" "$E2E_TMP/x.log" &&
		pass "the error names the directory and says it is not on bpffs" || fail "unclear error: $(cat "$E2E_TMP/x.log")"
	[ ! -e "$E2E_TMP/notbpf" ] && pass "nothing created" || fail "$E2E_TMP/notbpf created"
	# a private mount namespace without bpffs at /sys/fs/bpf: moatd mounts it
	rc=0
	unshare -m --propagation private sh -c '
		umount -l /sys/fs/bpf 2>/dev/null; mountpoint -q /sys/fs/bpf && exit 3
		nsenter --net="/run/netns/$1" "$2" --node "$1" --manifests "$3" --socket "$4" >"$5" 2>&1 &
		p=$!
		for i in $(seq 100); do
			curl -sf --max-time 2 --unix-socket "$4" http://moatd/v1/status >/dev/null 2>&1 && break
			sleep 0.1
		done
		mountpoint -q /sys/fs/bpf && [ -e "/sys/fs/bpf/moat/$1/moat_meta" ] && ok=0 || ok=4
		curl -sf --max-time 2 --unix-socket "$4" http://moatd/v1/status >/dev/null || ok=5
		kill $p; wait $p || ok=6
		exit $ok' sh "$XNS" "$MOATD" "$E2E_TMP/xman" "$E2E_TMP/x.sock" "$E2E_TMP/x.log" || rc=$?
	expect "bpffs not mounted: moatd mounted it, pinned there, answered, stopped cleanly" "$rc" 0
	grep -q "no bpf filesystem at /sys/fs/bpf: mounting one" "$E2E_TMP/x.log" &&
		pass "logged: mounting bpffs" || fail "not logged: mounting bpffs: $(head -3 "$E2E_TMP/x.log")"
	[ ! -e "/sys/fs/bpf/moat/$LAB-x" ] && pass "its pins were in its own bpffs, not the host's" ||
		{ fail "pins leaked into the host's bpffs"; "$MOATCTL" uninstall "/sys/fs/bpf/moat/$LAB-x"; }
fi

if want pindir; then
	section "pin directory removed under a running moatd"
	p0=$(metric 1 moat_pins_restored_total)
	logmark
	rm -rf "$PIN"
	base_enforced "enforcement right after rm -rf (moatd holds its links)"
	for i in $(seq 30); do [ -e "$PIN/moat_meta" ] && break; sleep 0.1; done
	want_links=$(pod_links app/web app/db app/other)
	for i in $(seq 20); do [ "$(links_pinned)" = "$want_links" ] && break; sleep 0.1; done
	expect "links pinned again" "$(links_pinned)" "$want_links"
	[ -e "$PIN/moat_meta" ] && pass "maps pinned again (meta last)" || fail "no $PIN/moat_meta"
	p1=$(metric 1 moat_pins_restored_total)
	[ "$p1" -gt "$p0" ] && pass "moat_pins_restored_total counts them ($p0 -> $p1)" || fail "pins restored $p0 -> $p1"
	logged "the pins removed and restored" "error +pin directory $PIN: [0-9]+ pins were removed from outside; pinned again"
	np_db db-ingress 81 | man_put base.yaml
	sync_or_die
	probe_matrix "a change after the restore applies (db admits web on 81 now)" <<EOF
app/web app/db tcp 81 ok
app/web app/db tcp 80 timeout
EOF
	np_db db-ingress 80 | man_put base.yaml
	sync_or_die
	pid0=${DPID[1]}
	kill -9 "$pid0"
	wait "$pid0" 2>/dev/null || true
	unset "DPID[1]"
	base_enforced "after kill -9: the restored pins keep enforcing"
	nsenter --net="/run/netns/$LAB-n1" "$MOATD" --node "$LAB-n1" --manifests "$MAN/n1" --pin-dir "$PIN" \
		--socket "$SOCK" --log-level info --max-policy 16 --veth-prefix m >>"$LOG" 2>&1 &
	DPID[1]=$!
	for i in $(seq 100); do ctl 1 status >/dev/null 2>&1 && break; sleep 0.1; done
	sync_or_die
	logged "the restarted moatd adopted the restored pins" "info +datapath adopted under $PIN"
	base_enforced "restarted on the restored pins"
fi

# ---- netlink buffer overrun ------------------------------------------------------
if want netlink; then
	section "netlink overrun: moatd stopped during 1000 link changes; a pod leaves, one arrives"
	r0=$(metric 1 moat_netlink_resyncs_total)
	logmark
	kill -STOP "${DPID[1]}"
	{ # about 1000 link notifications (deleting bridges is slow: few of them)
		for i in $(seq 50); do echo "link add fltd$i type bridge"; done
		for r in $(seq 10); do
			for i in $(seq 50); do echo "link set fltd$i mtu $((1400 + r))"; done
		done
	} | ip -n "$LAB-n1" -batch -
	lab rmpod "$LAB" app/other >/dev/null
	man_rm pod-app_other.json
	lab pod "$LAB" n1 app/late --label app=db >/dev/null
	lab_load
	man_cluster
	serve app/late --tcp 80,81
	wait_served 81 app/late
	for i in $(seq 50); do echo "link del fltd$i"; done | ip -n "$LAB-n1" -batch -
	kill -CONT "${DPID[1]}"
	sync_or_die
	sleep 1
	r1=$(metric 1 moat_netlink_resyncs_total)
	[ "$r1" -gt "$r0" ] && pass "moat_netlink_resyncs_total counts the overrun ($r0 -> $r1)" ||
		fail "no resync counted ($r0 -> $r1)"
	logged "the lost notifications and the resync" "warn +netlink: link and route notifications were lost .*re-read from the kernel"
	kill -0 "${DPID[1]}" && pass "moatd alive" || fail "moatd died"
	want_links=$(pod_links app/web app/db app/late)
	for i in $(seq 30); do [ "$(links_pinned)" = "$want_links" ] && break; sleep 0.1; done
	expect "pinned links: the pods there are (app/other's gone, app/late's there)" "$(links_pinned)" "$want_links"
	expect "interfaces in status: the pods there are" \
		"$(st | jq -r '[.interfaces[] | select(.attached) | .pod] | unique | join(" ")')" "app/db app/late app/web"
	probe_matrix "the new pod enforced (app/late is app=db), the others still" <<EOF
app/web app/late tcp 80 ok
app/web app/late tcp 81 timeout
app/db app/late tcp 80 timeout
app/web app/db tcp 80 ok
app/web app/db tcp 81 timeout
app/late app/web tcp 80 ok
EOF
	lab rmpod "$LAB" app/late >/dev/null
	man_rm pod-app_late.json
	lab pod "$LAB" n1 app/other --label app=other >/dev/null
	lab_load
	man_cluster
	serve app/other --tcp 80,81
	wait_served 81 app/other
	sync_or_die
	base_enforced "back to web, db, other"
fi

# ---- many descriptors ---------------------------------------------------------------
# moatd holds a descriptor per attached link (two per pod): with ~500 pods
# its descriptors pass FD_SETSIZE, where select() cannot go.  Started with
# 1100 descriptors already taken, its API must still answer.
if want fds; then
	section "descriptors above FD_SETSIZE (1100 taken before moatd starts)"
	moat_stop 1
	"$MOATCTL" uninstall "$PIN" >/dev/null 2>&1 || true
	(
		for i in $(seq 1100); do exec {x}</dev/null; done
		exec nsenter --net="/run/netns/$LAB-n1" "$MOATD" --node "$LAB-n1" --manifests "$MAN/n1" \
			--pin-dir "$PIN" --socket "$SOCK" --log-level info --max-policy 16 --veth-prefix m
	) >>"$LOG" 2>&1 &
	DPID[1]=$!
	for i in $(seq 150); do ctl 1 status >/dev/null 2>&1 && break; sleep 0.1; done
	kill -0 "${DPID[1]}" 2>/dev/null && pass "moatd runs" || fail "moatd exited: $(tail -2 "$LOG")"
	nfd=$(ls "/proc/${DPID[1]}/fd" | wc -l)
	[ "$nfd" -gt 1100 ] && pass "it has $nfd descriptors" || fail "only $nfd descriptors"
	sync_or_die
	for i in $(seq 20); do ctl 1 status >/dev/null || break; done
	expect "20 API calls in a row answered (connections above FD_SETSIZE)" "$i" 20
	base_enforced "pods attached and enforced"
	moat_stop 1
	moat_start 1 --max-policy 16 --veth-prefix m
	sync_or_die
fi

# ---- kill -9 at random points of an update -------------------------------------------
# restart.sh kills moatd once, 20 ms into one update, under traffic; here the
# moment is random, repeated, and the frozen datapath is checked to be exactly
# the old or the new policy.
if want kill; then
	section "kill -9 at a random moment of an update, 10 times"
	# A: db admits web on 80, web admits db on 80; B: both on 81, and 800 more
	# policies (db admits web on 2001..2800: an update takes 100-200 ms, parse,
	# compile and commit).  A mix is any other outcome.
	state_a() { np_db db-ingress 80; echo "---"; np_web web-ingress 80; }
	state_b() {
		np_db db-ingress 81
		echo "---"
		np_web web-ingress 81
		local i
		for ((i = 1; i <= 800; i++)); do
			printf -- '---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n'
			printf 'metadata: {name: filler-%d, namespace: app}\n' "$i"
			printf 'spec:\n  podSelector: {matchLabels: {app: db}}\n'
			printf '  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: %d}]}]\n' $((2000 + i))
		done
	}
	np_web() { # name port
		cat <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: $1, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{protocol: TCP, port: $2}]
EOF
	}
	observed() { # the frozen datapath: "A", "B" or "mix: ..."
		local in=$E2E_TMP/kill.in out
		printf '1 %s tcp %s 80\n2 %s tcp %s 81\n3 %s tcp %s 80\n4 %s tcp %s 81\n' \
			"${NETNS[app/web]}" "${IP4[app/db]}" "${NETNS[app/web]}" "${IP4[app/db]}" \
			"${NETNS[app/db]}" "${IP4[app/web]}" "${NETNS[app/db]}" "${IP4[app/web]}" >"$in"
		out=$("$PROBE" batch --timeout 1 <"$in" | sort -n | awk '{ printf "%s ", $2 }')
		case $out in
		"ok timeout ok timeout ") echo A ;;
		"timeout ok timeout ok ") echo B ;;
		*) echo "mix: $out" ;;
		esac
	}
	spawn() { # moatd adopting what is pinned (no uninstall before it)
		nsenter --net="/run/netns/$LAB-n1" "$MOATD" --node "$LAB-n1" --manifests "$MAN/n1" \
			--pin-dir "$PIN" --socket "$SOCK" --log-level info --veth-prefix m >>"$LOG" 2>&1 &
		DPID[1]=$!
		local i
		for i in $(seq 150); do
			curl -sf --max-time 2 --unix-socket "$SOCK" http://moatd/v1/status >/dev/null 2>&1 && return 0
			kill -0 "${DPID[1]}" 2>/dev/null || break
			sleep 0.1
		done
		fail "moatd did not come back"
		return 1
	}
	moat_stop 1
	man_rm base.yaml
	state_a | man_put policy.yaml
	moat_start 1 --veth-prefix m
	sync_or_die
	expect "state A enforced" "$(observed)" A
	logmark
	cur=A nold=0 nnew=0 nmix=0 nbad=0
	for i in $(seq 10); do
		if [ $cur = A ]; then next=B; state_b | man_put policy.yaml; else next=A; state_a | man_put policy.yaml; fi
		sleep "$(printf '0.%03d' $((RANDOM % 200)))"
		kill -9 "${DPID[1]}"
		wait "${DPID[1]}" 2>/dev/null || true
		unset "DPID[1]"
		got=$(observed)
		case $got in
		"$cur") nold=$((nold + 1)) ;;
		"$next") nnew=$((nnew + 1)) ;;
		*) nmix=$((nmix + 1)); fail "kill $i ($cur -> $next): the frozen datapath is a $got" ;;
		esac
		spawn || break
		sync_or_die
		got2=$(observed)
		[ "$got2" = "$next" ] || { nbad=$((nbad + 1)); fail "kill $i: after the restart $got2, want $next"; }
		cur=$next
	done
	echo "        after the kill: $nold times the old policy, $nnew times the new one"
	expect "frozen datapath a mix of old and new" "$nmix" 0
	expect "restarts that did not converge to the new policy" "$nbad" 0
	expect "restarts adopted the pinned datapath" "$(tail -c +"$((LOGMARK + 1))" "$LOG" | grep -c "datapath adopted under $PIN")" 10
	moat_stop 1
	man_rm policy.yaml
	np_db db-ingress 80 | man_put base.yaml
	moat_start 1 --max-policy 16 --veth-prefix m
	sync_or_die
	base_enforced "base policy again"
fi

e2e_end
