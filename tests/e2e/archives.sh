#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: the flight recorder (hostd/archive.c) on real traffic.
#   - allowed, denied and audited flows are archived; `moatctl archive query`
#     output opens in tshark and shows the XDP verdict and the deciding rule
#     (pcapng and pcap); queries return exactly the matching packets
#     (compared with tshark's own filter over the raw segments)
#   - tenancy: a namespace-admin token never receives another namespace's
#     packets, flows or policy names through any filter combination; list
#     shows only its namespaces; a bad token is refused
#   - replay: a candidate policy change lists the newly denied flow and
#     exits 1; switching an audit policy to enforce shows what it would
#     break; an unchanged candidate exits 0; a query result replays too
#   - rotation by size and age, expiry by age for one namespace
#   - a full disk (tmpfs): enforcement and the live stream go on, losses are
#     counted and logged once, writing resumes when space returns
#   - kill -9 of moatd mid-write, a torn last block: recovered on restart,
#     nothing else lost
# Exit 0 pass, 77 skip (not root, no tshark), anything else fail.
. "$(dirname "$0")/lib.bash"
NODES=1
e2e_begin arch
command -v tshark >/dev/null || { echo "SKIP: tshark not installed (make setup)"; exit 77; }

section "lab: shop/web, shop/db, other/app on n1; the archive on a 6 MiB tmpfs"
lab up "$LAB" --nodes 1 >/dev/null
lab pod "$LAB" n1 shop/web --label app=web >/dev/null
lab pod "$LAB" n1 shop/db --label app=db >/dev/null
lab pod "$LAB" n1 other/app --label app=app >/dev/null
lab_load
serve shop/db --tcp 80,5432 --udp 81
serve other/app --tcp 80
serve shop/web --tcp 80 --udp 53
wait_served 80 shop/db other/app shop/web
ARCH=$E2E_TMP/arch
mkdir -p "$ARCH"
mount -t tmpfs -o size=6m moat-e2e-arch "$ARCH"
at_exit "umount -l $ARCH"
man_cluster
man_put policies.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: app-locked, namespace: other, annotations: {moat.io/audit: "true"}}
spec:
  podSelector: {matchLabels: {app: app}}
  ingress: [{from: [{podSelector: {}}]}]
EOF
tok() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
T_ALICE=$(tok) T_BOB=$(tok)
cat >"$E2E_TMP/tokens.yaml" <<EOF
tokens:
- {user: alice, role: namespace-admin, namespaces: [shop], token: $T_ALICE}
- {user: bob, role: viewer, namespaces: [other], token: $T_BOB}
EOF
# retention of other from the settings file: shortened later with SIGHUP
printf 'archive:\n  namespaces: {other: {maxAge: 1h}}\n' >"$E2E_TMP/moatd.yaml"
DARGS=(--tokens "$E2E_TMP/tokens.yaml" --config "$E2E_TMP/moatd.yaml" --archive-dir "$ARCH"
	--archive-segment-size 32Ki --archive-segment-age 3s)
moat_start 1 "${DARGS[@]}"
at_exit "moat_stop 1" # before the tmpfs goes
sync_or_die
pass "lab, policies and moatd --archive-dir ready"

# pcapng summary (python, no tshark): packets with comments, flow records
summary() { # file
	"$PY" - "$1" <<'PYEOF'
import json, struct, sys
d = open(sys.argv[1], "rb").read()
out = {"packets": [], "flows": [], "loss": 0, "error": None, "valid": 0}
i = 0
while i < len(d):
    if len(d) - i < 12:
        out["error"] = "torn"; break
    t, l = struct.unpack_from("<II", d, i)
    if l < 12 or l % 4 or i + l > len(d) or struct.unpack_from("<I", d, i + l - 4)[0] != l:
        out["error"] = "bad block at %d" % i; break
    body = d[i + 8:i + l - 4]
    if t == 6:
        cap = struct.unpack_from("<I", body, 12)[0]
        o = 20 + (cap + 3) // 4 * 4
        c = ""
        while o + 4 <= len(body):
            code, ol = struct.unpack_from("<HH", body, o)
            if code == 0: break
            if code == 1: c = body[o + 4:o + 4 + ol].decode()
            o += 4 + (ol + 3) // 4 * 4
        out["packets"].append(c)
    elif t == 0xBAD:
        j = json.loads(body[4:].rstrip(b"\0"))
        if j.get("moat") == "flow": out["flows"].append(j)
        else: out["loss"] += 1
    i += l
    out["valid"] = i
print(json.dumps(out))
PYEOF
}

section "traffic: allowed, denied, audited"
probe_matrix "first traffic" <<'EOF'
shop/web shop/db tcp 5432 ok
shop/web shop/db tcp 80 timeout
other/app shop/db tcp 5432 timeout
shop/web other/app tcp 80 ok
other/app shop/web udp 53 ok
EOF
T_FIRST=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
list=$(ctl 1 archive list)
grep -q "^shop " <<<"$list" && grep -q "^other " <<<"$list" && pass "archive list: shop and other" ||
	fail "archive list: $list"

section "queries parsed by tshark: verdict and rule"
Q=$E2E_TMP/q
ctl 1 archive query --namespace shop --verdict deny -w "$Q-deny.pcapng" 2>/dev/null
tshark -r "$Q-deny.pcapng" -Y eth -T fields -E separator='|' -e ip.src -e ip.dst -e tcp.dstport \
	-e frame.verdict.ebpf_xdp -e frame.interface_name -e frame.interface_description -e frame.comment \
	>"$Q-deny.txt" 2>"$Q-deny.err"
if grep -v 'Running as user' "$Q-deny.err" | grep -q .; then fail "tshark complained: $(cat "$Q-deny.err")"; else
	pass "tshark reads the query result without complaint"; fi
n=$(grep -c . "$Q-deny.txt" || true)
bad=$(awk -F'|' '$4 != 1 || $7 !~ /verdict=deny/ || $7 !~ /rule="NetworkPolicy shop\/db-from-web isolates ingress \(no rule allows\)"/' "$Q-deny.txt" | wc -l)
[ "$n" -ge 2 ] && [ "$bad" -eq 0 ] && pass "deny query: $n packets, each XDP_DROP (1) with the isolating rule" ||
	fail "deny query: $n packets, $bad without verdict/rule: $(head -3 "$Q-deny.txt")"
grep -q "^$(addr_of shop/web)|$(addr_of shop/db)|80|" "$Q-deny.txt" &&
	grep -q "^$(addr_of other/app)|$(addr_of shop/db)|5432|" "$Q-deny.txt" &&
	pass "both denied flows are there (web->db:80, other/app->db:5432)" || fail "denied flows missing: $(cat "$Q-deny.txt")"
grep -q '|pod shop/web on node ' "$Q-deny.txt" && pass "interfaces named after the pod (if_description)" ||
	fail "interface names: $(cut -d'|' -f5,6 "$Q-deny.txt" | sort -u)"

ctl 1 archive query --verdict allow --filter "tcp dst port 5432" -w "$Q-allow.pcapng" 2>/dev/null
tshark -r "$Q-allow.pcapng" -Y eth -T fields -E separator='|' -e frame.verdict.ebpf_xdp -e frame.packet_flags_direction \
	-e frame.comment >"$Q-allow.txt" 2>/dev/null
grep -q '^2|0x00000002|moat: verdict=allow type=new-flow .*rule="NetworkPolicy shop/db-from-web ingress\[0\]"' "$Q-allow.txt" &&
	pass "allowed: XDP_PASS (2), outbound from the pod, rule ingress[0]" || fail "allow query: $(cat "$Q-allow.txt")"

ctl 1 archive query --verdict audit -w "$Q-audit.pcapng" 2>/dev/null
tshark -r "$Q-audit.pcapng" -Y eth -T fields -E separator='|' -e ip.dst -e tcp.dstport -e frame.verdict.ebpf_xdp \
	-e frame.comment >"$Q-audit.txt" 2>/dev/null
grep -q "^$(addr_of other/app)|80|2|moat: verdict=audit .*rule=\"NetworkPolicy other/app-locked isolates ingress (no rule allows) \[audit\]\"" "$Q-audit.txt" &&
	pass "audited: passed (XDP_PASS), the audit rule named" || fail "audit query: $(cat "$Q-audit.txt")"

ctl 1 archive query --namespace shop --format pcap -w "$Q.pcap" 2>/dev/null
ctl 1 archive query --namespace shop -w "$Q-shop.pcapng" 2>/dev/null
np=$(tshark -r "$Q.pcap" 2>/dev/null | wc -l)
nn=$(tshark -r "$Q-shop.pcapng" -Y eth 2>/dev/null | wc -l)
[ "$np" -gt 0 ] && [ "$np" = "$nn" ] && pass "pcap output: tshark reads the same $np packets" || fail "pcap $np vs pcapng $nn"

# Packets matching a tshark filter over a namespace's raw segments. The open
# segment is renamed when it closes by age (3 s here), so a file the glob named
# can be gone when tshark opens it, or caught mid-write: count again.
count_in_segments() { # dir, tshark filter
	local try s n total
	for try in 1 2 3 4 5; do
		total=0
		for s in "$1"/*.pcapng; do
			if ! n=$(tshark -r "$s" -Y "eth && ($2)" 2>/dev/null | wc -l); then
				sleep 0.2
				continue 2
			fi
			total=$((total + n))
		done
		echo "$total"
		return 0
	done
	echo "tshark could not read $1 in 5 tries" >&2
	return 1
}

# exactly the matching packets: the query's filter (libpcap) against
# tshark's own filter engine over the raw segments of the namespace
for f in "tcp port 80" "udp" "host $(addr_of other/app)" "tcp[tcpflags] & tcp-syn != 0"; do
	case $f in
	"tcp port 80") y="tcp.port == 80" ;;
	udp) y="udp" ;;
	host*) y="ip.addr == $(addr_of other/app)" ;;
	*) y="tcp.flags.syn == 1" ;;
	esac
	got=$(ctl 1 archive query --namespace shop --filter "$f" -w - 2>/dev/null | tshark -r - -Y eth 2>/dev/null | wc -l)
	want=$(count_in_segments "$ARCH/shop" "$y")
	[ "$got" -gt 0 ] && [ "$got" = "$want" ] && pass "filter '$f': $got packets, as tshark counts them in the segments" ||
		fail "filter '$f': query $got, segments $want"
done

section "tenancy: alice (namespace-admin of shop) and bob (viewer of other)"
MOAT_TOKEN=$T_ALICE ctl 1 archive list >"$Q-alist" 2>&1
grep -q "^shop " "$Q-alist" && ! grep -q "^other \|(node)" "$Q-alist" && pass "alice lists shop only" ||
	fail "alice's list: $(cat "$Q-alist")"
MOAT_TOKEN=$T_BOB ctl 1 archive list >"$Q-blist" 2>&1
grep -q "^other " "$Q-blist" && ! grep -q "^shop " "$Q-blist" && pass "bob lists other only" ||
	fail "bob's list: $(cat "$Q-blist")"
if MOAT_TOKEN=bogus ctl 1 archive list >/dev/null 2>&1; then fail "a bad token was let in"; else pass "a bad token is refused"; fi
if MOAT_TOKEN=$T_ALICE ctl 1 archive query --namespace other -w "$Q-x" 2>"$Q-x.err"; then
	fail "alice got namespace other"
else
	grep -q "not yours" "$Q-x.err" && pass "alice asking for namespace other: refused" || fail "$(cat "$Q-x.err")"
fi
# every combination of filters, for both users, straight at the API; each
# answer parsed (packets' comments, flow records)
"$PY" - "$(sock_of 1)" "$T_ALICE" "$T_BOB" "$(addr_of other/app)" "$(addr_of shop/db)" >"$Q-tenancy" 2>&1 <<'PYEOF' &&
import itertools, json, struct, subprocess, sys, urllib.parse
sock, ta, tb, ip_app, ip_db = sys.argv[1:]
def parse(d):
    pk, fl, i = [], [], 0
    while i + 12 <= len(d):
        t, l = struct.unpack_from("<II", d, i)
        if l < 12 or i + l > len(d): raise ValueError("bad block")
        body = d[i + 8:i + l - 4]
        if t == 6:
            cap = struct.unpack_from("<I", body, 12)[0]
            o, c = 20 + (cap + 3) // 4 * 4, ""
            while o + 4 <= len(body):
                code, ol = struct.unpack_from("<HH", body, o)
                if code == 0: break
                if code == 1: c = body[o + 4:o + 4 + ol].decode()
                o += 4 + (ol + 3) // 4 * 4
            pk.append(c)
        elif t == 0xBAD:
            j = json.loads(body[4:].rstrip(b"\0"))
            if j.get("moat") == "flow": fl.append(j)
        i += l
    if i != len(d): raise ValueError("trailing bytes")
    return pk, fl
users = {"alice": (ta, "shop", "other", "app-locked"), "bob": (tb, "other", "shop", "db-from-web")}
combos = leaks = nonempty = refused = 0
for name, (tok, mine, theirs, foreign_pol) in users.items():
    for ns, pod, v, f, pol in itertools.product(["", mine, theirs], ["", "shop/db", "other/app", "web", "app"],
                                                 ["", "allow", "deny", "audit"],
                                                 ["", "host " + ip_app, "host " + ip_db, "tcp"],
                                                 ["", "app-locked", "db-from-web"]):
        q = {k: x for k, x in [("namespace", ns), ("pod", pod), ("verdict", v), ("filter", f), ("policy", pol)] if x}
        r = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "--unix-socket", sock, "-H",
                            "Authorization: Bearer " + tok,
                            "http://moatd/v1/archives/query?" + urllib.parse.urlencode(q)], capture_output=True)
        body, code = r.stdout.rsplit(b"\n", 1)
        combos += 1
        if ns == theirs:
            if code != b"403": leaks += 1; print("LEAK: %s got %s for %s" % (name, code, q))
            else: refused += 1
            continue
        if code != b"200": leaks += 1; print("FAIL: %s %s: %s" % (name, q, body[:200])); continue
        try:
            pk, fl = parse(body)
        except ValueError as e:
            leaks += 1; print("FAIL: %s %s: %s" % (name, q, e)); continue
        nonempty += bool(pk or fl)
        for c in pk:
            if "src=%s/" % mine not in c and "dst=%s/" % mine not in c: leaks += 1; print("LEAK", name, q, c)
            if foreign_pol in c or "rule_ns=" + theirs in c: leaks += 1; print("LEAK (policy)", name, q, c)
        for j in fl:
            if mine not in (j["src"].get("namespace"), j["dst"].get("namespace")): leaks += 1; print("LEAK", name, q, j)
            if foreign_pol in json.dumps(j): leaks += 1; print("LEAK (policy)", name, q, j)
print("%d %d %d %d" % (combos, leaks, nonempty, refused))
sys.exit(1 if leaks else 0)
PYEOF
	read -r combos leaks nonempty refused < <(tail -1 "$Q-tenancy") &&
	[ "$nonempty" -gt 100 ] && pass "$combos queries by alice and bob ($nonempty non-empty, $refused refused): nothing of another namespace, no foreign policy named" ||
	fail "tenancy: $(grep -v '^[0-9]' "$Q-tenancy" | head -5); $(tail -1 "$Q-tenancy")"

section "replay: archived flows through candidate policies"
CAND=$E2E_TMP/cand
cp -r "$MAN/n1" "$CAND"
out=$("$MOATCTL" policy replay --archive "$ARCH" --policies "$CAND" 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] && grep -q " 0 newly denied" <<<"$out" && pass "the running policies: nothing changes, exit 0" ||
	fail "unchanged candidate: exit $rc: $out"
sed -i 's/port: 5432/port: 5433/' "$CAND/policies.yaml"
out=$("$MOATCTL" policy replay --archive "$ARCH" --policies "$CAND" 2>&1) && rc=0 || rc=$?
echo "$out" | sed 's/^/        /'
[ $rc -eq 1 ] && grep -q "NEWLY DENIED" <<<"$out" && grep -q "namespace shop: .* denied by NetworkPolicy shop/db-from-web isolates ingress" <<<"$out" &&
	grep -q "shop/web -> shop/db TCP/5432" <<<"$out" && pass "db only on 5433: web->db:5432 newly denied (shop, the isolating rule), exit 1" ||
	fail "candidate 5433: exit $rc"
grep -q "NEWLY ALLOWED" <<<"$out" && fail "nothing should be newly allowed" || pass "nothing newly allowed"
cp "$MAN/n1/policies.yaml" "$CAND/policies.yaml"
sed -i 's/annotations: {moat.io\/audit: "true"}/annotations: {}/' "$CAND/policies.yaml"
out=$("$MOATCTL" policy replay --archive "$ARCH" --policies "$CAND" 2>&1) && rc=0 || rc=$?
[ $rc -eq 1 ] && grep -Eq "namespace other: [0-9]+ flow\(s\) denied by NetworkPolicy other/app-locked" <<<"$out" &&
	grep -q "shop/web -> other/app TCP/80" <<<"$out" && pass "audit switched to enforce: the audited flow would be denied" ||
	fail "audit -> enforce: exit $rc: $out"
ctl 1 archive query --namespace shop -w "$Q-replay.pcapng" 2>/dev/null
sed -i 's/port: 5432/port: 5433/' "$CAND/policies.yaml"
out=$("$MOATCTL" policy replay --archive "$Q-replay.pcapng" --policies "$CAND" 2>&1) && rc=0 || rc=$?
[ $rc -eq 1 ] && grep -q "shop/web -> shop/db TCP/5432" <<<"$out" && pass "a query result replays too" ||
	fail "replay of a query result: exit $rc: $out"

section "rotation (32 KiB, 3 s) and expiry (other: 1 h, then 5 s after SIGHUP)"
probe_matrix "traffic for other" <<'EOF2'
shop/web other/app tcp 80 ok
EOF2
: >"$E2E_TMP/udp.in"
for i in $(seq 300); do echo "$i ${NETNS[shop/web]} udp $(addr_of shop/db) 81" >>"$E2E_TMP/udp.in"; done
"$PROBE" batch --timeout 0.2 --parallel 50 <"$E2E_TMP/udp.in" >/dev/null
nseg=$(ctl 1 -o json archive list | jq '[.partitions[] | select(.namespace == "shop") | .segments[]] | length')
[ "$nseg" -ge 3 ] && pass "shop rotated by size: $nseg segments" || fail "shop: $nseg segments"
big=$(ctl 1 -o json archive list | jq '[.partitions[].segments[] | select(.open == false and .bytes > 34816)] | length')
[ "$big" -eq 0 ] && pass "closed segments within the size (32 KiB + one block)" || fail "$big segments too big"
sleep 4.5
open=$(ctl 1 -o json archive list | jq '[.partitions[] | select(.namespace == "other") | .segments[] | select(.open)] | length')
[ "$open" -eq 0 ] && pass "other's segment closed by age (3 s) while idle" || fail "other: $open still open"
n=$(ctl 1 -o json archive list | jq '[.partitions[] | select(.namespace == "other") | .segments[]] | length')
[ "$n" -ge 1 ] && pass "other kept while its retention is 1 h ($n segments)" || fail "other: $n segments"
printf 'archive:\n  namespaces: {other: {maxAge: 5s}}\n' >"$E2E_TMP/moatd.yaml"
kill -HUP "${DPID[1]}"
for _ in $(seq 40); do
	n=$(ctl 1 -o json archive list | jq '[.partitions[] | select(.namespace == "other") | .segments[]] | length')
	[ "$n" -eq 0 ] && break
	sleep 0.5
done
ns=$(ctl 1 -o json archive list | jq '[.partitions[] | select(.namespace == "shop") | .segments[]] | length')
[ "$n" -eq 0 ] && [ "$ns" -ge 3 ] && pass "other expired after SIGHUP set 5 s; shop (default 7 d) kept $ns segments" ||
	fail "expiry: other $n, shop $ns"
[ "$(metric 1 'moat_archive_segments_total{event="expired"}')" -ge 1 ] && pass "expiry counted in metrics" ||
	fail "metrics: $(ctl 1 metrics | grep archive_segments)"

section "a full disk: enforcement goes on, losses counted, writing resumes"
dd if=/dev/zero of="$ARCH/filler" bs=64k 2>/dev/null || true
probe_matrix "with the archive's disk full" <<'EOF'
shop/web shop/db tcp 5432 ok
shop/web shop/db tcp 80 timeout
other/app shop/web udp 53 ok
EOF
ctl 1 observe --last 3 --verdict deny >"$Q-obs" 2>&1
grep -q "deny" "$Q-obs" && pass "the live stream still flows" || fail "observe: $(cat "$Q-obs")"
"$PROBE" batch --timeout 0.2 --parallel 50 <"$E2E_TMP/udp.in" >/dev/null
sleep 1.5
[ "$(metric 1 moat_archive_disk_full)" = 1 ] && [ "$(metric 1 moat_archive_event_copies_lost_total)" -gt 0 ] &&
	pass "metrics: disk full, $(metric 1 moat_archive_event_copies_lost_total) event copies lost" ||
	fail "metrics: $(ctl 1 metrics | grep -E 'archive_(disk|event_copies)')"
[ "$(grep -c 'archive: cannot' "$E2E_TMP/moatd-n1.log")" -eq 1 ] && pass "logged once" ||
	fail "log: $(grep 'archive:' "$E2E_TMP/moatd-n1.log")"
rm -f "$ARCH/filler"
sleep 1.2
T_SPACE=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
probe_matrix "space again" <<'EOF'
shop/web shop/db tcp 80 timeout
EOF
sleep 0.5
[ "$(metric 1 moat_archive_disk_full)" = 0 ] && grep -q "archive: writing again" "$E2E_TMP/moatd-n1.log" &&
	pass "writing again: $(grep -o 'writing again.*' "$E2E_TMP/moatd-n1.log" | head -1)" || fail "did not recover"
got=$(ctl 1 archive query --since "$T_SPACE" --verdict deny --filter "tcp port 80" -w - 2>/dev/null | tshark -r - -Y eth 2>/dev/null | wc -l)
[ "$got" -ge 1 ] && pass "packets after the disk emptied are archived ($got)" || fail "nothing archived after recovery"
bad=0
for s in "$ARCH"/*/*.pcapng; do
	# (a segment closed meanwhile has a new name)
	[ -f "$s" ] || continue
	if ! tshark -r "$s" >/dev/null 2>"$Q-ts.err" && [ -f "$s" ]; then
		bad=$((bad + 1))
		cat "$Q-ts.err"
	fi
done
[ $bad -eq 0 ] && pass "every segment reads cleanly in tshark after the full disk" || fail "$bad segments do not read"

section "kill -9 mid-write, a torn last block, recovery on restart"
before=$(ctl 1 archive query --namespace shop --until "$T_FIRST" -w - 2>/dev/null | tshark -r - -Y eth 2>/dev/null | wc -l)
(for _ in $(seq 40); do "$PROBE" batch --timeout 0.1 --parallel 50 <"$E2E_TMP/udp.in" >/dev/null 2>&1; done) &
loadpid=$!
E2E_BG+=($loadpid)
sleep 1
kill -9 "${DPID[1]}"
wait "${DPID[1]}" 2>/dev/null || true
unset "DPID[1]"
kill "$loadpid" 2>/dev/null || true
wait "$loadpid" 2>/dev/null || true
seg=$(ls "$ARCH"/shop/*-open.pcapng 2>/dev/null | head -1)
[ -n "$seg" ] && pass "left open by the kill: $(basename "$seg")" || die "no open segment after kill -9"
size=$(stat -c %s "$seg")
truncate -s $((size - 10)) "$seg" # the last write cut short, as a crash mid-write leaves it
kept=$(summary "$seg" | jq '.packets | length')
cut=$(( size - 10 - $(summary "$seg" | jq .valid) ))
if tshark -r "$seg" >/dev/null 2>"$Q-torn.err"; then
	fail "tshark read the torn segment without complaint"
else
	pass "tshark on the torn segment: $(grep -v 'Running as user' "$Q-torn.err" | head -c 120)"
fi
moat_start 1 "${DARGS[@]}"
sync_or_die
grep -q "archive: recovered shop/$(basename "$seg") left open by a crash: .* $cut bytes of a torn last block cut" \
	"$E2E_TMP/moatd-n1.log" && pass "recovered on restart: $(grep -o 'recovered shop.*' "$E2E_TMP/moatd-n1.log")" ||
	fail "recovery log: $(grep 'archive' "$E2E_TMP/moatd-n1.log" | tail -3)"
start=$(basename "$seg" | cut -d- -f1)
rec=$(ls "$ARCH"/shop/"$start"-*.pcapng)
[ -f "$rec" ] && [ "$rec" != "$seg" ] && tshark -r "$rec" >/dev/null 2>&1 && pass "renamed closed, reads cleanly: $(basename "$rec")" ||
	fail "recovered segment: $rec"
[ "$(summary "$rec" | jq '.packets | length')" = "$kept" ] && pass "all $kept whole packets before the torn block kept" ||
	fail "packets: $(summary "$rec" | jq '.packets | length'), want $kept"
after=$(ctl 1 archive query --namespace shop --until "$T_FIRST" -w - 2>/dev/null | tshark -r - -Y eth 2>/dev/null | wc -l)
[ "$before" -gt 0 ] && [ "$after" = "$before" ] && pass "nothing else lost: the first $before packets of shop still there" ||
	fail "first packets: $before before, $after after"
probe_matrix "after the restart" <<'EOF'
shop/web shop/db tcp 80 timeout
EOF
got=$(ctl 1 archive query --since -5s --verdict deny -w - 2>/dev/null | tshark -r - -Y eth 2>/dev/null | wc -l)
[ "$got" -ge 1 ] && pass "recording again after the restart" || fail "nothing recorded after the restart"
moat_stop 1

e2e_end
