# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Shared helpers for tests/e2e/*.sh (and tests/lab/demo): a lab with one moatd
# per node, manifests written into every node's directory, waiting until a
# change is live, probe matrices with exact expectations, and cleanup on
# every exit path.  Source it, then call e2e_begin NAME.  (Named .bash, not
# .sh, so that tests/run-all does not take it for a test.)
#
#   e2e_begin NAME            lab "NAME<pid>" (or $E2E_LAB), temp dir, traps;
#                             exits 77 if not root
#   lab ARGS...               tests/lab/lab
#   lab_load                  reads pod addresses and netns paths (after pods exist)
#   ext_up                    an "external" host $LAB-ext on the wire bridge,
#                             10.99.0.200 / fd00:99::200, routes to pod CIDRs via nodes
#   serve WHO ARGS...         probe serve in WHO's netns (background, stopped at exit)
#   man_cluster               writes Nodes, Namespaces, Pods into every node's dir
#   man_put FILE <<EOF        writes a manifest into every node's dir (atomic rename)
#   man_rm FILE
#   moat_start N [ARGS...]    moatd for node N (1, 2..), waits until it answers;
#                             MOAT_ADOPT=1 keeps what is pinned (a restart);
#                             MOATD=BINARY runs another build
#   moat_halt N               stops it (SIGTERM) and leaves its pins: the
#                             programs go on enforcing
#   moat_stop N               stops it and uninstalls its pins
#   moat_sync [--timeout S]   waits until every running moatd applied the dirs
#                             (exit 0; 2 = processed with errors; 1 = timeout)
#   sync_or_die               moat_sync, failing the test on errors or timeout
#   ctl N ARGS...             moatctl against node N's daemon
#   metric N PREFIX           sum of the metric lines starting with PREFIX
#   probe_matrix TITLE <<EOF  lines "SRC DST PROTO PORT WANT" (FAM 4|6 global):
#                             probes them in one batch, checks every outcome
#   pass/fail/expect/section, e2e_end
# WHO (sources and destinations): ns/pod, @n1 @n2 (node netns), @ext.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "lib.bash: helpers for the e2e tests; source it" >&2
	exit 64
fi
set -Eeuo pipefail

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
O=${O:-build}
case $O in /*) E2E_BIN=$O ;; *) E2E_BIN=$E2E_ROOT/$O ;; esac
PROBE=$E2E_BIN/tests/tools/probe
MOATD=$E2E_BIN/moatd
MOATCTL=$E2E_BIN/moatctl
ATTACHCHECK=$E2E_BIN/tests/tools/attachcheck
LABCMD=$E2E_ROOT/tests/lab/lab
LIBPY=$E2E_ROOT/tests/e2e/lib.py
PY=${PYTHON:-python3}

checks=0 fails=0
E2E_BG=()          # background pids to stop at exit
E2E_AT_EXIT=()     # commands (strings) run at exit, last first
declare -A DPID=() # node number -> moatd pid
declare -A IP4=() IP6=() NETNS=()
FAM=4
NODES=2

ms() { date +%s%3N; }
pass() { checks=$((checks + 1)); printf '  ok    %s\n' "$*"; }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); printf '  FAIL  %s\n' "$*"; }
expect() { # what got want
	if [ "$2" = "$3" ]; then pass "$1: $2"; else fail "$1: got '$2', want '$3'"; fi
}
section() { printf '== %s\n' "$*"; }
die() { echo "ERROR: $*" >&2; exit 1; }
lab() { "$LABCMD" "$@"; }
at_exit() { E2E_AT_EXIT+=("$*"); }

e2e_need_root() {
	[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
}

e2e_begin() { # name (letters/digits, short)
	e2e_need_root
	local name=$1
	LAB=${E2E_LAB:-$name$$} # E2E_LAB: an exact lab name (the demo's "demo")
	LAB=${LAB:0:20}
	E2E_TMP=$(mktemp -d "/tmp/moat-e2e-$name.XXXXXX")
	MAN=$E2E_TMP/man
	E2E_T0=$(ms)
	trap e2e_cleanup EXIT
	trap 'exit 130' INT TERM HUP
	trap 'echo "ERROR: ${BASH_SOURCE[0]##*/}:$LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
	local b
	for b in "$PROBE" "$MOATD" "$MOATCTL"; do
		[ -x "$b" ] || make -s -C "$E2E_ROOT" O="$O" all >/dev/null || die "cannot build $b"
	done
	for b in jq curl nsenter "$PY"; do
		command -v "$b" >/dev/null || die "$b not installed"
	done
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	mkdir -p /run/moat
}

e2e_cleanup() {
	local rc=$? i n
	trap - ERR
	set +e
	for ((i = ${#E2E_AT_EXIT[@]} - 1; i >= 0; i--)); do eval "${E2E_AT_EXIT[i]}" >/dev/null 2>&1; done
	for n in "${!DPID[@]}"; do moat_stop "$n" >/dev/null 2>&1; done
	for i in "${E2E_BG[@]}"; do kill "$i" 2>/dev/null; done
	for i in "${E2E_BG[@]}"; do wait "$i" 2>/dev/null; done
	if [ -n "${LAB:-}" ]; then
		ip netns del "$LAB-ext" 2>/dev/null
		"$LABCMD" down "$LAB" >/dev/null 2>&1
	fi
	if [ -n "${E2E_TMP:-}" ]; then
		if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ "${KEEP_LOGS:-1}" = 1 ]; then
			local f
			for f in "$E2E_TMP"/moatd-n*.log; do
				[ -f "$f" ] || continue
				echo "--- last lines of $(basename "$f")"
				tail -n 15 "$f"
			done
		fi
		rm -rf "$E2E_TMP"
	fi
	exit $rc
}

e2e_end() {
	echo
	echo "$checks checks, $fails failed, $(( ($(ms) - E2E_T0) / 1000 )) s"
	[ $fails -eq 0 ] && exit 0
	exit 1
}

# ---- the lab ------------------------------------------------------------------
lab_load() {
	local st line ns name ip4 ip6 path
	st=$(lab state "$LAB")
	while read -r ns name ip4 ip6 path; do
		IP4[$ns/$name]=$ip4 IP6[$ns/$name]=$ip6 NETNS[$ns/$name]=$path
	done < <(jq -r '.pods[] | "\(.ns) \(.name) \(.ip4) \(.ip6) \(.netnsPath)"' <<<"$st")
	for ((n = 1; n <= NODES; n++)); do
		IP4[@n$n]=10.99.0.$n IP6[@n$n]=fd00:99::$n NETNS[@n$n]=/run/netns/$LAB-n$n
	done
	if [ -e "/run/netns/$LAB-ext" ]; then
		IP4[@ext]=10.99.0.200 IP6[@ext]=fd00:99::200 NETNS[@ext]=/run/netns/$LAB-ext
	fi
}

addr_of() { # who [fam]
	local f=${2:-$FAM}
	if [ "$f" = 6 ]; then echo "${IP6[$1]:?unknown $1}"; else echo "${IP4[$1]:?unknown $1}"; fi
}

# An "external" host on the wire: a netns with a veth into the wire bridge,
# marked like the lab's own netns so that `lab down` removes it too.
ext_up() {
	local e=$LAB-ext n
	ip netns add "$e"
	ip -n "$e" link set dev lo alias "moat-lab:$LAB" up
	nsenter --net="/run/netns/$e" sh -c 'echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad;
		echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad;
		echo 0 > /proc/sys/net/ipv4/icmp_ratelimit; echo 0 > /proc/sys/net/ipv6/icmp/ratelimit'
	ip -n "$LAB-wire" link add x200 type veth peer name eth0 netns "$e"
	ip -n "$LAB-wire" link set x200 master br0 up
	ip -n "$e" link set eth0 up
	ip -n "$e" addr add 10.99.0.200/24 dev eth0
	ip -n "$e" addr add fd00:99::200/64 dev eth0 nodad
	for ((n = 1; n <= NODES; n++)); do
		ip -n "$e" route add "10.$((100 + n)).0.0/16" via "10.99.0.$n"
		ip -n "$e" route add "fd00:1:$n::/64" via "fd00:99::$n"
	done
	nsenter --net="/run/netns/$e" ethtool -K eth0 gro on >/dev/null 2>&1 || true
	IP4[@ext]=10.99.0.200 IP6[@ext]=fd00:99::200 NETNS[@ext]=/run/netns/$e
}

serve() { # who probe-serve-args...
	local who=$1
	shift
	"$PROBE" serve --netns "${NETNS[$who]}" --name "$who" "$@" >/dev/null 2>&1 &
	E2E_BG+=($!)
}

# Waits until every served port answers TCP on localhost in each netns given.
wait_served() { # port who...
	local port=$1 who i
	shift
	for who in "$@"; do
		for i in $(seq 100); do
			"$PROBE" connect -q --netns "${NETNS[$who]}" --proto tcp 127.0.0.1 "$port" --timeout 0.2 \
				>/dev/null 2>&1 && break
			[ "$i" -lt 100 ] || die "no server on $who port $port"
			sleep 0.05
		done
	done
}

# ---- manifests and daemons -----------------------------------------------------
man_dirs() { local n; for ((n = 1; n <= NODES; n++)); do echo "$MAN/n$n"; done; }

man_put() { # file (content on stdin)
	local f=$1 d data
	data=$(cat)
	while read -r d; do
		mkdir -p "$d"
		printf '%s\n' "$data" >"$d/.$f.tmp"
		mv -f "$d/.$f.tmp" "$d/$f"
	done < <(man_dirs)
}

man_rm() { local d; while read -r d; do rm -f "$d/$1"; done < <(man_dirs); }

man_cluster() {
	local tmp=$E2E_TMP/cluster f
	rm -rf "$tmp"
	mkdir -p "$tmp"
	lab manifests "$LAB" "$tmp" >/dev/null
	for f in "$tmp"/*.json; do man_put "$(basename "$f")" <"$f"; done
}

sock_of() { echo "/run/moat/$LAB-n$1.sock"; }
pin_of() { echo "/sys/fs/bpf/moat/$LAB-n$1"; }

moat_start() { # n [moatd args...]
	local n=$1 node=$LAB-n$1 sock pin i
	shift
	sock=$(sock_of "$n") pin=$(pin_of "$n")
	mkdir -p "$MAN/n$n"
	[ "${MOAT_ADOPT:-0}" = 1 ] || "$MOATCTL" uninstall "$pin" >/dev/null 2>&1 || true
	rm -f "$sock"
	nsenter --net="/run/netns/$node" "$MOATD" --node "$node" --manifests "$MAN/n$n" \
		--pin-dir "$pin" --socket "$sock" --log-level info "$@" >>"$E2E_TMP/moatd-n$n.log" 2>&1 &
	DPID[$n]=$!
	for i in $(seq 600); do
		kill -0 "${DPID[$n]}" 2>/dev/null || { tail -5 "$E2E_TMP/moatd-n$n.log" >&2; die "moatd on $node exited"; }
		[ -S "$sock" ] && curl -sf --max-time 2 --unix-socket "$sock" http://moatd/v1/status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "moatd on $node did not answer within 60 s"
}

moat_halt() { # n
	local n=$1 pid=${DPID[$1]:-} i
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	unset "DPID[$n]"
}

moat_stop() { # n
	moat_halt "$1"
	"$MOATCTL" uninstall "$(pin_of "$1")" >/dev/null 2>&1 || true
	rm -f "$(sock_of "$1")"
}

moat_sync() { # [--timeout S]
	local args=() n
	for n in "${!DPID[@]}"; do args+=("$MAN/n$n=$(sock_of "$n")"); done
	"$PY" "$LIBPY" sync "$@" "${args[@]}"
}

sync_or_die() {
	local rc=0
	moat_sync "$@" || rc=$?
	[ $rc -eq 0 ] || die "manifests not applied cleanly (sync exit $rc)"
}

ctl() { local n=$1; shift; "$MOATCTL" --socket "$(sock_of "$n")" "$@"; }

metric() { # n prefix: sum of matching lines' values
	ctl "$1" metrics | awk -v p="$2" 'index($0, p) == 1 { s += $NF } END { printf "%d\n", s }'
}

# ---- probes ---------------------------------------------------------------------
# stdin: "SRC DST PROTO PORT WANT" per line, FAM = 4 or 6.  All probes run in
# one batch; a probe that wanted ok but timed out is tried once more with a
# longer timeout (a loaded machine); any other mismatch is a failure at once.
probe_matrix() { # title
	local title=$1 in=$E2E_TMP/batch.in id=0 src dst proto port want line
	local -A WANT=() DESC=() LINE=()
	: >"$in"
	while read -r src dst proto port want; do
		[ -n "$src" ] && [ "${src:0:1}" != "#" ] || continue
		id=$((id + 1))
		LINE[$id]="$id ${NETNS[$src]:?unknown $src} $proto $(addr_of "$dst") $port"
		echo "${LINE[$id]}" >>"$in"
		WANT[$id]=$want
		DESC[$id]="$src -> $dst $proto/$port (IPv$FAM)"
	done
	local out retry=$E2E_TMP/batch.retry bad=0 nok=0 nto=0 v
	out=$("$PROBE" batch --timeout 1.5 <"$in")
	: >"$retry"
	local -A GOT=()
	while read -r line v; do GOT[$line]=$v; done <<<"$out"
	for ((line = 1; line <= id; line++)); do
		v=${GOT[$line]:-missing}
		if [ "$v" != "${WANT[$line]}" ] && [ "$v" = timeout ] && [ "${WANT[$line]}" = ok ]; then
			echo "${LINE[$line]}" >>"$retry"
		fi
	done
	if [ -s "$retry" ]; then
		while read -r line v; do GOT[$line]=$v; done < <("$PROBE" batch --timeout 3 <"$retry")
	fi
	for ((line = 1; line <= id; line++)); do
		v=${GOT[$line]:-missing}
		if [ "$v" != "${WANT[$line]}" ]; then
			bad=$((bad + 1))
			fail "$title: ${DESC[$line]}: got $v, want ${WANT[$line]}"
		else
			[ "${VERBOSE:-0}" = 1 ] && printf '        %-50s %s\n' "${DESC[$line]}" "$v"
			[ "$v" = ok ] && nok=$((nok + 1)) || nto=$((nto + 1))
		fi
	done
	[ $bad -eq 0 ] && pass "$title: $id probes as expected ($nok ok, $nto denied)"
	return 0
}

# "SRC DST" pairs x protocols x ports with one expectation per port:
#   flows SRC DST WANT80 WANT81 [protos]  -> lines for probe_matrix
flows() {
	local src=$1 dst=$2 w80=$3 w81=$4 protos=${5:-tcp udp sctp} p
	for p in $protos; do
		echo "$src $dst $p 80 $w80"
		echo "$src $dst $p 81 $w81"
	done
}
