// SPDX-License-Identifier: Apache-2.0
/* Differential tests of the hardware pre-filter (xdp/prefilter.bpf.c, built
 * for the host) against the full program, under BPF_PROG_TEST_RUN.
 *
 * Two private datapaths, A and B, each with its own compiler fed the same
 * objects.  A is the full program alone; B is the pair as it runs on a NIC:
 * the pre-filter first, and the full program only for what the pre-filter
 * passes.  The pre-filter's tables come from B's compiler through
 * hostd/prefilter.c, written incrementally around each generation switch
 * exactly as moatd does.  Every packet goes through A and through the pair
 * (stateful: conntrack, fragments, revocation are all exercised), and:
 *   - the pre-filter never drops a packet A allows;
 *   - the pair's verdict equals A's, packet for packet.
 * Random policy sets (NetworkPolicy ipBlocks with excepts, ANP/BANP/CNP
 * egress networks, ports, ranges, Pass) change generation after generation;
 * the packets are checked before the switch (pre-filter half updated, full
 * program old), right after it (full program new), and after the
 * pre-filter's second half.  Every single map write of an update is checked
 * too, against the compiler's verdicts in both directions.
 *
 * PF_SEED, PF_SETS, PF_PACKETS override the seed and the sizes.  Needs root
 * and BPF: exits 77 (skip) otherwise. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/bpf.h>
#include <cmocka.h>
#include <bpf/bpf.h>

#include "../lib/pkt.h"
#include "../lib/dpfix.h"
#include "compile.h"
#include "decode.h"
#include "manifest.h"
#include "pf.h"
#include "prefilter.h"
#include "pfmgr.h"
#include "util.h"

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

struct side {
	struct dpfix *f;
	struct moat_compiler *c;
};

static struct side A, B;
static struct moat_pf *PF;
static struct moat_pfc *PFC;
static int IF_WEB, IF_API;
static unsigned SEED = 1, NSETS = 40, NPACKETS = 250;

/* counters over the whole run: the tests must actually exercise drops */
static struct {
	unsigned long packets, pf_drops, full_drops, write_checks, phases;
} N;

/* ---- the cluster ------------------------------------------------------------
 * Node n1 is this node.  Local pods a/web and b/api (dual stack), remote
 * pod a/db on n2, a Service VIP. */
#define WEB4 "10.0.1.1"
#define WEB6 "fd00:1::1"
#define API4 "10.0.2.1"
#define API6 "fd00:2::1"
#define DB4  "10.0.1.2"
#define DB6  "fd00:1::2"
#define N1   "10.99.0.1"
#define N2   "10.99.0.2"
#define VIP4 "10.96.0.10"

static const char *base_yaml =
	"apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"
	"status: {addresses: [{type: InternalIP, address: 10.99.0.1}]}\n---\n"
	"apiVersion: v1\nkind: Node\nmetadata: {name: n2}\n"
	"status: {addresses: [{type: InternalIP, address: 10.99.0.2}]}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {team: x}}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {team: y}}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a, labels: {app: web}}\n"
	"spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}\n"
	"status: {podIPs: [{ip: 10.0.1.1}, {ip: 'fd00:1::1'}]}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: b, labels: {app: api}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\n"
	"status: {podIPs: [{ip: 10.0.2.1}, {ip: 'fd00:2::1'}]}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: a, labels: {app: db}}\n"
	"spec: {nodeName: n2, containers: [{name: c}]}\n"
	"status: {podIPs: [{ip: 10.0.1.2}, {ip: 'fd00:1::2'}]}\n---\n"
	"apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {clusterIP: 10.96.0.10}\n";

/* CIDRs policies name: inside the cluster, and outside it (nested). */
static const char *const cidrs4[] = {
	"0.0.0.0/0",        "10.0.0.0/8",       "10.0.1.0/24",    "203.0.113.0/24",
	"203.0.113.128/25", "203.0.113.192/26", "203.0.113.7/32", "198.51.100.0/24",
	"198.51.100.64/26", "192.0.2.0/24",     "192.0.0.0/16",
};
static const char *const cidrs6[] = {
	"::/0",
	"fd00::/8",
	"fd00:1::/64",
	"2001:db8::/32",
	"2001:db8:1::/48",
	"2001:db8:1:2::/64",
	"2001:db8:1:2::9/128",
	"2001:db8:ff00::/40",
};
/* Sources: inside those prefixes, outside all of them, cluster addresses. */
static const char *const srcs4[] = {
	"203.0.113.1",
	"203.0.113.7",
	"203.0.113.130",
	"203.0.113.200",
	"203.0.113.255",
	"198.51.100.1",
	"198.51.100.70",
	"192.0.2.33",
	"192.0.99.1",
	"8.8.8.8",
	DB4,
	N2,
	N1,
	VIP4,
	"10.5.5.5",
};
static const char *const srcs6[] = {
	"2001:db8::1",
	"2001:db8:1::5",
	"2001:db8:1:2::9",
	"2001:db8:1:2::a",
	"2001:db8:ff00::1",
	"2001:4860::8888",
	DB6,
	"fd00:9::9",
};
static const __u16 ports[] = { 80, 443, 53, 8080, 5000, 5005, 5010, 1, 65535, 33333 };

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static unsigned rnd(unsigned n)
{
	return n ? (unsigned)random() % n : 0;
}

/* ---- compilers ------------------------------------------------------------------ */
static void load_one(struct moat_compiler *c, const char *yaml)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };

	if (moat_manifest_parse(yaml, strlen(yaml), "test.yaml", &docs, &errs))
		fail_msg("yaml: %s\n%s", errs.n ? errs.v[0] : "?", yaml);
	for (size_t i = 0; i < docs.n; i++) {
		struct moat_object *o = NULL;
		char err[512];
		if (moat_decode(docs.v[i].json, "test.yaml", &o, err, sizeof(err)))
			fail_msg("decode: %s\n%s", err, yaml);
		assert_int_equal(moat_compiler_apply(c, o), 0);
	}
	moat_docs_free(&docs);
	moat_errs_free(&errs);
}

static void load(const char *yaml)
{
	load_one(A.c, yaml);
	load_one(B.c, yaml);
}

static void delete (const char *key)
{
	assert_int_equal(moat_compiler_delete(A.c, key), 0);
	assert_int_equal(moat_compiler_delete(B.c, key), 0);
}

static int pf_run(const struct pkt *p)
{
	LIBBPF_OPTS(bpf_test_run_opts, o);
	__u8 out[PKT_MAX_LEN + 64];

	o.data_in = p->data;
	o.data_size_in = (__u32)p->len;
	o.data_out = out;
	o.data_size_out = sizeof(out);
	if (bpf_prog_test_run_opts(moat_pf_prog_fd(PF), &o))
		return -errno;
	return (int)o.retval;
}

/* ---- packets ---------------------------------------------------------------------- */
struct desc {
	char text[200];
	struct pkt p;
	int hook, ifindex;
	/* for the per-write checks: what the compiler must deny */
	bool judged; /* a flow packet with addresses and ports */
	char s[64], d[64];
	__u8 proto;
	__u16 sport, dport;
};

static bool is6(const char *a)
{
	return strchr(a, ':') != NULL;
}

static void eth_ip(struct pkt *p, const char *s, const char *d, int vlans)
{
	pkt_init(p);
	pkt_eth(p, NULL, NULL);
	for (int i = 0; i < vlans; i++)
		pkt_vlan(p, i ? 0x8100 : 0x88a8, (__u16)(10 + i));
	if (is6(s))
		pkt_ip6(p, pkt_a6(s), pkt_a6(d));
	else
		pkt_ip4(p, pkt_a4(s), pkt_a4(d));
}

enum kind {
	K_TCP,
	K_UDP,
	K_SCTP,
	K_ECHO,
	K_ECHO_REPLY,
	K_GRE,
	K_ICMP_ERR,
	K_FRAG_LATER,
	K_FRAG_FIRST,
	K_MAX
};

static void build(struct desc *x, enum kind k, const char *s, const char *d, __u16 sp, __u16 dp, int vlans)
{
	struct pkt *p = &x->p;
	bool v6 = is6(s);

	memset(x, 0, sizeof(*x));
	snprintf(x->s, sizeof(x->s), "%s", s);
	snprintf(x->d, sizeof(x->d), "%s", d);
	x->sport = sp;
	x->dport = dp;
	x->judged = true;
	eth_ip(p, s, d, vlans);
	switch (k) {
	case K_TCP:
		x->proto = IPPROTO_TCP;
		pkt_tcp(p, sp, dp, rnd(3) ? PKT_TCP_SYN : PKT_TCP_ACK);
		break;
	case K_UDP:
		x->proto = IPPROTO_UDP;
		pkt_udp(p, sp, dp);
		pkt_payload(p, "0123456789abcdef", 16);
		break;
	case K_SCTP:
		x->proto = IPPROTO_SCTP;
		pkt_sctp_init(p, sp, dp, 0x01020304);
		break;
	case K_ECHO:
	case K_ECHO_REPLY:
		x->proto = v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
		x->sport = x->dport = 0;
		if (v6)
			pkt_icmp6_echo(p, k == K_ECHO ? 128 : 129, sp, 1);
		else
			pkt_icmp4_echo(p, k == K_ECHO ? 8 : 0, sp, 1);
		pkt_payload(p, "ping", 4);
		break;
	case K_GRE:
		x->proto = 47;
		x->sport = x->dport = 0;
		pkt_next_proto(p, 47);
		pkt_payload(p, "\0\0\x08\0greegreegree", 16);
		break;
	case K_ICMP_ERR:
		/* about a UDP packet the destination sent to the source */
		x->judged = false;
		if (v6) {
			pkt_icmp6(p, 1, 4);
			pkt_ip6(p, pkt_a6(d), pkt_a6(s));
		} else {
			pkt_icmp4(p, 3, 3);
			pkt_ip4(p, pkt_a4(d), pkt_a4(s));
		}
		pkt_udp(p, dp, sp);
		pkt_payload(p, "0123456789abcdef", 16);
		break;
	case K_FRAG_FIRST:
	case K_FRAG_LATER:
		x->proto = IPPROTO_UDP;
		if (v6) {
			pkt_ip6_frag(p, 0x4242 + sp, k == K_FRAG_FIRST ? 0 : 24, k == K_FRAG_FIRST);
		} else {
			pkt_ip4_frag(p, (__u16)(0x4242 + sp), k == K_FRAG_FIRST ? 0 : 24, k == K_FRAG_FIRST);
		}
		if (k == K_FRAG_FIRST) {
			pkt_udp(p, sp, dp);
			pkt_payload(p, "0123456789abcdef", 16);
		} else {
			x->judged = false;
			pkt_next_proto(p, IPPROTO_UDP);
			pkt_payload(p, "fedcba9876543210", 16);
		}
		break;
	default:
		break;
	}
	if (pkt_finish(p))
		fail_msg("cannot build a packet %s -> %s kind %d", s, d, k);
	snprintf(x->text, sizeof(x->text), "%s %s:%u -> %s:%u kind %d vlans %d", v6 ? "v6" : "v4", s, sp, d,
		 dp, k, vlans);
	x->hook = MOAT_HOOK_UPLINK;
}

/* One packet through A and through the pair. */
static void check(struct desc *x, const char *stage)
{
	int va, vb, vp = -1;

	va = fix_run(A.f, x->hook, x->ifindex, &x->p);
	if (x->hook == MOAT_HOOK_UPLINK) {
		vp = pf_run(&x->p);
		if (vp != XDP_PASS && vp != XDP_DROP)
			fail_msg("pre-filter returned %d for %s (%s)", vp, x->text, stage);
		vb = vp == XDP_DROP ? XDP_DROP : fix_run(B.f, x->hook, x->ifindex, &x->p);
	} else {
		vb = fix_run(B.f, x->hook, x->ifindex, &x->p);
	}
	if (va < 0 || vb < 0)
		fail_msg("test run failed (%d, %d) for %s (%s)", va, vb, x->text, stage);
	if (vp == XDP_DROP && va != XDP_DROP)
		fail_msg("seed %u: the pre-filter dropped what the full program allows: %s (%s)", SEED,
			 x->text, stage);
	if (va != vb)
		fail_msg("seed %u: full %d, pair %d (pre-filter %d) for %s (%s)", SEED, va, vb, vp, x->text,
			 stage);
	N.packets++;
	N.pf_drops += vp == XDP_DROP;
	N.full_drops += va == XDP_DROP;
}

/* A conversation or a lone packet: from the world to local pods (uplink),
 * from local pods to the world (their host-side veth) and the replies. */
static void traffic(const char *stage, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct desc x;
		bool v6 = rnd(3) == 0;
		const char *w = v6 ? srcs6[rnd(NELEM(srcs6))] : srcs4[rnd(NELEM(srcs4))];
		bool web = rnd(2);
		const char *pod = web ? (v6 ? WEB6 : WEB4) : (v6 ? API6 : API4);
		const char *dst = rnd(8) == 0 ? (v6 ? DB6 : DB4) : pod;
		int vlans = rnd(10) == 0 ? 1 + (int)rnd(2) : 0;
		enum kind k = (enum kind)rnd(K_MAX);
		__u16 sp = ports[rnd(NELEM(ports))], dp = ports[rnd(NELEM(ports))];

		if (rnd(3) == 0 && k != K_ICMP_ERR && k != K_FRAG_LATER) {
			/* the pod opens a flow; the world answers */
			struct desc out;
			enum kind rk = k == K_ECHO ? K_ECHO_REPLY : k;
			build(&out, k, pod, w, dp, sp, 0);
			out.hook = MOAT_HOOK_FROM_POD;
			out.ifindex = web ? IF_WEB : IF_API;
			check(&out, stage);
			build(&x, rk, w, pod, sp, dp, vlans);
			check(&x, stage);
			if (k == K_UDP && rnd(2)) {
				build(&x, K_ICMP_ERR, w, pod, sp, dp, vlans);
				check(&x, stage);
			}
			continue;
		}
		build(&x, k, w, dst, sp, dp, vlans);
		check(&x, stage);
		if (k == K_FRAG_FIRST) {
			build(&x, K_FRAG_LATER, w, dst, sp, dp, vlans);
			check(&x, stage);
		}
	}
}

/* ---- random policy sets ----------------------------------------------------------- */
struct yb {
	char *s;
	size_t n, cap;
};

static void yadd(struct yb *b, const char *fmt, ...)
{
	va_list ap;
	char tmp[1024];
	int len;

	va_start(ap, fmt);
	len = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (b->n + (size_t)len + 1 > b->cap) {
		b->cap = (b->n + (size_t)len + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->n, tmp, (size_t)len + 1);
	b->n += (size_t)len;
}

static const char *rcidr(bool v6)
{
	return v6 ? cidrs6[rnd(NELEM(cidrs6))] : cidrs4[rnd(NELEM(cidrs4))];
}

/* A prefix strictly inside cidr (for ipBlock except), or NULL. */
static const char *inside(const char *cidr)
{
	static const char *const pairs[][2] = {
		{ "0.0.0.0/0", "203.0.113.0/24" },
		{ "0.0.0.0/0", "198.51.100.0/24" },
		{ "0.0.0.0/0", "10.0.0.0/8" },
		{ "10.0.0.0/8", "10.0.1.0/24" },
		{ "203.0.113.0/24", "203.0.113.128/25" },
		{ "203.0.113.0/24", "203.0.113.7/32" },
		{ "203.0.113.128/25", "203.0.113.192/26" },
		{ "198.51.100.0/24", "198.51.100.64/26" },
		{ "192.0.0.0/16", "192.0.2.0/24" },
		{ "::/0", "2001:db8::/32" },
		{ "2001:db8::/32", "2001:db8:1::/48" },
		{ "2001:db8:1::/48", "2001:db8:1:2::/64" },
		{ "2001:db8:1:2::/64", "2001:db8:1:2::9/128" },
		{ "::/0", "fd00::/8" },
	};
	const char *cand[8];
	size_t n = 0;

	for (size_t i = 0; i < NELEM(pairs) && n < NELEM(cand); i++)
		if (!strcmp(pairs[i][0], cidr))
			cand[n++] = pairs[i][1];
	return n ? cand[rnd((unsigned)n)] : NULL;
}

static void np_ports(struct yb *b)
{
	unsigned k = rnd(4);

	if (k == 0)
		return;
	yadd(b, ", ports: [");
	for (unsigned i = 0; i < k; i++) {
		static const char *const pr[] = { "TCP", "UDP", "SCTP" };
		__u16 p = ports[rnd(NELEM(ports))];
		if (rnd(4) == 0 && p < 60000)
			yadd(b, "%s{protocol: %s, port: %u, endPort: %u}", i ? ", " : "", pr[rnd(3)], p,
			     p + rnd(20) + 1);
		else
			yadd(b, "%s{protocol: %s, port: %u}", i ? ", " : "", pr[rnd(3)], p);
	}
	yadd(b, "]");
}

static void netpol(struct yb *b, int idx)
{
	bool in = rnd(3) != 0, eg = !in || rnd(3) == 0;
	const char *ns = rnd(2) ? "a" : "b";

	yadd(b,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
	     "metadata: {name: p%d, namespace: %s}\nspec:\n  podSelector: {}\n"
	     "  policyTypes: [%s%s%s]\n",
	     idx, ns, in ? "Ingress" : "", in && eg ? ", " : "", eg ? "Egress" : "");
	for (int d = 0; d < 2; d++) {
		unsigned nr = rnd(3);
		if ((d == 0 && !in) || (d == 1 && !eg))
			continue;
		yadd(b, "  %s: [", d ? "egress" : "ingress");
		for (unsigned r = 0; r < nr; r++) {
			bool v6 = rnd(2);
			const char *c = rcidr(v6), *ex = inside(c);
			yadd(b, "%s{%s: [{ipBlock: {cidr: '%s'", r ? ", " : "", d ? "to" : "from", c);
			if (ex && rnd(2))
				yadd(b, ", except: ['%s']", ex);
			yadd(b, "}}]");
			np_ports(b);
			yadd(b, "}");
		}
		yadd(b, "]\n");
	}
}

static void anp_ports(struct yb *b, bool cnp)
{
	static const char *const pr[] = { "TCP", "UDP", "SCTP" };
	static const char *const prl[] = { "tcp", "udp", "sctp" };
	unsigned k = rnd(3);
	__u16 p;

	if (k == 0)
		return;
	yadd(b, cnp ? ", protocols: [" : ", ports: [");
	for (unsigned i = 0; i < k; i++) {
		unsigned x = rnd(3);
		p = ports[rnd(NELEM(ports))];
		if (cnp) {
			if (rnd(3) == 0)
				yadd(b, "%s{%s: {}}", i ? ", " : "", prl[x]);
			else if (rnd(3) == 0 && p < 60000)
				yadd(b, "%s{%s: {destinationPort: {range: {start: %u, end: %u}}}}",
				     i ? ", " : "", prl[x], p, p + 1 + rnd(20));
			else
				yadd(b, "%s{%s: {destinationPort: {number: %u}}}", i ? ", " : "", prl[x], p);
		} else if (rnd(3) == 0 && p < 60000) {
			yadd(b, "%s{portRange: {protocol: %s, start: %u, end: %u}}", i ? ", " : "", pr[x], p,
			     p + rnd(20));
		} else {
			yadd(b, "%s{portNumber: {protocol: %s, port: %u}}", i ? ", " : "", pr[x], p);
		}
	}
	yadd(b, "]");
}

static void cluster_pol(struct yb *b, int idx)
{
	int kind = (int)rnd(3); /* 0 ANP, 1 BANP, 2 CNP */
	bool cnp = kind == 2;
	const char *subj = rnd(2) ? "{namespaces: {}}" :
			   rnd(2) ? "{namespaces: {matchLabels: {team: x}}}" :
				    "{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: api}}}}";
	unsigned nr = 1 + rnd(3);

	if (kind == 0)
		yadd(b,
		     "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
		     "metadata: {name: p%d}\nspec:\n  priority: %u\n",
		     idx, rnd(50));
	else if (kind == 1)
		yadd(b, "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\n"
			"metadata: {name: default}\nspec:\n");
	else
		yadd(b,
		     "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
		     "metadata: {name: p%d}\nspec:\n  tier: %s\n  priority: %u\n",
		     idx, rnd(2) ? "Admin" : "Baseline", rnd(50));
	yadd(b, "  subject: %s\n  egress: [", subj);
	for (unsigned r = 0; r < nr; r++) {
		static const char *const acts[] = { "Allow", "Deny", "Pass" };
		const char *act = acts[rnd(kind == 1 ? 2 : 3)];
		unsigned nn = 1 + rnd(2);
		if (cnp && !strcmp(act, "Allow"))
			act = "Accept";
		/* mostly Deny: what the pre-filter can take */
		if (rnd(2))
			act = "Deny";
		yadd(b, "%s{action: %s, to: [{networks: [", r ? ", " : "", act);
		for (unsigned i = 0; i < nn; i++)
			yadd(b, "%s'%s'", i ? ", " : "", rcidr(rnd(3) == 0));
		yadd(b, "]}]");
		anp_ports(b, cnp);
		yadd(b, "}");
	}
	yadd(b, "]\n");
	if (rnd(3) == 0) {
		/* pods-only ingress rules: they never concern the world */
		yadd(b, "  ingress: [{action: %s, from: [{namespaces: {}}]}]\n", cnp ? "Accept" : "Allow");
	}
}

static char *keys[16];
static int nkeys;

/* Replaces the policies by a new random set. */
static void new_policy_set(void)
{
	struct yb b = { 0 };
	int n = 1 + (int)rnd(5);
	bool banp = false;

	for (int i = 0; i < nkeys; i++) {
		delete (keys[i]);
		free(keys[i]);
	}
	nkeys = 0;
	for (int i = 0; i < n; i++) {
		size_t start;
		if (i)
			yadd(&b, "---\n");
		start = b.n;
		if (rnd(2)) {
			netpol(&b, i);
			keys[nkeys++] = xasprintf("NetworkPolicy/%s/p%d",
						  strstr(b.s + start, "namespace: a") ? "a" : "b", i);
		} else {
			cluster_pol(&b, i);
			if (strstr(b.s + start, "kind: BaselineAdminNetworkPolicy")) {
				if (banp) { /* one BANP at most: it is a singleton */
					b.n = start;
					b.s[b.n] = 0;
					continue;
				}
				banp = true;
				keys[nkeys++] = xstrdup("BaselineAdminNetworkPolicy/default");
			} else if (strstr(b.s + start, "kind: AdminNetworkPolicy")) {
				keys[nkeys++] = xasprintf("AdminNetworkPolicy/p%d", i);
			} else {
				keys[nkeys++] = xasprintf("ClusterNetworkPolicy/p%d", i);
			}
		}
	}
	if (b.n)
		load(b.s);
	free(b.s);
}

/* ---- generations ------------------------------------------------------------------- */
static void commit_side(struct side *s, struct moat_tx *tx)
{
	assert_int_equal(moat_tx_commit(tx, NULL), 0);
	moat_compiler_commit(s->c);
	assert_int_equal(moat_dp_settle(s->f->dp), 0);
}

static struct moat_tx *flush_side(struct side *s)
{
	struct moat_tx *tx;
	struct moat_flush_stats st;
	char err[256];

	assert_int_equal(moat_tx_begin(s->f->dp, false, &tx), 0);
	if (moat_compiler_flush(s->c, tx, &st, err, sizeof(err)))
		fail_msg("flush: %s", err);
	return tx;
}

/* The generation both sides go to, with the pre-filter updated around
 * B's switch; traffic checked at every stage when n > 0. */
static void apply(unsigned n)
{
	struct moat_tx *ta = flush_side(&A), *tb = flush_side(&B);

	assert_int_equal(moat_pfc_build(PFC, B.c, true), 0);
	assert_int_equal(moat_pfc_apply_before(PFC, PF), 0);
	if (n)
		traffic("pre-filter half updated, full program old", n);
	commit_side(&A, ta);
	commit_side(&B, tb);
	if (n)
		traffic("full program switched, pre-filter half updated", n);
	assert_int_equal(moat_pfc_apply_after(PFC, PF), 0);
	if (n)
		traffic("both updated", n);
	N.phases++;
}

static void endpoints(void)
{
	assert_int_equal(moat_compiler_set_endpoint(A.c, "a", "web", IF_WEB), 0);
	assert_int_equal(moat_compiler_set_endpoint(B.c, "a", "web", IF_WEB), 0);
	assert_int_equal(moat_compiler_set_endpoint(A.c, "b", "api", IF_API), 0);
	assert_int_equal(moat_compiler_set_endpoint(B.c, "b", "api", IF_API), 0);
}

/* Both compilers must agree on every identity and region, or A and B would
 * not hold the same tables. */

static int cell_cmp_cb(const void *key, const void *val, void *arg)
{
	(void)key;
	(void)val;
	(*(int *)arg)++;
	return 0;
}

static void same_tables(void)
{
	for (int t = MOAT_T_EP; t <= MOAT_T_NET6; t++) {
		int na = 0, nb = 0;
		moat_compiler_table(A.c, false, t, cell_cmp_cb, &na);
		moat_compiler_table(B.c, false, t, cell_cmp_cb, &nb);
		assert_int_equal(na, nb);
	}
	for (size_t i = 0; i < 4; i++) {
		static const char *const ips[] = { WEB4, API6, DB4, N2 };
		struct moat_explain xa, xb;
		char err[128];
		assert_int_equal(
			moat_compiler_explain(A.c, ips[i], WEB4, IPPROTO_TCP, 80, &xa, err, sizeof(err)), 0);
		assert_int_equal(
			moat_compiler_explain(B.c, ips[i], WEB4, IPPROTO_TCP, 80, &xb, err, sizeof(err)), 0);
		assert_int_equal(xa.src_identity, xb.src_identity);
		assert_int_equal(xa.verdict, xb.verdict);
	}
}

/* ---- tests ------------------------------------------------------------------------- */
static int group_setup(void **state)
{
	struct moat_compiler_opts o = { .node = "n1" };
	struct moat_pfc_limits lim = { 0 };
	char err[256];

	(void)state;
	for (int t = 0; t < MOAT_T_MAX; t++)
		o.cap[t] = moat_dp_tbl_capacity(A.f->dp, t);
	o.max_identities = FIX_MAX_IDENTITIES;
	o.max_rules = FIX_MAX_RULES;
	if (fix_reset(A.f) || fix_reset(B.f))
		return -1;
	if (moat_compiler_new(&o, &A.c) || moat_compiler_new(&o, &B.c))
		return -1;
	if (moat_pf_open(NULL, &PF, err, sizeof(err))) {
		fprintf(stderr, "pre-filter: %s\n", err);
		return -1;
	}
	moat_pfc_new(&lim, &PFC);
	load(base_yaml);
	endpoints();
	apply(0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (int i = 0; i < nkeys; i++)
		free(keys[i]);
	nkeys = 0;
	moat_pfc_free(PFC);
	moat_pf_close(PF);
	moat_compiler_free(A.c);
	moat_compiler_free(B.c);
	PFC = NULL;
	PF = NULL;
	return 0;
}

/* A blocklist both ways (the pattern the pre-filter is for): web's ingress
 * allows everything but 203.0.113.0/24, and an ANP denies egress to it.
 * Everything from it to web drops on the NIC, replies included; api, not
 * isolated, still gets it through the full program. */
static void test_blocklist_both_ways(void **state)
{
	struct desc x;
	struct moat_pfc_stats st;
	__u64 drops = 0;

	(void)state;
	load("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
	     "metadata: {name: not-bad, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: web}}\n"
	     "  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: [203.0.113.0/24]}}]}]\n---\n"
	     "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
	     "metadata: {name: no-bad}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n"
	     "  egress: [{action: Deny, to: [{networks: [203.0.113.0/24]}]}]\n");
	keys[nkeys++] = xstrdup("NetworkPolicy/a/not-bad");
	keys[nkeys++] = xstrdup("AdminNetworkPolicy/no-bad");
	apply(0);
	moat_pfc_get_stats(PFC, &st);
	assert_int_equal(st.src[0], 1);
	assert_int_equal(st.pairs, 1);
	assert_int_equal(st.dst[0], 1);

	build(&x, K_TCP, "203.0.113.9", WEB4, 40000, 443, 0);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
	check(&x, "blocklist");
	build(&x, K_UDP, "203.0.113.9", WEB4, 53, 40000, 1);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
	build(&x, K_ECHO, "203.0.113.9", WEB4, 7, 0, 0);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
	/* ICMP errors and later fragments are the full program's */
	build(&x, K_ICMP_ERR, "203.0.113.9", WEB4, 53, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_PASS);
	check(&x, "blocklist");
	build(&x, K_FRAG_LATER, "203.0.113.9", WEB4, 53, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_PASS);
	/* api is not isolated: its ingress from there is allowed */
	build(&x, K_TCP, "203.0.113.9", API4, 40000, 443, 0);
	assert_int_equal(pf_run(&x.p), XDP_PASS);
	check(&x, "blocklist");
	/* outside the blocked prefix */
	build(&x, K_TCP, "198.51.100.1", WEB4, 40000, 443, 0);
	assert_int_equal(pf_run(&x.p), XDP_PASS);
	check(&x, "blocklist");
	assert_int_equal(moat_pf_stat(PF, MOAT_PF_STAT_DROP, &drops), 0);
	assert_true(drops >= 3);
}

/* Ingress denied but egress allowed: replies of web's own connections must
 * come back, so nothing may drop on the NIC. */
static void test_one_way_deny_is_not_offloaded(void **state)
{
	struct desc out, x;
	struct moat_pfc_stats st;

	(void)state;
	delete ("AdminNetworkPolicy/no-bad");
	free(keys[--nkeys]);
	apply(0);
	moat_pfc_get_stats(PFC, &st);
	assert_int_equal(st.pairs, 0);
	build(&out, K_TCP, WEB4, "203.0.113.9", 40000, 443, 0);
	out.hook = MOAT_HOOK_FROM_POD;
	out.ifindex = IF_WEB;
	check(&out, "one way");
	build(&x, K_TCP, "203.0.113.9", WEB4, 443, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_PASS);
	check(&x, "one way");
	/* a new flow from there is still denied, by the full program */
	build(&x, K_TCP, "203.0.113.9", WEB4, 443, 40001, 0);
	check(&x, "one way");
}

/* Deny on some ports only: not every port is denied, nothing goes to the
 * NIC for TCP; UDP (denied on every port both ways) does. */
static void test_partial_ports(void **state)
{
	struct desc x;
	struct moat_pfc_stats st;

	(void)state;
	load("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
	     "metadata: {name: no-bad}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n"
	     "  egress: [{action: Allow, to: [{networks: [203.0.113.0/24]}], ports: [{portNumber: {protocol: TCP, port: 443}}]},\n"
	     "           {action: Deny, to: [{networks: [203.0.113.0/24]}]}]\n");
	keys[nkeys++] = xstrdup("AdminNetworkPolicy/no-bad");
	apply(0);
	moat_pfc_get_stats(PFC, &st);
	assert_int_equal(st.pairs, 1);
	build(&x, K_TCP, "203.0.113.9", WEB4, 443, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_PASS);
	check(&x, "partial");
	build(&x, K_UDP, "203.0.113.9", WEB4, 53, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
	check(&x, "partial");
	build(&x, K_SCTP, "203.0.113.9", WEB4, 53, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
	build(&x, K_GRE, "203.0.113.9", WEB4, 0, 0, 0);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
	check(&x, "partial");
}

/* A prefix that holds a cluster address is never placed: the world inside
 * it is left to the full program. */
static void test_cluster_prefixes_stay_native(void **state)
{
	struct moat_pfc_stats st;
	struct desc x;

	(void)state;
	for (int i = 0; i < nkeys; i++) {
		delete (keys[i]);
		free(keys[i]);
	}
	nkeys = 0;
	load("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
	     "metadata: {name: none, namespace: a}\nspec:\n  podSelector: {}\n"
	     "  ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/16}}]}]\n  egress: []\n"
	     "  policyTypes: [Ingress, Egress]\n---\n"
	     "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
	     "metadata: {name: deny-10}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n"
	     "  egress: [{action: Deny, to: [{networks: [10.0.0.0/8, 203.0.113.0/24]}]}]\n");
	keys[nkeys++] = xstrdup("NetworkPolicy/a/none");
	keys[nkeys++] = xstrdup("AdminNetworkPolicy/deny-10");
	apply(0);
	moat_pfc_get_stats(PFC, &st);
	assert_int_equal(st.regions_in_cluster, 1); /* 10.0.0.0/8 */
	assert_int_equal(st.src[0], 1);             /* 203.0.113.0/24 only */
	build(&x, K_TCP, "10.200.0.1", WEB4, 443, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_PASS);
	check(&x, "cluster prefix");
	build(&x, K_TCP, "203.0.113.1", WEB4, 443, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
	check(&x, "cluster prefix");
}

/* Observe-only: the pre-filter counts what it would drop and passes it. */
static void test_observe_only(void **state)
{
	struct desc x;
	__u64 would = 0;

	(void)state;
	assert_int_equal(moat_pfc_set_flags(PFC, PF, 0, 0), 0);
	build(&x, K_TCP, "203.0.113.1", WEB4, 443, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_PASS);
	assert_int_equal(moat_pf_stat(PF, MOAT_PF_STAT_WOULD_DROP, &would), 0);
	assert_true(would >= 1);
	assert_int_equal(moat_pfc_set_flags(PFC, PF, MOAT_PF_CFG_ENFORCE, 0), 0);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
}

/* Not a pass/fail figure: the host cost of both programs on the same
 * packets, measured side by side (BPF_PROG_TEST_RUN, repeat 1e6). */
static __u32 pf_ns(const struct pkt *p, __u32 repeat)
{
	LIBBPF_OPTS(bpf_test_run_opts, o);

	o.data_in = p->data;
	o.data_size_in = (__u32)p->len;
	o.repeat = repeat;
	if (bpf_prog_test_run_opts(moat_pf_prog_fd(PF), &o))
		return 0;
	return o.duration;
}

static void test_cost(void **state)
{
	struct desc drop, pass;
	__u32 full_drop = 0, full_pass = 0, r = 1000000;

	(void)state;
	build(&drop, K_TCP, "203.0.113.1", WEB4, 443, 40000, 0);
	build(&pass, K_TCP, "198.51.100.1", WEB4, 443, 40000, 0);
	assert_int_equal(pf_run(&drop.p), XDP_DROP);
	assert_int_equal(pf_run(&pass.p), XDP_PASS);
	fix_run_repeat(A.f, MOAT_HOOK_UPLINK, 0, drop.p.data, drop.p.len, r, &full_drop);
	fix_run_repeat(A.f, MOAT_HOOK_UPLINK, 0, pass.p.data, pass.p.len, r, &full_pass);
	fprintf(stderr,
		"host cost per packet (ns, repeat %u): pre-filter drop %u, pre-filter pass "
		"(no pair) %u; full program on the same packets (repeats after the first hit its "
		"caches): denied %u, allowed %u\n",
		r, pf_ns(&drop.p, r), pf_ns(&pass.p, r), full_drop, full_pass);
}

/* The budget: whole prefix trees only, and what does not fit stays with the
 * full program (a smaller pre-filter drops less, never wrongly).  Then the
 * build cost at a few hundred regions. */
static void test_budget_and_scale(void **state)
{
	struct moat_pfc_limits lim = { .max_src = 3, .max_dst = 16, .max_pairs = 64, .max_lens = 2 };
	struct moat_pf_opts po = { .max_src = 3, .max_dst = 16, .max_pairs = 64 };
	struct moat_pfc *small;
	struct moat_pf *spf;
	struct moat_pfc_stats st;
	struct yb b = { 0 };
	char err[256];
	uint64_t t0;

	(void)state;
	for (int i = 0; i < nkeys; i++) {
		delete (keys[i]);
		free(keys[i]);
	}
	nkeys = 0;
	/* web isolated both ways; trees: 203.0.113.0/24 with two prefixes
	 * inside, 198.51.100.0/24, 192.0.2.0/24 (three lengths in all) */
	load("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
	     "metadata: {name: closed, namespace: a}\nspec:\n  podSelector: {}\n"
	     "  policyTypes: [Ingress, Egress]\n---\n"
	     "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
	     "metadata: {name: bad}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n"
	     "  egress: [{action: Deny, to: [{networks: [203.0.113.0/24, 203.0.113.128/25, 203.0.113.7/32,"
	     " 198.51.100.0/24, 192.0.2.0/24]}]}]\n");
	keys[nkeys++] = xstrdup("NetworkPolicy/a/closed");
	keys[nkeys++] = xstrdup("AdminNetworkPolicy/bad");
	apply(0);
	assert_int_equal(moat_pf_open(&po, &spf, err, sizeof(err)), 0);
	moat_pfc_new(&lim, &small);
	assert_int_equal(moat_pfc_build(small, B.c, false), 0);
	assert_int_equal(moat_pfc_apply(small, spf), 0);
	moat_pfc_get_stats(small, &st);
	assert_int_equal(st.trees, 3);
	/* the /24 tree needs 3 sources and lengths 24, 25, 32: over both limits */
	assert_int_equal(st.trees_placed, 2);
	assert_int_equal(st.trees_no_room, 1);
	assert_int_equal(st.src[0], 2);
	assert_int_equal(st.lens[0], 1);
	{
		static const char *const srcs[] = { "203.0.113.7", "203.0.113.200", "203.0.113.1",
						    "198.51.100.9", "192.0.2.9" };
		static const int want[] = { XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP };
		for (size_t i = 0; i < NELEM(srcs); i++) {
			struct desc x;
			LIBBPF_OPTS(bpf_test_run_opts, ro);
			build(&x, K_TCP, srcs[i], WEB4, 443, 40000, 0);
			ro.data_in = x.p.data;
			ro.data_size_in = (__u32)x.p.len;
			assert_int_equal(bpf_prog_test_run_opts(moat_pf_prog_fd(spf), &ro), 0);
			if ((int)ro.retval != want[i])
				fail_msg("%s: small pre-filter %u, want %d", srcs[i], ro.retval, want[i]);
			/* and the full program agrees wherever it drops */
			check(&x, "budget");
		}
	}
	moat_pfc_free(small);
	moat_pf_close(spf);

	/* 400 regions, each denied both ways: 400 pairs for web (api is not
	 * isolated), built and written in one go */
	yadd(&b, "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
		 "metadata: {name: many}\nspec:\n  priority: 2\n  subject: {namespaces: {}}\n  egress: [");
	for (int r = 0; r < 16; r++) {
		yadd(&b, "%s{action: Deny, to: [{networks: [", r ? ", " : "");
		for (int k = 0; k < 25; k++)
			yadd(&b, "%s'100.%d.%d.0/24'", k ? ", " : "", 64 + r, k);
		yadd(&b, "]}]}");
	}
	yadd(&b, "]\n");
	load(b.s);
	free(b.s);
	keys[nkeys++] = xstrdup("AdminNetworkPolicy/many");
	t0 = moat_now_ns();
	apply(0);
	moat_pfc_get_stats(PFC, &st);
	fprintf(stderr,
		"scale: %u regions, %u pairs placed; build %.1f ms, two-half update %.1f ms, "
		"%llu map writes (one firmware round trip each on a NIC); whole apply %.1f ms\n",
		st.regions, st.pairs, st.build_ns / 1e6, st.apply_ns / 1e6, (unsigned long long)st.writes,
		(moat_now_ns() - t0) / 1e6);
	assert_int_equal(st.pairs, 405); /* 400 + the 5 regions above */
	{
		struct desc x;
		build(&x, K_UDP, "100.70.3.9", WEB4, 53, 40000, 0);
		assert_int_equal(pf_run(&x.p), XDP_DROP);
		check(&x, "scale");
		build(&x, K_UDP, "100.70.3.9", API4, 53, 40000, 0);
		assert_int_equal(pf_run(&x.p), XDP_PASS);
		check(&x, "scale");
	}
}

/* The random differential run. */
static void test_random_policy_sets(void **state)
{
	unsigned long drops0 = N.pf_drops;

	(void)state;
	srandom(SEED);
	for (unsigned s = 0; s < NSETS; s++) {
		/* conntrack is an LRU: both sides must stay far from eviction,
		 * whose order differs between two maps */
		assert_int_equal(moat_dp_ct_flush(A.f->dp), 0);
		assert_int_equal(moat_dp_ct_flush(B.f->dp), 0);
		new_policy_set();
		apply(NPACKETS / 3);
		same_tables();
		traffic("settled", NPACKETS);
	}
	fprintf(stderr,
		"differential: seed %u, %u policy sets, %lu packets, %lu dropped by the "
		"full program, %lu of them by the pre-filter, %lu generation updates\n",
		SEED, NSETS, N.packets, N.full_drops, N.pf_drops, N.phases);
	/* the run must have exercised the pre-filter's drops */
	assert_true(N.pf_drops > drops0);
}

/* Every single map write of an update leaves a pre-filter that drops only
 * what the compiler denies in both directions, in the generation the full
 * program enforces at that moment. */
static const char *probe_srcs[] = { "203.0.113.1",   "203.0.113.7",     "203.0.113.130",
				    "203.0.113.200", "198.51.100.70",   "192.0.2.33",
				    "2001:db8::1",   "2001:db8:1:2::9", "2001:db8:1::5" };

/* The full program's lookups over one view of B's compiler: the world
 * address's CIDR region by longest prefix over the region table, then the
 * destination pod's ingress and its egress back. */
struct lpm {
	const __u8 *addr;
	int family;
	__u32 best_len, region;
};

static int lpm4_cb(const void *key, const void *val, void *arg)
{
	const struct moat_net4_key *k = key;
	struct lpm *l = arg;
	__u32 a, p, m = k->prefixlen ? 0xffffffffu << (32 - k->prefixlen) : 0;

	memcpy(&a, l->addr, 4);
	memcpy(&p, &k->addr, 4);
	if (l->family == 4 && (ntohl(a) & m) == (ntohl(p) & m) &&
	    (!l->region || k->prefixlen > l->best_len)) {
		l->best_len = k->prefixlen;
		l->region = ((const struct moat_net_info *)val)->region;
	}
	return 0;
}

static int lpm6_cb(const void *key, const void *val, void *arg)
{
	const struct moat_net6_key *k = key;
	struct lpm *l = arg;
	bool in = l->family == 6;

	for (__u32 i = 0; in && i < k->prefixlen; i++)
		in = ((l->addr[i / 8] ^ k->addr[i / 8]) & (0x80 >> (i % 8))) == 0;
	if (in && (!l->region || k->prefixlen > l->best_len)) {
		l->best_len = k->prefixlen;
		l->region = ((const struct moat_net_info *)val)->region;
	}
	return 0;
}

static int view_verdicts(bool next, const struct desc *x, int *in, int *out)
{
	struct moat_decide_peer peer = { .identity = MOAT_ID_WORLD, .cls = MOAT_CLASS_WORLD };
	struct moat_explain_side s;
	__u8 sa[16] = { 0 }, da[16] = { 0 };
	__u32 dst_id;
	const char *pod;
	struct lpm l;
	int af = is6(x->s) ? AF_INET6 : AF_INET;

	inet_pton(af, x->s, sa);
	inet_pton(af, x->d, da);
	peer.family = af == AF_INET6 ? 6 : 4;
	l = (struct lpm){ .addr = sa, .family = peer.family };
	moat_compiler_table(B.c, next, peer.family == 4 ? MOAT_T_NET4 : MOAT_T_NET6,
			    peer.family == 4 ? lpm4_cb : lpm6_cb, &l);
	peer.region = l.region;
	{
		struct moat_addr a = { .family = peer.family };
		memcpy(a.a, da, 16);
		pod = moat_compiler_pod_by_ip(B.c, &a, &dst_id);
	}
	if (!pod)
		return -ENOENT;
	moat_compiler_decide(B.c, next, dst_id, MOAT_DIR_INGRESS, &peer, x->proto, x->dport, &s);
	*in = s.verdict;
	moat_compiler_decide(B.c, next, dst_id, MOAT_DIR_EGRESS, &peer, x->proto, x->sport, &s);
	*out = s.verdict;
	return 0;
}

static void probe_all(const char *stage, bool next)
{
	static const enum kind ks[] = { K_TCP, K_UDP, K_SCTP, K_ECHO, K_GRE };
	static const char *const dsts[] = { WEB4, API4, WEB6, API6 };

	for (size_t i = 0; i < NELEM(probe_srcs); i++)
		for (size_t d = 0; d < NELEM(dsts); d++) {
			if (is6(probe_srcs[i]) != is6(dsts[d]))
				continue;
			for (size_t k = 0; k < NELEM(ks); k++) {
				struct desc x;
				int in = 0, out = 0;
				build(&x, ks[k], probe_srcs[i], dsts[d], 443, 40000, 0);
				if (pf_run(&x.p) != XDP_DROP)
					continue;
				/* dropped: the new flow is denied, and so is the
				 * other direction, so no tracked flow can exist */
				assert_int_equal(view_verdicts(next, &x, &in, &out), 0);
				if (in != MOAT_VERDICT_DENY || out != MOAT_VERDICT_DENY)
					fail_msg("seed %u: %s: pre-filter drops %s, the enforced generation "
						 "says ingress %d, egress back %d",
						 SEED, stage, x.text, in, out);
				N.write_checks++;
			}
		}
}

/* Before the switch the full program enforces the committed generation;
 * after it, the one the flush produced (committed by then as well). */
static void probe_hook(void *arg)
{
	probe_all(arg, false);
}

static void test_every_write_is_safe(void **state)
{
	(void)state;
	srandom(SEED + 7);
	for (unsigned s = 0; s < NSETS / 2; s++) {
		struct moat_tx *ta, *tb;
		new_policy_set();
		ta = flush_side(&A);
		tb = flush_side(&B);
		assert_int_equal(moat_pfc_build(PFC, B.c, true), 0);
		/* before the switch: the compiler's committed view is the old
		 * generation, which the full program still enforces */
		moat_pf_set_write_hook(PF, probe_hook, (void *)"before the switch");
		assert_int_equal(moat_pfc_apply_before(PFC, PF), 0);
		moat_pf_set_write_hook(PF, NULL, NULL);
		commit_side(&A, ta);
		commit_side(&B, tb);
		probe_all("at the switch", false);
		moat_pf_set_write_hook(PF, probe_hook, (void *)"after the switch");
		assert_int_equal(moat_pfc_apply_after(PFC, PF), 0);
		moat_pf_set_write_hook(PF, NULL, NULL);
	}
	fprintf(stderr, "every write: %lu pre-filter drops checked against the compiler\n", N.write_checks);
	assert_true(N.write_checks > 0);
}

/* A failed write leaves a pre-filter that passes everything, and the next
 * update rewrites it whole. */
static void test_failed_write_disables(void **state)
{
	struct moat_pfc_stats st;
	struct desc x;

	(void)state;
	for (int i = 0; i < nkeys; i++) {
		delete (keys[i]);
		free(keys[i]);
	}
	nkeys = 0;
	load("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
	     "metadata: {name: none, namespace: a}\nspec:\n  podSelector: {}\n"
	     "  policyTypes: [Ingress, Egress]\n");
	keys[nkeys++] = xstrdup("NetworkPolicy/a/none");
	load("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
	     "metadata: {name: x}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n"
	     "  egress: [{action: Deny, to: [{networks: [203.0.113.0/24, 198.51.100.0/24]}]}]\n");
	keys[nkeys++] = xstrdup("AdminNetworkPolicy/x");
	moat_pf_fail_after(PF, 3, false);
	{
		struct moat_tx *ta = flush_side(&A), *tb = flush_side(&B);
		int rc;
		assert_int_equal(moat_pfc_build(PFC, B.c, true), 0);
		rc = moat_pfc_apply_before(PFC, PF);
		if (!rc)
			rc = moat_pfc_apply_after(PFC, PF);
		assert_int_not_equal(rc, 0);
		commit_side(&A, ta);
		commit_side(&B, tb);
	}
	moat_pfc_get_stats(PFC, &st);
	assert_true(st.disabled);
	build(&x, K_TCP, "203.0.113.1", WEB4, 443, 40000, 0);
	assert_int_equal(pf_run(&x.p), XDP_PASS);
	check(&x, "disabled");
	assert_false(st.stuck);
	apply(0);
	moat_pfc_get_stats(PFC, &st);
	assert_false(st.disabled);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
	check(&x, "rewritten");
	/* a device that takes no write at all: the caller is told to detach */
	load("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
	     "metadata: {name: x}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n"
	     "  egress: [{action: Deny, to: [{networks: [203.0.113.0/24]}]}]\n");
	moat_pf_fail_after(PF, 0, true);
	{
		struct moat_tx *ta = flush_side(&A), *tb = flush_side(&B);
		assert_int_equal(moat_pfc_build(PFC, B.c, true), 0);
		assert_int_not_equal(moat_pfc_apply_before(PFC, PF), 0);
		commit_side(&A, ta);
		commit_side(&B, tb);
	}
	moat_pfc_get_stats(PFC, &st);
	assert_true(st.disabled);
	assert_true(st.stuck);
	moat_pf_fail_off(PF);
	apply(0);
	moat_pfc_get_stats(PFC, &st);
	assert_false(st.stuck);
	assert_int_equal(pf_run(&x.p), XDP_DROP);
	check(&x, "rewritten");
}

/* moatd's sequence through the manager (hostd/pfmgr.c): a pre-filter taken
 * over with the live generation, kept in step around each switch, its
 * settings followed, its drops sampled, all of it in the status. */
static void pfmgr_generation(struct moat_pfmgr *m)
{
	struct moat_tx *ta = flush_side(&A), *tb = flush_side(&B);

	moat_pfmgr_before(m, B.c);
	commit_side(&A, ta);
	commit_side(&B, tb);
	moat_pfmgr_after(m, B.f->dp);
}

static void test_manager(void **state)
{
	struct moat_pfmgr_opts o = { .enforce = true, .revoke = true, .sample_shift = 0 };
	struct moat_pfmgr *m;
	struct moat_pf *pf;
	struct desc x;
	char err[256];
	json_t *st, *t;

	(void)state;
	for (int i = 0; i < nkeys; i++) {
		delete (keys[i]);
		free(keys[i]);
	}
	nkeys = 0;
	apply(0);
	assert_int_equal(moat_pfmgr_new(&o, &m), 0);
	st = moat_pfmgr_status(m);
	assert_false(json_is_true(json_object_get(st, "active")));
	json_decref(st);
	assert_int_equal(moat_pf_open(NULL, &pf, err, sizeof(err)), 0);
	assert_int_equal(moat_pfmgr_take(m, pf, "uplink0", B.c, err, sizeof(err)), 0);
	assert_true(moat_pfmgr_active(m));

	/* nothing to place yet */
	build(&x, K_TCP, "203.0.113.1", WEB4, 443, 40000, 0);
	x.hook = MOAT_HOOK_UPLINK;
	{
		LIBBPF_OPTS(bpf_test_run_opts, ro);
		ro.data_in = x.p.data;
		ro.data_size_in = (__u32)x.p.len;
		assert_int_equal(bpf_prog_test_run_opts(moat_pf_prog_fd(pf), &ro), 0);
		assert_int_equal(ro.retval, XDP_PASS);
	}
	/* a blocklist both ways arrives as a new generation */
	load("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
	     "metadata: {name: not-bad, namespace: a}\nspec:\n  podSelector: {}\n"
	     "  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: [203.0.113.0/24]}}]}]\n---\n"
	     "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
	     "metadata: {name: no-bad}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n"
	     "  egress: [{action: Deny, to: [{networks: [203.0.113.0/24]}]}]\n");
	keys[nkeys++] = xstrdup("NetworkPolicy/a/not-bad");
	keys[nkeys++] = xstrdup("AdminNetworkPolicy/no-bad");
	pfmgr_generation(m);
	for (int i = 0; i < 3; i++) {
		LIBBPF_OPTS(bpf_test_run_opts, ro);
		ro.data_in = x.p.data;
		ro.data_size_in = (__u32)x.p.len;
		assert_int_equal(bpf_prog_test_run_opts(moat_pf_prog_fd(pf), &ro), 0);
		assert_int_equal(ro.retval, XDP_DROP);
	}
	moat_pfmgr_poll(m);
	st = moat_pfmgr_status(m);
	assert_true(json_is_true(json_object_get(st, "active")));
	assert_string_equal(json_string_value(json_object_get(st, "interface")), "uplink0");
	t = json_object_get(st, "tables");
	assert_int_equal(json_integer_value(json_object_get(t, "pairs")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "counters"), "dropped")), 3);
	assert_int_equal(json_array_size(json_object_get(st, "pairs")), 1);
	assert_string_equal(
		json_string_value(json_object_get(json_array_get(json_object_get(st, "pairs"), 0), "source")),
		"203.0.113.0/24");
	/* every drop sampled (shift 0): three events read from the perf buffer */
	assert_int_equal(json_array_size(json_object_get(st, "samples")), 3);
	assert_string_equal(
		json_string_value(json_object_get(json_array_get(json_object_get(st, "samples"), 0), "src")),
		"203.0.113.1");
	json_decref(st);

	/* observe-only: counted, passed */
	o.enforce = false;
	moat_pfmgr_configure(m, &o, B.c);
	{
		LIBBPF_OPTS(bpf_test_run_opts, ro);
		ro.data_in = x.p.data;
		ro.data_size_in = (__u32)x.p.len;
		assert_int_equal(bpf_prog_test_run_opts(moat_pf_prog_fd(pf), &ro), 0);
		assert_int_equal(ro.retval, XDP_PASS);
	}
	/* --no-revoke: nothing may be placed */
	o.enforce = true;
	o.revoke = false;
	moat_pfmgr_configure(m, &o, B.c);
	st = moat_pfmgr_status(m);
	t = json_object_get(st, "tables");
	assert_int_equal(json_integer_value(json_object_get(t, "pairs")), 0);
	assert_non_null(strstr(json_string_value(json_object_get(t, "why_empty")), "no-revoke"));
	json_decref(st);
	o.revoke = true;
	moat_pfmgr_configure(m, &o, B.c);
	/* the policy goes: so do the pairs, in step with the generation */
	delete ("AdminNetworkPolicy/no-bad");
	free(keys[--nkeys]);
	pfmgr_generation(m);
	{
		LIBBPF_OPTS(bpf_test_run_opts, ro);
		ro.data_in = x.p.data;
		ro.data_size_in = (__u32)x.p.len;
		assert_int_equal(bpf_prog_test_run_opts(moat_pf_prog_fd(pf), &ro), 0);
		assert_int_equal(ro.retval, XDP_PASS);
	}
	moat_pfmgr_drop(m, "interface gone");
	assert_false(moat_pfmgr_active(m));
	st = moat_pfmgr_status(m);
	assert_string_equal(json_string_value(json_object_get(st, "why")), "interface gone");
	json_decref(st);
	moat_pfmgr_free(m);
}

int main(void)
{
	const struct CMUnitTest crafted[] = {
		cmocka_unit_test(test_blocklist_both_ways),
		cmocka_unit_test(test_one_way_deny_is_not_offloaded),
		cmocka_unit_test(test_partial_ports),
		cmocka_unit_test(test_cluster_prefixes_stay_native),
		cmocka_unit_test(test_cost),
		cmocka_unit_test(test_budget_and_scale),
		cmocka_unit_test(test_observe_only),
		cmocka_unit_test(test_failed_write_disables),
		cmocka_unit_test(test_manager),
	};
	const struct CMUnitTest random_sets[] = {
		cmocka_unit_test(test_random_policy_sets),
		cmocka_unit_test(test_every_write_is_safe),
	};
	const char *const veth[2] = { "pfd-a", "pfd-b" };
	int ifindex[2], err, failed = 0;
	const char *e;

	if (geteuid() != 0) {
		fprintf(stderr, "skip: needs root (BPF, network namespaces)\n");
		return 77;
	}
	if ((e = getenv("PF_SEED")))
		SEED = (unsigned)strtoul(e, NULL, 0);
	if ((e = getenv("PF_SETS")))
		NSETS = (unsigned)strtoul(e, NULL, 0);
	if ((e = getenv("PF_PACKETS")))
		NPACKETS = (unsigned)strtoul(e, NULL, 0);
	err = fix_private_netns(veth, ifindex);
	if (err) {
		fprintf(stderr, "skip: no private network namespace: %s\n", strerror(-err));
		return 77;
	}
	IF_WEB = ifindex[0];
	IF_API = ifindex[1];
	if ((err = fix_open(&A.f)) || (err = fix_open(&B.f))) {
		fprintf(stderr, "skip: cannot load the datapath: %s\n", strerror(-err));
		return 77;
	}
	failed += cmocka_run_group_tests_name("crafted", crafted, group_setup, group_teardown);
	failed += cmocka_run_group_tests_name("random", random_sets, group_setup, group_teardown);
	fix_close(A.f);
	fix_close(B.f);
	return failed ? 1 : 0;
}
