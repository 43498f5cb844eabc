// SPDX-License-Identifier: Apache-2.0
/* The XDP enforcer under BPF_PROG_TEST_RUN: parser, policy decision,
 * conntrack, fragments, counters and the generation switch.
 *
 * One private datapath is loaded for the whole binary; every test starts
 * from fix_reset() and the topology below, then asserts the XDP action,
 * every global counter (expect_stats: the listed ones exact, all others
 * zero), every per-rule counter (expect_rules, same) and the conntrack
 * entries it expects.  Needs root and BPF: exits 77 (skip) otherwise. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <cmocka.h>
#include <bpf/bpf.h>

#include "../lib/pkt.h"
#include "../lib/dpfix.h"

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

/* ---- topology -------------------------------------------------------------
 * Pods A and B run on this node behind the veths IF_A and IF_B; C is a pod
 * on another node.  NODE is this node, RNODE another one, VIP a Service
 * ClusterIP.  WORLD addresses are not in the ipcache. */
#define ID_NODE  20u
#define ID_RNODE 21u
#define ID_VIP   30u
#define ID_A     100u
#define ID_B     101u
#define ID_C     102u

#define A4     "10.0.0.1"
#define A6     "fd00::1"
#define B4     "10.0.0.2"
#define B6     "fd00::2"
#define C4     "10.0.1.3"
#define C6     "fd00:1::3"
#define NODE4  "192.168.0.10"
#define RNODE4 "192.168.0.11"
#define VIP4   "10.96.0.10"
#define VIP6   "fd00:96::10"
#define WORLD4 "8.8.8.8"
#define WORLD6 "2001:4860::8888"

/* Rule references (MOAT_RULE_FIRST_DYN and up). */
enum {
	R_ISO_A_IN = 16, /* NetworkPolicy isolating A's ingress */
	R_ISO_A_EG,      /* ... A's egress */
	R_ISO_B_IN,      /* ... B's ingress */
	R_1 = 32,
	R_2,
	R_3,
	R_4,
	R_5,
	R_6,
	R_7,
	R_8,
};

static struct dpfix *F;
static int IF_A, IF_B;
/* an interface past the endpoint array (MOAT_EP_ARRAY_MAX): its endpoint
 * lives in the hash */
#define IF_HIGH 40000 /* (as created in main) */
#define IF_LO   1

#define SYN PKT_TCP_SYN
#define ACK PKT_TCP_ACK
#define FIN PKT_TCP_FIN
#define RST PKT_TCP_RST

static int setup(void **state)
{
	(void)state;
	if (fix_reset(F))
		return -1;
	if (fix_pod(F, ID_A, A4, A6, true) || fix_pod(F, ID_B, B4, B6, true) ||
	    fix_pod(F, ID_C, C4, C6, false) ||
	    fix_ip(F, NODE4, ID_NODE, MOAT_CLASS_NODE, MOAT_IP_F_LOCAL, 0) ||
	    fix_ip(F, RNODE4, ID_RNODE, MOAT_CLASS_NODE, 0, 0) ||
	    fix_ip(F, VIP4, ID_VIP, MOAT_CLASS_VIP, 0, 0) || fix_ip(F, VIP6, ID_VIP, MOAT_CLASS_VIP, 0, 0) ||
	    fix_endpoint(F, IF_A, ID_A, A4, A6) || fix_endpoint(F, IF_B, ID_B, B4, B6))
		return -1;
	return 0;
}

/* ---- assertions -------------------------------------------------------------- */
static const char *stat_name(__u32 i)
{
	static const char *const drops[MOAT_DROP_MAX] = {
		"NONE",          "POLICY",    "TRUNC_ETH",    "TRUNC_VLAN",   "VLAN_DEPTH", "TRUNC_IP4",
		"BAD_IP4_HDR",   "TRUNC_IP6", "TRUNC_EXTHDR", "EXTHDR_DEPTH", "TRUNC_L4",   "BAD_TCP_HDR",
		"FRAG_NO_FIRST", "SPOOFED",   "NO_ENDPOINT",  "CT_REVOKED",   "MAP_ERROR",
	};
	static const char *const verdicts[4] = { "NONE", "ALLOW", "DENY", "AUDIT" };
	static const char *const ct[] = {
		"CT_NEW",     "CT_ESTABLISHED", "CT_REPLY", "CT_REVALIDATED", "CT_REVOKED", "NOT_IP",
		"LINK_LOCAL", "FRAG_LATER",     "RELATED",  "DEFERRED",       "NOT_OURS",
	};
	static char buf[32];

	if (i < 4)
		snprintf(buf, sizeof(buf), "VERDICT(%s)", verdicts[i]);
	else if (i < MOAT_STAT_CT_NEW)
		snprintf(buf, sizeof(buf), "DROP(%s)", drops[i - 4]);
	else if (i - MOAT_STAT_CT_NEW < sizeof(ct) / sizeof(ct[0]))
		snprintf(buf, sizeof(buf), "%s", ct[i - MOAT_STAT_CT_NEW]);
	else
		snprintf(buf, sizeof(buf), "stat %u", i);
	return buf;
}

#define LIST_END          UINT64_MAX
/* (index, packets) pairs. */
#define S(idx, n)         (__u64)(idx), (__u64)(n)
#define expect_stats(...) expect_stats_at(__FILE__, __LINE__, (const __u64[]){ __VA_ARGS__, LIST_END })
#define expect_no_stats() expect_stats_at(__FILE__, __LINE__, (const __u64[]){ LIST_END })

static void expect_stats_at(const char *file, int line, const __u64 *pairs)
{
	__u64 want[MOAT_STAT_MAX] = { 0 }, got[MOAT_STAT_MAX];
	bool bad = false;

	for (; pairs[0] != LIST_END; pairs += 2)
		want[pairs[0]] = pairs[1];
	if (fix_stats(F, got)) {
		print_error("cannot read counters\n");
		_fail(file, line);
	}
	for (__u32 i = 0; i < MOAT_STAT_MAX; i++) {
		if (got[i] != want[i]) {
			print_error("counter %s: %llu packets, expected %llu\n", stat_name(i),
				    (unsigned long long)got[i], (unsigned long long)want[i]);
			bad = true;
		}
	}
	if (bad)
		_fail(file, line);
}

/* (rule, packets) pairs; every other rule counter must be zero. */
#define expect_rules(...) expect_rules_at(__FILE__, __LINE__, (const __u64[]){ __VA_ARGS__, LIST_END })
#define expect_no_rules() expect_rules_at(__FILE__, __LINE__, (const __u64[]){ LIST_END })

static void expect_rules_at(const char *file, int line, const __u64 *pairs)
{
	__u32 counted[FIX_MAX_RULES];
	bool bad = false;
	int n = fix_rules_counted(F, counted, FIX_MAX_RULES);

	if (n < 0) {
		print_error("cannot read rule counters\n");
		_fail(file, line);
	}
	for (const __u64 *p = pairs; p[0] != LIST_END; p += 2) {
		__u64 got = fix_rule_packets(F, p[0]);
		if (got != p[1]) {
			print_error("rule %llu: %llu packets, expected %llu\n", (unsigned long long)p[0],
				    (unsigned long long)got, (unsigned long long)p[1]);
			bad = true;
		}
	}
	for (int i = 0; i < n; i++) {
		bool listed = false;
		for (const __u64 *p = pairs; p[0] != LIST_END; p += 2)
			listed |= p[0] == counted[i];
		if (!listed) {
			print_error("rule %u counted %llu packets, expected none\n", counted[i],
				    (unsigned long long)fix_rule_packets(F, counted[i]));
			bad = true;
		}
	}
	if (bad)
		_fail(file, line);
}

static const char *action_name(int a)
{
	static char buf[32];

	switch (a) {
	case XDP_ABORTED:
		return "XDP_ABORTED";
	case XDP_DROP:
		return "XDP_DROP";
	case XDP_PASS:
		return "XDP_PASS";
	case XDP_TX:
		return "XDP_TX";
	case XDP_REDIRECT:
		return "XDP_REDIRECT";
	default:
		snprintf(buf, sizeof(buf), "%d (%s)", a, a < 0 ? strerror(-a) : "?");
		return buf;
	}
}

/* Runs a packet and checks the XDP action; dumps the packet on failure. */
#define expect_action(run, pktp, want) expect_action_at(__FILE__, __LINE__, #run, (run), (pktp), (want))

static void expect_action_at(const char *file, int line, const char *what, int got, const struct pkt *p,
			     int want)
{
	if (got == want)
		return;
	print_error("%s: %s, expected ", what, action_name(got));
	print_error("%s\n", action_name(want));
	if (p)
		pkt_dump(stderr, p);
	_fail(file, line);
}

#define PASS                   XDP_PASS
#define DROP                   XDP_DROP
#define from_a(p)              fix_from_pod(F, IF_A, p)
#define from_b(p)              fix_from_pod(F, IF_B, p)
#define to_pod(p)              fix_to_pod(F, p)
#define uplink(p)              fix_uplink(F, p)
#define expect_from_a(p, want) expect_action(from_a(p), p, want)
#define expect_from_b(p, want) expect_action(from_b(p), p, want)
#define expect_to_pod(p, want) expect_action(to_pod(p), p, want)
#define expect_uplink(p, want) expect_action(uplink(p), p, want)

static struct moat_ct_entry ct_entry(__u8 proto, const char *s, __u16 sport, const char *d, __u16 dport)
{
	struct moat_ct_entry e;
	int err = fix_ct_get(F, proto, s, sport, d, dport, &e);

	if (err) {
		print_error("no conntrack entry %s:%u -> %s:%u proto %u (%d)\n", s, sport, d, dport, proto,
			    err);
		fail();
	}
	return e;
}

static bool ct_exists(__u8 proto, const char *s, __u16 sport, const char *d, __u16 dport)
{
	struct moat_ct_entry e;

	return fix_ct_get(F, proto, s, sport, d, dport, &e) == 0;
}

/* ---- packets ---------------------------------------------------------------- */
static bool is6(const char *a)
{
	return strchr(a, ':') != NULL;
}

static void eth_ip(struct pkt *p, const char *s, const char *d)
{
	pkt_init(p);
	pkt_eth(p, NULL, NULL);
	if (is6(s))
		pkt_ip6(p, pkt_a6(s), pkt_a6(d));
	else
		pkt_ip4(p, pkt_a4(s), pkt_a4(d));
}

static struct pkt *tcp(struct pkt *p, const char *s, __u16 sport, const char *d, __u16 dport, __u8 flags)
{
	eth_ip(p, s, d);
	pkt_tcp(p, sport, dport, flags);
	pkt_finish(p);
	return p;
}

static struct pkt *udp(struct pkt *p, const char *s, __u16 sport, const char *d, __u16 dport)
{
	eth_ip(p, s, d);
	pkt_udp(p, sport, dport);
	pkt_payload(p, "0123456789abcdef", 16);
	pkt_finish(p);
	return p;
}

static struct pkt *sctp_init(struct pkt *p, const char *s, __u16 sport, const char *d, __u16 dport)
{
	eth_ip(p, s, d);
	pkt_sctp_init(p, sport, dport, 0x01020304);
	pkt_finish(p);
	return p;
}

/* ICMP / ICMPv6 echo request or reply. */
static struct pkt *echo(struct pkt *p, const char *s, const char *d, __u16 id, bool reply)
{
	eth_ip(p, s, d);
	if (is6(s))
		pkt_icmp6_echo(p, reply ? 129 : 128, id, 1);
	else
		pkt_icmp4_echo(p, reply ? 0 : 8, id, 1);
	pkt_payload(p, "ping", 4);
	pkt_finish(p);
	return p;
}

/* Destination/port unreachable from s to d about the UDP packet
 * in_s:in_sport -> in_d:in_dport. */
static struct pkt *udp_unreachable(struct pkt *p, const char *s, const char *d, const char *in_s,
				   __u16 in_sport, const char *in_d, __u16 in_dport)
{
	eth_ip(p, s, d);
	if (is6(s)) {
		pkt_icmp6(p, 1, 4); /* destination unreachable, port unreachable */
		pkt_ip6(p, pkt_a6(in_s), pkt_a6(in_d));
	} else {
		pkt_icmp4(p, 3, 3);
		pkt_ip4(p, pkt_a4(in_s), pkt_a4(in_d));
	}
	pkt_udp(p, in_sport, in_dport);
	pkt_payload(p, "0123456789abcdef", 16);
	pkt_finish(p);
	return p;
}

static struct pkt *udp_frag(struct pkt *p, const char *s, __u16 sport, const char *d, __u16 dport, __u32 id,
			    bool first);

/* ---- policy shorthands -------------------------------------------------------- */
/* B takes on ingress only what a NetworkPolicy rule allows. */
static void isolate_b_ingress(void)
{
	assert_int_equal(
		fix_subject(F, ID_B, MOAT_DIR_INGRESS, MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED, R_ISO_B_IN), 0);
}

static void isolate_a_ingress(void)
{
	assert_int_equal(
		fix_subject(F, ID_A, MOAT_DIR_INGRESS, MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED, R_ISO_A_IN), 0);
}

static void allow_in(__u32 subject, __u32 peer, __u8 proto, __u16 port, __u32 rule)
{
	assert_int_equal(fix_rule(F, subject, MOAT_DIR_INGRESS, peer, proto, port, 0, fix_pv_netpol(rule)),
			 0);
}

static __u32 live_generation(void)
{
	return moat_dp_generation(F->dp);
}

/* ============================================================================
 * Parser: every branch, from pod A with no policy at all (so a parsed
 * packet is a new, default-allowed flow).
 * ========================================================================== */

/* A parsed, default-allowed new flow: the counters it leaves. */
#define NEW_FLOWS(n)         S(MOAT_STAT_VERDICT(MOAT_VERDICT_ALLOW), n), S(MOAT_STAT_CT_NEW, n)
/* A packet the parser dropped. */
#define MALFORMED(reason, n) S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), n), S(MOAT_STAT_DROP(reason), n)

static void test_parse_arp_is_not_ip(void **state)
{
	struct pkt p;

	(void)state;
	pkt_init(&p);
	pkt_eth(&p, NULL, NULL);
	pkt_arp(&p, 1, pkt_a4(A4), pkt_a4(B4));
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(p.len, 42);
	expect_from_a(&p, PASS);
	expect_to_pod(&p, PASS);
	expect_uplink(&p, PASS);
	expect_stats(S(MOAT_STAT_NOT_IP, 3));
	assert_int_equal(fix_stat_bytes(F, MOAT_STAT_NOT_IP), 3 * 42);
	expect_no_rules();
	assert_int_equal(fix_ct_count(F), 0);
}

static void test_parse_ethernet_truncated(void **state)
{
	static const size_t lens[] = { 0, 1, 6, 12, 13 };
	struct pkt p;

	(void)state;
	udp(&p, A4, 1000, B4, 53);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		expect_action(fix_run_data(F, MOAT_HOOK_FROM_POD, IF_A, p.data, lens[i]), NULL, DROP);
	expect_stats(MALFORMED(MOAT_DROP_TRUNC_ETH, 5));
	expect_rules(S(MOAT_RULE_MALFORMED, 5));
	/* exactly an Ethernet header announcing IPv4 */
	expect_action(fix_run_data(F, MOAT_HOOK_FROM_POD, IF_A, p.data, ETH_HLEN), NULL, DROP);
	assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_TRUNC_IP4)), 1);
	assert_int_equal(fix_ct_count(F), 0);
}

static struct pkt *vlan_udp(struct pkt *p, int tags, __u16 sport)
{
	static const __u16 tpid[] = { 0x88a8, 0x8100, 0x8100, 0x8100 };

	pkt_init(p);
	pkt_eth(p, NULL, NULL);
	for (int i = 0; i < tags; i++)
		pkt_vlan(p, tpid[i], 100 + i);
	pkt_ip4(p, pkt_a4(A4), pkt_a4(B4));
	pkt_udp(p, sport, 53);
	pkt_payload(p, "abcd", 4);
	pkt_finish(p);
	return p;
}

static void test_parse_vlan_one_and_two_tags(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(vlan_udp(&p, 1, 1001), PASS);
	expect_from_a(vlan_udp(&p, 2, 1002), PASS);
	expect_stats(NEW_FLOWS(2));
	/* the ports were found behind the tags */
	assert_true(ct_exists(IPPROTO_UDP, A4, 1001, B4, 53));
	assert_true(ct_exists(IPPROTO_UDP, A4, 1002, B4, 53));
	assert_int_equal(fix_ct_count(F), 2);
}

static void test_parse_vlan_three_tags_dropped(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(vlan_udp(&p, 3, 1003), DROP);
	expect_from_a(vlan_udp(&p, 4, 1004), DROP);
	expect_stats(MALFORMED(MOAT_DROP_VLAN_DEPTH, 2));
	expect_rules(S(MOAT_RULE_MALFORMED, 2));
	assert_int_equal(fix_ct_count(F), 0);
}

static void test_parse_vlan_truncated(void **state)
{
	struct pkt p;

	(void)state;
	/* one tag, cut inside it */
	vlan_udp(&p, 1, 1001);
	pkt_truncate(&p, ETH_HLEN + 3);
	expect_from_a(&p, DROP);
	/* two tags, cut inside the second */
	vlan_udp(&p, 2, 1002);
	pkt_truncate(&p, ETH_HLEN + 4 + 2);
	expect_from_a(&p, DROP);
	expect_stats(MALFORMED(MOAT_DROP_TRUNC_VLAN, 2));
}

static void test_parse_ip4_options(void **state)
{
	static const __u8 router_alert[4] = { 0x94, 0x04, 0x00, 0x00 };
	__u8 nops[40];
	struct pkt p;

	(void)state;
	memset(nops, 1, sizeof(nops));
	eth_ip(&p, A4, B4);
	pkt_ip4_options(&p, router_alert, sizeof(router_alert));
	pkt_udp(&p, 2001, 53);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_ip4_hdr(&p)->ihl, 6);
	expect_from_a(&p, PASS);

	eth_ip(&p, A4, B4);
	pkt_ip4_options(&p, nops, sizeof(nops));
	pkt_tcp(&p, 2002, 80, SYN);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_ip4_hdr(&p)->ihl, 15);
	expect_from_a(&p, PASS);

	expect_stats(NEW_FLOWS(2));
	assert_true(ct_exists(IPPROTO_UDP, A4, 2001, B4, 53));
	assert_true(ct_exists(IPPROTO_TCP, A4, 2002, B4, 80));
}

static void test_parse_ip4_bad_ihl_and_version(void **state)
{
	struct pkt p;

	(void)state;
	udp(&p, A4, 1000, B4, 53);
	pkt_ip4_hdr(&p)->ihl = 4;
	expect_from_a(&p, DROP);
	udp(&p, A4, 1000, B4, 53);
	pkt_ip4_hdr(&p)->ihl = 0;
	expect_from_a(&p, DROP);
	udp(&p, A4, 1000, B4, 53);
	pkt_ip4_hdr(&p)->version = 5;
	expect_from_a(&p, DROP);
	expect_stats(MALFORMED(MOAT_DROP_BAD_IP4_HDR, 3));
	expect_rules(S(MOAT_RULE_MALFORMED, 3));
}

static void test_parse_ip4_truncated_header(void **state)
{
	struct pkt p;

	(void)state;
	/* the fixed header cut short */
	udp(&p, A4, 1000, B4, 53);
	pkt_truncate(&p, ETH_HLEN + 19);
	expect_from_a(&p, DROP);
	/* options announced beyond the frame: IHL 15 in a 28-byte packet */
	eth_ip(&p, A4, B4);
	pkt_udp(&p, 1000, 53);
	pkt_finish(&p);
	pkt_ip4_hdr(&p)->ihl = 15;
	expect_from_a(&p, DROP);
	expect_stats(MALFORMED(MOAT_DROP_TRUNC_IP4, 2));
}

static void test_parse_ip4_total_length(void **state)
{
	struct pkt p;

	(void)state;
	/* longer than the frame: the frame was cut */
	udp(&p, A4, 1000, B4, 53);
	pkt_ip4_hdr(&p)->tot_len = htons(ntohs(pkt_ip4_hdr(&p)->tot_len) + 1);
	expect_from_a(&p, DROP);
	assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_TRUNC_IP4)), 1);

	/* shorter than the header */
	udp(&p, A4, 1000, B4, 53);
	pkt_ip4_hdr(&p)->tot_len = htons(19);
	expect_from_a(&p, DROP);
	eth_ip(&p, A4, B4);
	pkt_ip4_options(&p, "\x94\x04\x00\x00", 4);
	pkt_udp(&p, 1000, 53);
	pkt_finish(&p);
	pkt_ip4_hdr(&p)->tot_len = htons(20); /* < IHL 6 * 4 */
	expect_from_a(&p, DROP);
	assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_BAD_IP4_HDR)), 2);

	/* shorter than the frame: Ethernet padding, fine */
	udp(&p, A4, 1000, B4, 53);
	pkt_ip4_hdr(&p)->tot_len = htons(ntohs(pkt_ip4_hdr(&p)->tot_len) - 10);
	expect_from_a(&p, PASS);

	expect_stats(S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 3), S(MOAT_STAT_DROP(MOAT_DROP_TRUNC_IP4), 1),
		     S(MOAT_STAT_DROP(MOAT_DROP_BAD_IP4_HDR), 2), NEW_FLOWS(1));
}

static void test_parse_ip6_each_extension_header(void **state)
{
	static const struct {
		__u8 type;
		size_t len;
	} ext[] = {
		{ PKT_IP6_HOPOPTS, 8 }, { PKT_IP6_ROUTING, 24 }, { PKT_IP6_DSTOPTS, 16 },
		{ PKT_IP6_AH, 24 },     { PKT_IP6_FRAGMENT, 8 },
	};
	struct pkt p;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		eth_ip(&p, A6, B6);
		if (ext[i].type == PKT_IP6_FRAGMENT)
			pkt_ip6_frag(&p, 77, 0, false); /* atomic fragment */
		else
			pkt_ip6_ext(&p, ext[i].type, ext[i].len);
		pkt_udp(&p, 3000 + i, 53);
		pkt_payload(&p, "abcd", 4);
		assert_int_equal(pkt_finish(&p), 0);
		expect_from_a(&p, PASS);
		assert_true(ct_exists(IPPROTO_UDP, A6, 3000 + i, B6, 53));
	}
	/* all of them in one chain */
	eth_ip(&p, A6, B6);
	pkt_ip6_ext(&p, PKT_IP6_HOPOPTS, 8);
	pkt_ip6_ext(&p, PKT_IP6_DSTOPTS, 8);
	pkt_ip6_ext(&p, PKT_IP6_ROUTING, 24);
	pkt_ip6_frag(&p, 78, 0, false);
	pkt_ip6_ext(&p, PKT_IP6_AH, 16);
	pkt_ip6_ext(&p, PKT_IP6_DSTOPTS, 16);
	pkt_tcp(&p, 3100, 80, SYN);
	assert_int_equal(pkt_finish(&p), 0);
	expect_from_a(&p, PASS);
	assert_true(ct_exists(IPPROTO_TCP, A6, 3100, B6, 80));
	expect_stats(NEW_FLOWS(i + 1));
}

static struct pkt *ip6_ext_chain(struct pkt *p, int n, __u16 sport)
{
	eth_ip(p, A6, B6);
	for (int i = 0; i < n; i++)
		pkt_ip6_ext(p, PKT_IP6_DSTOPTS, 8);
	pkt_udp(p, sport, 53);
	pkt_finish(p);
	return p;
}

static void test_parse_ip6_extension_chain_limit(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(ip6_ext_chain(&p, 8, 4008), PASS);
	assert_true(ct_exists(IPPROTO_UDP, A6, 4008, B6, 53));
	expect_from_a(ip6_ext_chain(&p, 9, 4009), DROP);
	expect_from_a(ip6_ext_chain(&p, 20, 4020), DROP);
	expect_stats(NEW_FLOWS(1), MALFORMED(MOAT_DROP_EXTHDR_DEPTH, 2));
	expect_rules(S(MOAT_RULE_DEFAULT_ALLOW, 1), S(MOAT_RULE_MALFORMED, 2));
}

static void test_parse_ip6_extension_truncated(void **state)
{
	struct pkt p;
	int off;

	(void)state;
	/* a packet that ends inside its hop-by-hop header */
	eth_ip(&p, A6, B6);
	pkt_ip6_ext(&p, PKT_IP6_HOPOPTS, 16);
	pkt_udp(&p, 5000, 53);
	off = pkt_offset(&p, PKT_L_IP6_EXT, 0);
	pkt_truncate(&p, off + 4);
	pkt_finish(&p);
	expect_from_a(&p, DROP);
	/* a header that claims more than the packet holds */
	eth_ip(&p, A6, B6);
	pkt_ip6_ext(&p, PKT_IP6_HOPOPTS, 8);
	pkt_udp(&p, 5001, 53);
	pkt_finish(&p);
	((__u8 *)pkt_hdr(&p, PKT_L_IP6_EXT, 0))[1] = 7; /* 64 bytes */
	expect_from_a(&p, DROP);
	/* the same with another extension header after it */
	eth_ip(&p, A6, B6);
	pkt_ip6_ext(&p, PKT_IP6_HOPOPTS, 8);
	pkt_ip6_ext(&p, PKT_IP6_DSTOPTS, 8);
	pkt_udp(&p, 5002, 53);
	pkt_finish(&p);
	/* 24 bytes: the destination options header is looked for at the end */
	((__u8 *)pkt_hdr(&p, PKT_L_IP6_EXT, 0))[1] = 2;
	expect_from_a(&p, DROP);
	expect_stats(MALFORMED(MOAT_DROP_TRUNC_EXTHDR, 3));
	expect_rules(S(MOAT_RULE_MALFORMED, 3));
}

static void test_parse_ip6_truncated_header(void **state)
{
	struct pkt p;

	(void)state;
	udp(&p, A6, 1000, B6, 53);
	pkt_truncate(&p, ETH_HLEN + 39);
	expect_from_a(&p, DROP);
	/* payload length beyond the frame */
	udp(&p, A6, 1000, B6, 53);
	pkt_ip6_hdr(&p)->payload_len = htons(ntohs(pkt_ip6_hdr(&p)->payload_len) + 1);
	expect_from_a(&p, DROP);
	/* not version 6 behind an IPv6 EtherType */
	udp(&p, A6, 1000, B6, 53);
	pkt_ip6_hdr(&p)->version = 4;
	expect_from_a(&p, DROP);
	expect_stats(MALFORMED(MOAT_DROP_TRUNC_IP6, 3));
	/* payload length 0 (jumbogram) is not checked against the frame */
	udp(&p, A6, 1001, B6, 53);
	pkt_ip6_hdr(&p)->payload_len = 0;
	expect_from_a(&p, PASS);
	assert_true(ct_exists(IPPROTO_UDP, A6, 1001, B6, 53));
}

static void test_parse_tcp_options(void **state)
{
	static const __u8 syn_opts[] = {
		2, 4,  0x05, 0xb4,                   /* MSS 1460 */
		4, 2,                                /* SACK permitted */
		8, 10, 0,    0,    0, 1, 0, 0, 0, 0, /* timestamps */
		1, 3,  3,    7,                      /* NOP, window scale 7 */
	};
	__u8 nops[40];
	struct pkt p;

	(void)state;
	memset(nops, 1, sizeof(nops));
	eth_ip(&p, A4, B4);
	pkt_tcp(&p, 6000, 80, SYN);
	pkt_tcp_options(&p, syn_opts, sizeof(syn_opts));
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_tcp_hdr(&p)->doff, 10);
	expect_from_a(&p, PASS);
	eth_ip(&p, A6, B6);
	pkt_tcp(&p, 6001, 80, SYN);
	pkt_tcp_options(&p, nops, sizeof(nops));
	pkt_payload(&p, "x", 1);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_tcp_hdr(&p)->doff, 15);
	expect_from_a(&p, PASS);
	expect_stats(NEW_FLOWS(2));
	assert_true(ct_exists(IPPROTO_TCP, A4, 6000, B4, 80));
	assert_true(ct_exists(IPPROTO_TCP, A6, 6001, B6, 80));
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 6000, B4, 80).tcp_flags, SYN);
}

static void test_parse_tcp_bad_data_offset(void **state)
{
	struct pkt p;

	(void)state;
	tcp(&p, A4, 6000, B4, 80, SYN);
	pkt_tcp_hdr(&p)->doff = 4;
	expect_from_a(&p, DROP);
	tcp(&p, A4, 6000, B4, 80, SYN);
	pkt_tcp_hdr(&p)->doff = 0;
	expect_from_a(&p, DROP);
	/* options announced beyond the packet */
	tcp(&p, A4, 6000, B4, 80, SYN);
	pkt_tcp_hdr(&p)->doff = 15;
	expect_from_a(&p, DROP);
	/* options cut short (IP lengths consistent with the cut) */
	eth_ip(&p, A6, B6);
	pkt_tcp(&p, 6000, 80, SYN);
	pkt_tcp_options(&p, "\x02\x04\x05\xb4", 4);
	pkt_truncate(&p, p.len - 1);
	pkt_finish(&p);
	expect_from_a(&p, DROP);
	expect_stats(MALFORMED(MOAT_DROP_BAD_TCP_HDR, 4));
	expect_rules(S(MOAT_RULE_MALFORMED, 4));
	assert_int_equal(fix_ct_count(F), 0);
}

/* A packet whose L4 header is one byte short, with IP lengths that say so. */
static struct pkt *short_l4(struct pkt *p, const char *s, const char *d, __u8 proto)
{
	eth_ip(p, s, d);
	switch (proto) {
	case IPPROTO_TCP:
		pkt_tcp(p, 1, 2, SYN);
		break;
	case IPPROTO_UDP:
		pkt_udp(p, 1, 2);
		break;
	case IPPROTO_SCTP:
		pkt_sctp(p, 1, 2, 0);
		break;
	case IPPROTO_ICMP:
		pkt_icmp4_echo(p, 8, 1, 1);
		break;
	case IPPROTO_ICMPV6:
		pkt_icmp6_echo(p, 128, 1, 1);
		break;
	}
	pkt_truncate(p, p->len - 1);
	pkt_finish(p);
	return p;
}

static void test_parse_l4_truncated(void **state)
{
	static const __u8 protos4[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP };
	static const __u8 protos6[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMPV6 };
	struct pkt p;
	int n = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(protos4); i++) {
		expect_from_a(short_l4(&p, A4, B4, protos4[i]), DROP);
		expect_from_a(short_l4(&p, A6, B6, protos6[i]), DROP);
		n += 2;
		assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_TRUNC_L4)), n);
	}
	expect_stats(MALFORMED(MOAT_DROP_TRUNC_L4, 8));
	expect_rules(S(MOAT_RULE_MALFORMED, 8));
}

static void test_parse_sctp_init(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(sctp_init(&p, A4, 5000, B4, 6000), PASS);
	expect_from_a(sctp_init(&p, A6, 5000, B6, 6000), PASS);
	expect_stats(NEW_FLOWS(2));
	assert_true(ct_exists(IPPROTO_SCTP, A4, 5000, B4, 6000));
	assert_true(ct_exists(IPPROTO_SCTP, A6, 5000, B6, 6000));
}

static void test_parse_icmp_error_inner_packet(void **state)
{
	struct pkt p;
	int off;

	(void)state;
	/* inner IP header without the 8 bytes of its UDP header */
	eth_ip(&p, B4, A4);
	pkt_icmp4(&p, 3, 3);
	pkt_ip4(&p, pkt_a4(A4), pkt_a4(B4));
	pkt_udp(&p, 1000, 53);
	off = pkt_offset(&p, PKT_L_UDP, 0);
	pkt_truncate(&p, off + 3);
	pkt_finish(&p);
	expect_to_pod(&p, DROP);
	/* inner ICMP echo shorter than 8 bytes */
	eth_ip(&p, B4, A4);
	pkt_icmp4(&p, 11, 0);
	pkt_ip4(&p, pkt_a4(A4), pkt_a4(B4));
	pkt_icmp4_echo(&p, 8, 1, 1);
	pkt_truncate(&p, p.len - 4);
	pkt_finish(&p);
	expect_to_pod(&p, DROP);
	/* the inner IP header itself cut */
	eth_ip(&p, B4, A4);
	pkt_icmp4(&p, 3, 1);
	pkt_ip4(&p, pkt_a4(A4), pkt_a4(B4));
	off = pkt_offset(&p, PKT_L_IP4, 1);
	pkt_truncate(&p, off + 12);
	pkt_finish(&p);
	expect_to_pod(&p, DROP);
	/* ICMPv6 error: inner IPv6 header cut */
	eth_ip(&p, B6, A6);
	pkt_icmp6(&p, 1, 4);
	pkt_ip6(&p, pkt_a6(A6), pkt_a6(B6));
	pkt_truncate(&p, p.len - 1);
	pkt_finish(&p);
	expect_to_pod(&p, DROP);
	assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_TRUNC_L4)), 4);
	/* inner IHL below 5 */
	udp_unreachable(&p, B4, A4, A4, 1000, B4, 53);
	((struct iphdr *)pkt_hdr(&p, PKT_L_IP4, 1))->ihl = 4;
	expect_to_pod(&p, DROP);
	/* inner version not 4 */
	udp_unreachable(&p, B4, A4, A4, 1000, B4, 53);
	((struct iphdr *)pkt_hdr(&p, PKT_L_IP4, 1))->version = 6;
	expect_to_pod(&p, DROP);
	expect_stats(S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 6), S(MOAT_STAT_DROP(MOAT_DROP_TRUNC_L4), 4),
		     S(MOAT_STAT_DROP(MOAT_DROP_BAD_IP4_HDR), 2));
	expect_rules(S(MOAT_RULE_MALFORMED, 6));
}

static void test_parse_ndp_and_link_local_pass(void **state)
{
	struct pkt p;

	(void)state;
	/* neighbour solicitation, link-local to solicited-node multicast */
	eth_ip(&p, "fe80::1", "ff02::1:ff00:2");
	pkt_ip6_hdr(&p)->hop_limit = 255;
	pkt_icmp6_ns(&p, pkt_a6(B6));
	assert_int_equal(pkt_finish(&p), 0);
	expect_from_a(&p, PASS);
	expect_to_pod(&p, PASS);
	/* unicast neighbour unreachability detection between global addresses */
	eth_ip(&p, A6, B6);
	pkt_ip6_hdr(&p)->hop_limit = 255;
	pkt_icmp6_ns(&p, pkt_a6(B6));
	pkt_finish(&p);
	expect_from_a(&p, PASS);
	/* router advertisement */
	eth_ip(&p, "fe80::1", "ff02::1");
	pkt_ip6_hdr(&p)->hop_limit = 255;
	pkt_icmp6(&p, 134, 0);
	pkt_zeros(&p, 8);
	pkt_finish(&p);
	expect_to_pod(&p, PASS);
	/* link-local only traffic of any kind */
	udp(&p, "fe80::1", 546, "fe80::2", 547);
	expect_from_a(&p, PASS);
	udp(&p, "fe80::1", 5353, "ff02::fb", 5353);
	expect_from_a(&p, PASS);
	/* router solicitation (133) and redirect (137), global addresses */
	eth_ip(&p, A6, "ff02::2");
	pkt_ip6_hdr(&p)->hop_limit = 255;
	pkt_icmp6(&p, 133, 0);
	pkt_finish(&p);
	expect_from_a(&p, PASS);
	eth_ip(&p, B6, A6);
	pkt_ip6_hdr(&p)->hop_limit = 255;
	pkt_icmp6(&p, 137, 0);
	pkt_zeros(&p, 32);
	pkt_finish(&p);
	expect_to_pod(&p, PASS);
	expect_stats(S(MOAT_STAT_LINK_LOCAL, 8));
	expect_no_rules();
	assert_int_equal(fix_ct_count(F), 0);
	/* the neighbours of the ND range are ICMPv6 like any other */
	isolate_a_ingress();
	assert_int_equal(fix_commit(F, NULL), 0);
	/* ND types with a hop limit below 255 were forwarded: not ND, so they
	 * cannot carry anything past policy */
	eth_ip(&p, B6, A6);
	pkt_icmp6_ns(&p, pkt_a6(A6));
	pkt_finish(&p);
	expect_to_pod(&p, DROP);
	eth_ip(&p, B6, A6);
	pkt_icmp6(&p, 132, 0);
	pkt_finish(&p);
	expect_to_pod(&p, DROP);
	eth_ip(&p, B6, A6);
	pkt_icmp6(&p, 138, 0);
	pkt_finish(&p);
	expect_to_pod(&p, DROP);
	/* one ICMPv6 flow B -> A: the second and third drop from the deny cache */
	expect_stats(S(MOAT_STAT_LINK_LOCAL, 8), S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 3),
		     S(MOAT_STAT_DROP(MOAT_DROP_POLICY), 3), S(MOAT_STAT_DENY_CACHED, 2));
	/* link-local source to a global destination is not link-local traffic */
	udp(&p, "fe80::1", 5353, B6, 53);
	expect_from_a(&p, DROP);
	assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_SPOOFED)), 1);
}

/* Every cut of a TCP/IPv4 packet with options and payload, both as sent
 * that short (lengths describe the cut) and cut in transit. */
static void test_parse_truncation_sweep_tcp4(void **state)
{
	enum {
		OPT = 12,
		PAY = 10
	};
	const size_t ip = ETH_HLEN, l4 = ip + 20, opt = l4 + 20, pay = opt + OPT;
	__u64 want[MOAT_DROP_MAX] = { 0 }, passed = 0;
	struct pkt p;

	(void)state;
	for (size_t cut = 0; cut <= pay + PAY; cut++) {
		int reason, rc;

		eth_ip(&p, A4, B4);
		pkt_tcp(&p, 10000 + cut, 80, SYN);
		pkt_tcp_options(&p, "\x02\x04\x05\xb4\x01\x01\x04\x02\x01\x03\x03\x07", OPT);
		pkt_payload(&p, "0123456789", PAY);
		pkt_truncate(&p, cut);
		assert_int_equal(pkt_finish(&p), 0);
		reason = cut < ip  ? MOAT_DROP_TRUNC_ETH :
			 cut < l4  ? MOAT_DROP_TRUNC_IP4 :
			 cut < opt ? MOAT_DROP_TRUNC_L4 :
			 cut < pay ? MOAT_DROP_BAD_TCP_HDR :
				     0;
		rc = from_a(&p);
		if (rc != (reason ? DROP : PASS)) {
			print_error("cut at %zu: %s\n", cut, action_name(rc));
			pkt_dump(stderr, &p);
			fail();
		}
		if (reason)
			want[reason]++;
		else
			passed++;
	}
	for (size_t cut = 0; cut < pay + PAY; cut++) {
		eth_ip(&p, A4, B4);
		pkt_tcp(&p, 20000 + cut, 80, SYN);
		pkt_tcp_options(&p, "\x02\x04\x05\xb4\x01\x01\x04\x02\x01\x03\x03\x07", OPT);
		pkt_payload(&p, "0123456789", PAY);
		pkt_finish(&p);
		pkt_truncate(&p, cut);
		expect_from_a(&p, DROP);
		want[cut < ip ? MOAT_DROP_TRUNC_ETH : MOAT_DROP_TRUNC_IP4]++;
	}
	for (int r = 1; r < MOAT_DROP_MAX; r++)
		if (fix_stat(F, MOAT_STAT_DROP(r)) != want[r]) {
			print_error("%s: %llu, expected %llu\n", stat_name(MOAT_STAT_DROP(r)),
				    (unsigned long long)fix_stat(F, MOAT_STAT_DROP(r)),
				    (unsigned long long)want[r]);
			fail();
		}
	assert_int_equal(passed, PAY + 1);
	assert_int_equal(fix_stat(F, MOAT_STAT_CT_NEW), passed);
}

/* Every cut of UDP/IPv6 behind hop-by-hop (8) and destination options (16). */
static void test_parse_truncation_sweep_ip6_ext(void **state)
{
	const size_t ip = ETH_HLEN, hbh = ip + 40, dst = hbh + 8, l4 = dst + 16, pay = l4 + 8;
	__u64 want[MOAT_DROP_MAX] = { 0 }, passed = 0;
	struct pkt p;

	(void)state;
	for (size_t cut = 0; cut <= pay + 8; cut++) {
		int reason, rc;

		eth_ip(&p, A6, B6);
		pkt_ip6_ext(&p, PKT_IP6_HOPOPTS, 8);
		pkt_ip6_ext(&p, PKT_IP6_DSTOPTS, 16);
		pkt_udp(&p, 10000 + cut, 53);
		pkt_payload(&p, "01234567", 8);
		pkt_truncate(&p, cut);
		assert_int_equal(pkt_finish(&p), 0);
		reason = cut < ip  ? MOAT_DROP_TRUNC_ETH :
			 cut < hbh ? MOAT_DROP_TRUNC_IP6 :
			 cut < l4  ? MOAT_DROP_TRUNC_EXTHDR :
			 cut < pay ? MOAT_DROP_TRUNC_L4 :
				     0;
		rc = from_a(&p);
		if (rc != (reason ? DROP : PASS)) {
			print_error("cut at %zu: %s\n", cut, action_name(rc));
			pkt_dump(stderr, &p);
			fail();
		}
		if (reason)
			want[reason]++;
		else
			passed++;
	}
	for (size_t cut = 0; cut < pay + 8; cut++) {
		eth_ip(&p, A6, B6);
		pkt_ip6_ext(&p, PKT_IP6_HOPOPTS, 8);
		pkt_ip6_ext(&p, PKT_IP6_DSTOPTS, 16);
		pkt_udp(&p, 20000 + cut, 53);
		pkt_payload(&p, "01234567", 8);
		pkt_finish(&p);
		pkt_truncate(&p, cut);
		expect_from_a(&p, DROP);
		want[cut < ip ? MOAT_DROP_TRUNC_ETH : MOAT_DROP_TRUNC_IP6]++;
	}
	for (int r = 1; r < MOAT_DROP_MAX; r++)
		if (fix_stat(F, MOAT_STAT_DROP(r)) != want[r]) {
			print_error("%s: %llu, expected %llu\n", stat_name(MOAT_STAT_DROP(r)),
				    (unsigned long long)fix_stat(F, MOAT_STAT_DROP(r)),
				    (unsigned long long)want[r]);
			fail();
		}
	assert_int_equal(passed, 9);
	assert_int_equal(fix_stat(F, MOAT_STAT_CT_NEW), passed);
}

static void test_parse_other_l4_protocol(void **state)
{
	struct pkt p;

	(void)state;
	eth_ip(&p, A4, B4);
	pkt_next_proto(&p, 47); /* GRE: no ports */
	pkt_zeros(&p, 20);
	assert_int_equal(pkt_finish(&p), 0);
	expect_from_a(&p, PASS);
	expect_stats(NEW_FLOWS(1));
	assert_true(ct_exists(47, A4, 0, B4, 0));
}

/* ============================================================================
 * Policy decision.
 * ========================================================================== */
#define ALLOWED(n) S(MOAT_STAT_VERDICT(MOAT_VERDICT_ALLOW), n)
#define DENIED(n)  S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), n), S(MOAT_STAT_DROP(MOAT_DROP_POLICY), n)

static void test_policy_netpol_exact_peer_and_port(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	allow_in(ID_B, ID_A, IPPROTO_TCP, 80, R_1);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.ingress_rule, R_1);
	assert_int_equal(e.ingress_tier, MOAT_TIER_NETPOL);
	assert_int_equal(e.egress_rule, MOAT_RULE_DEFAULT_ALLOW);
	assert_int_equal(e.egress_tier, MOAT_TIER_DEFAULT);
	assert_int_equal(e.init_identity, ID_A);
	assert_int_equal(e.resp_identity, ID_B);
	assert_int_equal(e.flags, 0);
	assert_int_equal(e.packets, 1);
	assert_int_equal(e.bytes, p.len);
	assert_int_equal(e.generation, live_generation());
	/* another port, another protocol, no port at all */
	expect_from_a(tcp(&p, A4, 40001, B4, 81, SYN), DROP);
	expect_from_a(udp(&p, A4, 40002, B4, 80), DROP);
	expect_from_a(echo(&p, A4, B4, 7, false), DROP);
	/* another peer: C, arriving over the uplink */
	expect_uplink(tcp(&p, C4, 40003, B4, 80, SYN), DROP);
	expect_stats(ALLOWED(1), S(MOAT_STAT_CT_NEW, 1), DENIED(4));
	expect_rules(S(R_1, 1), S(R_ISO_B_IN, 4));
	assert_int_equal(fix_stat_bytes(F, MOAT_STAT_VERDICT(MOAT_VERDICT_ALLOW)), ETH_HLEN + 20 + 20);
	assert_int_equal(fix_rule_bytes(F, R_1), ETH_HLEN + 20 + 20);
	assert_int_equal(fix_ct_count(F), 1);
}

static void test_policy_netpol_ipv6(void **state)
{
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	allow_in(ID_B, ID_A, IPPROTO_TCP, 80, R_1);
	allow_in(ID_B, MOAT_PEER_CLASS(MOAT_CLASS_POD), IPPROTO_UDP, 53, R_2);
	expect_from_a(tcp(&p, A6, 40000, B6, 80, SYN), PASS);
	expect_from_a(tcp(&p, A6, 40001, B6, 81, SYN), DROP);
	expect_uplink(udp(&p, C6, 40002, B6, 53), PASS);
	expect_uplink(udp(&p, WORLD6, 40003, B6, 53), DROP);
	expect_stats(ALLOWED(2), S(MOAT_STAT_CT_NEW, 2), DENIED(2));
	expect_rules(S(R_1, 1), S(R_2, 1), S(R_ISO_B_IN, 2));
	assert_int_equal(ct_entry(IPPROTO_TCP, A6, 40000, B6, 80).ingress_rule, R_1);
	assert_int_equal(ct_entry(IPPROTO_UDP, C6, 40002, B6, 53).ingress_rule, R_2);
	assert_int_equal(ct_entry(IPPROTO_UDP, C6, 40002, B6, 53).init_identity, ID_C);
}

static void test_policy_peer_any_port(void **state)
{
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	allow_in(ID_B, ID_A, 0, 0, R_1);
	expect_from_a(tcp(&p, A4, 40000, B4, 22, SYN), PASS);
	expect_from_a(udp(&p, A4, 40000, B4, 53), PASS);
	expect_from_a(echo(&p, A4, B4, 9, false), PASS);
	expect_from_a(sctp_init(&p, A4, 40000, B4, 7000), PASS);
	expect_uplink(tcp(&p, C4, 40000, B4, 22, SYN), DROP);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 4), DENIED(1));
	expect_rules(S(R_1, 4), S(R_ISO_B_IN, 1));
	assert_int_equal(ct_entry(IPPROTO_ICMP, A4, 9, B4, 9).ingress_rule, R_1);
}

static void test_policy_class_row_and_port(void **state)
{
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	allow_in(ID_B, MOAT_PEER_CLASS(MOAT_CLASS_POD), IPPROTO_TCP, 443, R_1);
	expect_from_a(tcp(&p, A4, 40000, B4, 443, SYN), PASS);
	expect_uplink(tcp(&p, C4, 40000, B4, 443, SYN), PASS);
	expect_from_a(tcp(&p, A4, 40001, B4, 444, SYN), DROP);
	expect_uplink(tcp(&p, WORLD4, 40000, B4, 443, SYN), DROP);
	expect_to_pod(tcp(&p, RNODE4, 40000, B4, 443, SYN), DROP);
	expect_stats(ALLOWED(2), S(MOAT_STAT_CT_NEW, 2), DENIED(3));
	expect_rules(S(R_1, 2), S(R_ISO_B_IN, 3));
}

static void test_policy_class_any(void **state)
{
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	allow_in(ID_B, MOAT_PEER_CLASS(MOAT_CLASS_WORLD), 0, 0, R_1);
	allow_in(ID_B, MOAT_PEER_CLASS(MOAT_CLASS_NODE), 0, 0, R_2);
	expect_uplink(tcp(&p, WORLD4, 40000, B4, 22, SYN), PASS);
	expect_uplink(udp(&p, WORLD4, 40000, B4, 9999), PASS);
	expect_to_pod(tcp(&p, RNODE4, 40000, B4, 10250, SYN), PASS);
	expect_from_a(tcp(&p, A4, 40000, B4, 22, SYN), DROP);
	expect_stats(ALLOWED(3), S(MOAT_STAT_CT_NEW, 3), DENIED(1));
	expect_rules(S(R_1, 2), S(R_2, 1), S(R_ISO_B_IN, 1));
}

/* The compiler folds wider rules into narrower rows, so the datapath takes
 * the first row of the chain exact -> peer any -> class+port -> class any
 * that exists, whatever the ranks in the rows after it. */
static void test_policy_lookup_chain_first_hit_wins(void **state)
{
	const __u32 pods = MOAT_PEER_CLASS(MOAT_CLASS_POD);
	struct pkt p;

	(void)state;
	assert_int_equal(fix_subject(F, ID_B, MOAT_DIR_INGRESS, MOAT_SUBJ_ACTIVE, 0), 0);
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_TCP, 80, 0, fix_pv_admin(50, MOAT_ACT_ALLOW, R_1));
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, 0, 0, 0, fix_pv_admin(10, MOAT_ACT_DENY, R_2));
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, pods, IPPROTO_TCP, 80, 0, fix_pv_admin(1, MOAT_ACT_DENY, R_3));
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, pods, 0, 0, 0, fix_pv_admin(1, MOAT_ACT_ALLOW, R_4));
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);     /* exact */
	expect_from_a(tcp(&p, A4, 40001, B4, 22, SYN), DROP);     /* A, any port */
	expect_uplink(tcp(&p, C4, 40002, B4, 80, SYN), DROP);     /* pods, port 80 */
	expect_uplink(tcp(&p, C4, 40003, B4, 22, SYN), PASS);     /* pods, any port */
	expect_uplink(tcp(&p, WORLD4, 40004, B4, 80, SYN), PASS); /* no row: default */
	expect_stats(ALLOWED(3), S(MOAT_STAT_CT_NEW, 3), DENIED(2));
	expect_rules(S(R_1, 1), S(R_2, 1), S(R_3, 1), S(R_4, 1), S(MOAT_RULE_DEFAULT_ALLOW, 1));
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).ingress_tier, MOAT_TIER_ADMIN);
	assert_int_equal(ct_entry(IPPROTO_TCP, C4, 40003, B4, 22).ingress_rule, R_4);
	assert_int_equal(ct_entry(IPPROTO_TCP, WORLD4, 40004, B4, 80).ingress_tier, MOAT_TIER_DEFAULT);
}

static void test_policy_cidr_regions_ipv4(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	assert_int_equal(fix_subject(F, ID_A, MOAT_DIR_EGRESS,
				     MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED | MOAT_SUBJ_NETS, R_ISO_A_EG),
			 0);
	fix_cidr4(F, "8.8.0.0/16", 7);
	fix_cidr4(F, "8.0.0.0/8", 8);
	fix_ip(F, C4, ID_C, MOAT_CLASS_POD, 0, 11); /* C lies in a region too */
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, 7, IPPROTO_UDP, 53, MOAT_PK_NET, fix_pv_netpol(R_1));
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, MOAT_PEER_NET4, IPPROTO_TCP, 443, MOAT_PK_NET, fix_pv_netpol(R_2));
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, 11, IPPROTO_TCP, 8080, MOAT_PK_NET, fix_pv_netpol(R_3));
	/* an identity-dimension row keyed like the region must not match */
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, 8, 0, 0, 0, fix_pv_netpol(R_8));

	expect_from_a(udp(&p, A4, 40000, WORLD4, 53), PASS); /* region 7 */
	e = ct_entry(IPPROTO_UDP, A4, 40000, WORLD4, 53);
	assert_int_equal(e.egress_rule, R_1);
	assert_int_equal(e.egress_tier, MOAT_TIER_NETPOL);
	assert_int_equal(e.ingress_rule, 0); /* not a pod: no ingress side */
	assert_int_equal(e.resp_identity, MOAT_ID_WORLD);
	expect_from_a(udp(&p, A4, 40001, WORLD4, 54), DROP);          /* region 7, other port */
	expect_from_a(udp(&p, A4, 40002, "8.1.1.1", 53), DROP);       /* region 8 */
	expect_from_a(tcp(&p, A4, 40003, "9.9.9.9", 443, SYN), PASS); /* no region: class row */
	expect_from_a(tcp(&p, A4, 40004, "8.1.1.1", 443, SYN), PASS); /* region 8: class row */
	expect_from_a(tcp(&p, A4, 40005, C4, 8080, SYN), PASS);       /* a pod's region */
	expect_from_a(tcp(&p, A4, 40006, C4, 8081, SYN), DROP);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 4), DENIED(3));
	expect_rules(S(R_1, 1), S(R_2, 2), S(R_3, 1), S(R_ISO_A_EG, 3));
}

static void test_policy_cidr_regions_ipv6(void **state)
{
	struct pkt p;

	(void)state;
	assert_int_equal(fix_subject(F, ID_A, MOAT_DIR_EGRESS,
				     MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED | MOAT_SUBJ_NETS, R_ISO_A_EG),
			 0);
	fix_cidr6(F, "2001:4860::/32", 9);
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, 9, IPPROTO_TCP, 443, MOAT_PK_NET, fix_pv_netpol(R_1));
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, MOAT_PEER_NET6, IPPROTO_UDP, 123, MOAT_PK_NET, fix_pv_netpol(R_2));
	/* the IPv4 class row says nothing about IPv6 */
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, MOAT_PEER_NET4, 0, 0, MOAT_PK_NET, fix_pv_netpol(R_3));
	expect_from_a(tcp(&p, A6, 40000, WORLD6, 443, SYN), PASS);
	expect_from_a(tcp(&p, A6, 40001, "2001:db8::1", 443, SYN), DROP);
	expect_from_a(udp(&p, A6, 40002, "2001:db8::1", 123), PASS);
	expect_from_a(udp(&p, A6, 40003, "2001:db8::1", 124), DROP);
	expect_from_a(udp(&p, A4, 40004, "9.9.9.9", 124), PASS); /* the IPv4 row */
	expect_stats(ALLOWED(3), S(MOAT_STAT_CT_NEW, 3), DENIED(2));
	expect_rules(S(R_1, 1), S(R_2, 1), S(R_3, 1), S(R_ISO_A_EG, 2));
}

/* At a pod's interface the source's CIDR region comes with its endpoint,
 * without an ipcache lookup; elsewhere (here the uplink) from the ipcache.
 * The two disagree on purpose here, to show which one each hook reads. */
static void test_policy_source_region_from_endpoint(void **state)
{
	struct pkt p;

	(void)state;
	assert_int_equal(fix_endpoint_regions(F, IF_A, ID_A, A4, A6, 12, 13), 0);
	assert_int_equal(fix_subject(F, ID_B, MOAT_DIR_INGRESS,
				     MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED | MOAT_SUBJ_NETS, R_ISO_B_IN),
			 0);
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, 12, IPPROTO_TCP, 80, MOAT_PK_NET, fix_pv_netpol(R_1));
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, 13, IPPROTO_TCP, 80, MOAT_PK_NET, fix_pv_netpol(R_2));
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS); /* region 12, from the endpoint */
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).ingress_rule, R_1);
	expect_from_a(tcp(&p, A4, 40001, B4, 81, SYN), DROP);
	expect_from_a(tcp(&p, A6, 40002, B6, 80, SYN), PASS); /* region 13 */
	assert_int_equal(ct_entry(IPPROTO_TCP, A6, 40002, B6, 80).ingress_rule, R_2);
	expect_uplink(tcp(&p, A4, 40003, B4, 80, SYN), DROP); /* the ipcache: no region */
	expect_stats(ALLOWED(2), S(MOAT_STAT_CT_NEW, 2), DENIED(2));
	expect_rules(S(R_1, 1), S(R_2, 1), S(R_ISO_B_IN, 2));
}

/* Admin tier: the identity and CIDR dimensions each find their first rule;
 * the lower rank decides. */
static void test_policy_rank_merge_admin(void **state)
{
	const __u32 world = MOAT_PEER_CLASS(MOAT_CLASS_WORLD);
	struct pkt p;

	(void)state;
	assert_int_equal(fix_subject(F, ID_A, MOAT_DIR_EGRESS, MOAT_SUBJ_ACTIVE | MOAT_SUBJ_NETS, 0), 0);
	fix_cidr4(F, "8.8.0.0/16", 7);
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, world, 0, 0, 0, fix_pv_admin(10, MOAT_ACT_DENY, R_1));
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, 7, 0, 0, MOAT_PK_NET, fix_pv_admin(5, MOAT_ACT_ALLOW, R_2));
	expect_from_a(udp(&p, A4, 40000, WORLD4, 53), PASS);
	assert_int_equal(ct_entry(IPPROTO_UDP, A4, 40000, WORLD4, 53).egress_rule, R_2);
	assert_int_equal(ct_entry(IPPROTO_UDP, A4, 40000, WORLD4, 53).egress_tier, MOAT_TIER_ADMIN);
	expect_from_a(udp(&p, A4, 40001, "9.9.9.9", 53), DROP); /* no region: identity only */
	/* swap the ranks */
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, world, 0, 0, 0, fix_pv_admin(5, MOAT_ACT_DENY, R_1));
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, 7, 0, 0, MOAT_PK_NET, fix_pv_admin(10, MOAT_ACT_ALLOW, R_2));
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(udp(&p, A4, 40002, WORLD4, 53), DROP);
	expect_stats(ALLOWED(1), S(MOAT_STAT_CT_NEW, 1), DENIED(2));
	expect_rules(S(R_2, 1), S(R_1, 2));
}

static void test_policy_rank_merge_baseline(void **state)
{
	const __u32 world = MOAT_PEER_CLASS(MOAT_CLASS_WORLD);
	struct pkt p;

	(void)state;
	assert_int_equal(fix_subject(F, ID_A, MOAT_DIR_EGRESS, MOAT_SUBJ_ACTIVE | MOAT_SUBJ_NETS, 0), 0);
	fix_cidr4(F, "8.8.0.0/16", 7);
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, world, 0, 0, 0, fix_pv_baseline(3, MOAT_ACT_ALLOW, R_1));
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, 7, 0, 0, MOAT_PK_NET, fix_pv_baseline(2, MOAT_ACT_DENY, R_2));
	expect_from_a(udp(&p, A4, 40000, WORLD4, 53), DROP);
	expect_from_a(udp(&p, A4, 40001, "9.9.9.9", 53), PASS);
	assert_int_equal(ct_entry(IPPROTO_UDP, A4, 40001, "9.9.9.9", 53).egress_tier, MOAT_TIER_BASELINE);
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, 7, 0, 0, MOAT_PK_NET, fix_pv_baseline(4, MOAT_ACT_DENY, R_2));
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(udp(&p, A4, 40002, WORLD4, 53), PASS);
	assert_int_equal(ct_entry(IPPROTO_UDP, A4, 40002, WORLD4, 53).egress_rule, R_1);
	expect_stats(ALLOWED(2), S(MOAT_STAT_CT_NEW, 2), DENIED(1));
	expect_rules(S(R_1, 2), S(R_2, 1));
}

/* Admin Pass skips the rest of the Admin tier: the NetworkPolicy decides. */
static void test_policy_admin_pass_goes_to_netpol(void **state)
{
	struct moat_policy_val v;
	struct pkt p;

	(void)state;
	assert_int_equal(fix_subject(F, ID_B, MOAT_DIR_INGRESS,
				     MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED | MOAT_SUBJ_NETS, R_ISO_B_IN),
			 0);
	v = fix_pv_admin(1, MOAT_ACT_PASS, R_1);
	v.np_rule = R_2;
	v.base_rank = 1;
	v.base_action = MOAT_ACT_DENY;
	v.base_rule = R_3;
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, 0, 0, 0, v);
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, MOAT_PEER_CLASS(MOAT_CLASS_POD), 0, 0, 0,
		 fix_pv_admin(1, MOAT_ACT_PASS, R_1));
	/* a later Admin deny in the CIDR dimension does not overrule the pass */
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, MOAT_PEER_NET4, 0, 0, MOAT_PK_NET,
		 fix_pv_admin(2, MOAT_ACT_DENY, R_4));
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).ingress_rule, R_2);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).ingress_tier, MOAT_TIER_NETPOL);
	expect_uplink(tcp(&p, C4, 40001, B4, 80, SYN), DROP); /* passed, isolated, no rule */
	/* an earlier Admin deny in the CIDR dimension wins over the pass */
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, MOAT_PEER_NET4, 0, 0, MOAT_PK_NET,
		 fix_pv_admin(0, MOAT_ACT_DENY, R_4));
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40002, B4, 80, SYN), DROP);
	expect_stats(ALLOWED(1), S(MOAT_STAT_CT_NEW, 1), DENIED(2));
	expect_rules(S(R_2, 1), S(R_ISO_B_IN, 1), S(R_4, 1));
}

static void test_policy_baseline_after_netpol(void **state)
{
	struct pkt p;

	(void)state;
	assert_int_equal(fix_subject(F, ID_B, MOAT_DIR_INGRESS, MOAT_SUBJ_ACTIVE, 0), 0);
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, 0, 0, 0, fix_pv_baseline(1, MOAT_ACT_DENY, R_1));
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, MOAT_PEER_CLASS(MOAT_CLASS_POD), 0, 0, 0,
		 fix_pv_baseline(2, MOAT_ACT_ALLOW, R_2));
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), DROP);
	expect_uplink(tcp(&p, C4, 40001, B4, 80, SYN), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, C4, 40001, B4, 80).ingress_tier, MOAT_TIER_BASELINE);
	assert_int_equal(ct_entry(IPPROTO_TCP, C4, 40001, B4, 80).ingress_rule, R_2);
	expect_uplink(tcp(&p, WORLD4, 40002, B4, 80, SYN), PASS); /* nothing: default */
	/* a NetworkPolicy isolating B comes before the Baseline tier */
	isolate_b_ingress();
	allow_in(ID_B, ID_A, 0, 0, R_3);
	{
		struct moat_policy_val v = fix_pv_baseline(1, MOAT_ACT_DENY, R_1);
		v.np_rule = R_3;
		fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, 0, 0, 0, v);
	}
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40003, B4, 80, SYN), PASS); /* NP allows */
	expect_uplink(tcp(&p, C4, 40004, B4, 80, SYN), DROP); /* NP isolates */
	expect_stats(ALLOWED(3), S(MOAT_STAT_CT_NEW, 3), DENIED(2));
	expect_rules(S(R_1, 1), S(R_2, 1), S(MOAT_RULE_DEFAULT_ALLOW, 1), S(R_3, 1), S(R_ISO_B_IN, 1));
}

static void test_policy_default_allow(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.egress_rule, MOAT_RULE_DEFAULT_ALLOW);
	assert_int_equal(e.ingress_rule, MOAT_RULE_DEFAULT_ALLOW);
	assert_int_equal(e.egress_tier, MOAT_TIER_DEFAULT);
	assert_int_equal(e.ingress_tier, MOAT_TIER_DEFAULT);
	/* a subject without ACTIVE, and an active one no row matches */
	assert_int_equal(fix_subject(F, ID_B, MOAT_DIR_INGRESS, MOAT_SUBJ_ISOLATED, R_ISO_B_IN), 0);
	assert_int_equal(fix_subject(F, ID_A, MOAT_DIR_EGRESS, MOAT_SUBJ_ACTIVE, R_ISO_A_EG), 0);
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, ID_C, 0, 0, 0, fix_pv_admin(1, MOAT_ACT_DENY, R_1));
	expect_from_a(tcp(&p, A4, 40001, B4, 80, SYN), PASS);
	expect_stats(ALLOWED(2), S(MOAT_STAT_CT_NEW, 2));
	expect_rules(S(MOAT_RULE_DEFAULT_ALLOW, 2));
}

/* Both halves decide: the CT entry names both rules; the new flow counts
 * the more specific (ingress) one, or the egress one when ingress had no
 * policy. */
static void test_policy_rule_attribution(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	assert_int_equal(
		fix_subject(F, ID_A, MOAT_DIR_EGRESS, MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED, R_ISO_A_EG), 0);
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, ID_B, IPPROTO_TCP, 80, 0, fix_pv_netpol(R_1));
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, ID_B, IPPROTO_TCP, 81, 0, fix_pv_netpol(R_3));
	isolate_b_ingress();
	allow_in(ID_B, ID_A, IPPROTO_TCP, 80, R_2);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.egress_rule, R_1);
	assert_int_equal(e.ingress_rule, R_2);
	assert_int_equal(e.egress_tier, MOAT_TIER_NETPOL);
	assert_int_equal(e.ingress_tier, MOAT_TIER_NETPOL);
	expect_rules(S(R_2, 1));
	/* established packets count the ingress rule too */
	expect_from_a(tcp(&p, A4, 40000, B4, 80, ACK), PASS);
	expect_rules(S(R_2, 2));
	/* egress allows 81, ingress isolates: the ingress side is named */
	expect_from_a(tcp(&p, A4, 40001, B4, 81, SYN), DROP);
	/* egress denies: B's ingress is never asked */
	expect_from_a(tcp(&p, A4, 40002, B4, 82, SYN), DROP);
	expect_rules(S(R_2, 2), S(R_ISO_B_IN, 1), S(R_ISO_A_EG, 1));
	/* only the egress side has a policy: it is named */
	fix_subject(F, ID_B, MOAT_DIR_INGRESS, 0, 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40003, B4, 81, SYN), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40003, B4, 81);
	assert_int_equal(e.egress_rule, R_3);
	assert_int_equal(e.ingress_rule, MOAT_RULE_DEFAULT_ALLOW);
	expect_rules(S(R_2, 2), S(R_ISO_B_IN, 1), S(R_ISO_A_EG, 1), S(R_3, 1));
	expect_stats(ALLOWED(3), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_CT_ESTABLISHED, 1), DENIED(2));
}

static void test_policy_audit(void **state)
{
	struct pkt p;

	(void)state;
	/* enforced: nothing; shadow: B isolated, only pods on TCP 80 */
	assert_int_equal(fix_subject(F, ID_B, MOAT_DIR_INGRESS,
				     MOAT_SUBJ_ACTIVE | MOAT_SUBJ_AUDIT | MOAT_SUBJ_AUDIT_ACTIVE |
					     MOAT_SUBJ_AUDIT_ISOLATED,
				     0),
			 0);
	assert_int_equal(fix_subject_audit(F, ID_B, MOAT_DIR_INGRESS, R_5), 0);
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, MOAT_PEER_CLASS(MOAT_CLASS_POD), IPPROTO_TCP, 80, MOAT_PK_AUDIT,
		 fix_pv_netpol(R_6));
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).flags, 0);
	expect_from_a(tcp(&p, A4, 40001, B4, 22, SYN), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40001, B4, 22).flags, MOAT_CT_AUDIT);
	expect_stats(ALLOWED(1), S(MOAT_STAT_VERDICT(MOAT_VERDICT_AUDIT), 1), S(MOAT_STAT_CT_NEW, 2));
	expect_rules(S(MOAT_RULE_DEFAULT_ALLOW, 1), S(R_5, 1));
	/* egress shadow: an audit-mode Admin deny of A's egress to B */
	assert_int_equal(fix_subject(F, ID_A, MOAT_DIR_EGRESS, MOAT_SUBJ_AUDIT_ACTIVE, 0), 0);
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, ID_B, 0, 0, MOAT_PK_AUDIT, fix_pv_admin(1, MOAT_ACT_DENY, R_7));
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40002, B4, 80, SYN), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40002, B4, 80).flags, MOAT_CT_AUDIT);
	/* an enforced deny is a deny, audit or not */
	isolate_b_ingress();
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40003, B4, 80, SYN), DROP);
	expect_stats(ALLOWED(1), S(MOAT_STAT_VERDICT(MOAT_VERDICT_AUDIT), 2), S(MOAT_STAT_CT_NEW, 3),
		     DENIED(1));
	expect_rules(S(MOAT_RULE_DEFAULT_ALLOW, 1), S(R_5, 1), S(R_7, 1), S(R_ISO_B_IN, 1));
}

/* Port ranges: the subject's TCP ports are classes from moat_ports. */
static void test_policy_port_range_classes(void **state)
{
	struct pkt p;

	(void)state;
	assert_int_equal(fix_subject(F, ID_B, MOAT_DIR_INGRESS,
				     MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED | MOAT_SUBJ_RANGE_TCP, R_ISO_B_IN),
			 0);
	/* 8000-8007 -> class 1, 8008-8009 -> class 2 */
	assert_int_equal(fix_port_class(F, ID_B, MOAT_DIR_INGRESS, IPPROTO_TCP, 8000, 13, 1), 0);
	assert_int_equal(fix_port_class(F, ID_B, MOAT_DIR_INGRESS, IPPROTO_TCP, 8008, 15, 2), 0);
	/* the same range for another subject and direction must not leak */
	assert_int_equal(fix_port_class(F, ID_A, MOAT_DIR_INGRESS, IPPROTO_TCP, 8010, 15, 1), 0);
	assert_int_equal(fix_port_class(F, ID_B, MOAT_DIR_EGRESS, IPPROTO_TCP, 8010, 15, 1), 0);
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_TCP, 1, MOAT_PK_PORTCLASS, fix_pv_netpol(R_1));
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, MOAT_PEER_CLASS(MOAT_CLASS_POD), IPPROTO_TCP, 2,
		 MOAT_PK_PORTCLASS, fix_pv_netpol(R_2));
	/* UDP ports are plain ports (no RANGE_UDP) */
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_UDP, 8000, 0, fix_pv_netpol(R_3));
	/* plain TCP port rows are not what a ranged subject looks up */
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_TCP, 8010, 0, fix_pv_netpol(R_5));
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, MOAT_PEER_CLASS(MOAT_CLASS_POD), IPPROTO_TCP, 7999, 0,
		 fix_pv_netpol(R_6));
	expect_from_a(tcp(&p, A4, 40000, B4, 8000, SYN), PASS);
	expect_from_a(tcp(&p, A4, 40001, B4, 8007, SYN), PASS);
	expect_from_a(tcp(&p, A4, 40002, B4, 8008, SYN), PASS); /* class 2, class row */
	expect_from_a(tcp(&p, A4, 40003, B4, 8010, SYN), DROP); /* in no class */
	expect_from_a(tcp(&p, A4, 40004, B4, 7999, SYN), DROP);
	expect_from_a(tcp(&p, A4, 40005, B4, 1, SYN), DROP); /* port = a class number */
	expect_from_a(udp(&p, A4, 40006, B4, 8000), PASS);   /* UDP ports are ports */
	expect_from_a(udp(&p, A4, 40007, B4, 8001), DROP);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 4), DENIED(4));
	expect_rules(S(R_1, 2), S(R_2, 1), S(R_3, 1), S(R_ISO_B_IN, 4));
	/* ports in no class still meet port-less rows */
	allow_in(ID_B, ID_A, 0, 0, R_4);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40008, B4, 8010, SYN), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40008, B4, 8010).ingress_rule, R_4);
	expect_from_a(tcp(&p, A4, 40009, B4, 8001, SYN), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40009, B4, 8001).ingress_rule, R_1);
}

static void test_policy_sctp_port(void **state)
{
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	allow_in(ID_B, ID_A, IPPROTO_SCTP, 5000, R_1);
	expect_from_a(sctp_init(&p, A4, 40000, B4, 5000), PASS);
	expect_from_a(sctp_init(&p, A4, 40000, B4, 5001), DROP);
	expect_from_a(tcp(&p, A4, 40000, B4, 5000, SYN), DROP);
	expect_stats(ALLOWED(1), S(MOAT_STAT_CT_NEW, 1), DENIED(2));
	expect_rules(S(R_1, 1), S(R_ISO_B_IN, 2));
}

/* The pod's own node (kubelet probes) always reaches it. */
static void test_policy_local_node_exempt(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	expect_to_pod(tcp(&p, NODE4, 40000, B4, 8080, SYN), PASS);
	e = ct_entry(IPPROTO_TCP, NODE4, 40000, B4, 8080);
	assert_int_equal(e.ingress_rule, MOAT_RULE_LOCAL_NODE);
	assert_int_equal(e.init_identity, ID_NODE);
	expect_rules(S(MOAT_RULE_LOCAL_NODE, 1));
	/* another node is judged by policy */
	expect_to_pod(tcp(&p, RNODE4, 40001, B4, 8080, SYN), DROP);
	/* the exemption switched off */
	moat_dp_config(F->dp)->flags &= ~MOAT_CFG_ALLOW_LOCAL_NODE;
	expect_to_pod(tcp(&p, NODE4, 40002, B4, 8080, SYN), DROP);
	/* a local address of another class is not the node */
	moat_dp_config(F->dp)->flags |= MOAT_CFG_ALLOW_LOCAL_NODE;
	fix_ip(F, NODE4, ID_NODE, MOAT_CLASS_WORLD, MOAT_IP_F_LOCAL, 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_to_pod(tcp(&p, NODE4, 40003, B4, 8080, SYN), DROP);
	expect_stats(ALLOWED(1), S(MOAT_STAT_CT_NEW, 1), DENIED(3));
	expect_rules(S(MOAT_RULE_LOCAL_NODE, 1), S(R_ISO_B_IN, 3));
}

static void test_antispoofing(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(udp(&p, B4, 40000, C4, 53), DROP); /* B's address from A */
	expect_from_a(udp(&p, "10.0.0.99", 40000, C4, 53), DROP);
	expect_from_a(udp(&p, "fd00::99", 40000, C6, 53), DROP);
	expect_from_b(udp(&p, A6, 40000, C6, 53), DROP);
	expect_stats(S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 4), S(MOAT_STAT_DROP(MOAT_DROP_SPOOFED), 4));
	expect_rules(S(MOAT_RULE_SPOOF, 4));
	/* the own addresses pass */
	expect_from_a(udp(&p, A4, 40000, C4, 53), PASS);
	expect_from_b(udp(&p, B6, 40000, C6, 53), PASS);
	assert_int_equal(fix_stat(F, MOAT_STAT_CT_NEW), 2);
	/* a pod without an IPv6 address sends none */
	fix_endpoint(F, IF_B, ID_B, B4, NULL);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_b(udp(&p, B6, 40001, C6, 53), DROP);
	expect_from_b(udp(&p, "::", 40001, C6, 53), DROP); /* equal to the unset address */
	/* nor does a pod without an IPv4 address send IPv4 */
	fix_endpoint(F, IF_A, ID_A, NULL, A6);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(udp(&p, "0.0.0.0", 68, "255.255.255.255", 67), DROP);
	expect_from_a(udp(&p, A4, 40002, C4, 53), DROP);
	assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_SPOOFED)), 8);
	assert_int_equal(fix_ct_count(F), 2);
}

/* Endpoints of small ifindexes live in an array, larger ones in a hash: both
 * find the sender, check its addresses, and forget it when it is deleted. */
static void test_endpoints_array_and_hash(void **state)
{
	struct moat_endpoint ep;
	__u32 k;
	struct pkt p;

	(void)state;
	assert_true(IF_A < MOAT_EP_ARRAY_MAX);
	assert_int_equal(fix_endpoint(F, IF_HIGH, ID_A, A4, A6), 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	k = IF_HIGH;
	assert_int_equal(moat_dp_lookup(F->dp, MOAT_T_EP, &k, &ep), 0);
	assert_int_equal(ep.identity, ID_A);
	k = IF_A;
	assert_int_equal(moat_dp_lookup(F->dp, MOAT_T_EP, &k, &ep), 0);
	assert_int_equal(ep.identity, ID_A);
	expect_action(fix_from_pod(F, IF_HIGH, udp(&p, A4, 40000, C4, 53)), &p, PASS);
	expect_action(fix_from_pod(F, IF_HIGH, udp(&p, B4, 40001, C4, 53)), &p, DROP);
	expect_from_a(udp(&p, A6, 40002, C6, 53), PASS);
	expect_stats(ALLOWED(2), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 1),
		     S(MOAT_STAT_DROP(MOAT_DROP_SPOOFED), 1));
	/* deleted: no endpoint, in either table */
	assert_int_equal(fix_endpoint_del(F, IF_HIGH), 0);
	assert_int_equal(fix_endpoint_del(F, IF_A), 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	k = IF_HIGH;
	assert_int_equal(moat_dp_lookup(F->dp, MOAT_T_EP, &k, &ep), -ENOENT);
	k = IF_A;
	assert_int_equal(moat_dp_lookup(F->dp, MOAT_T_EP, &k, &ep), -ENOENT);
	expect_action(fix_from_pod(F, IF_HIGH, udp(&p, A4, 40003, C4, 53)), &p, DROP);
	expect_from_a(udp(&p, A4, 40004, C4, 53), DROP);
	assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_NO_ENDPOINT)), 2);
	/* B's, in the array beside A's empty slot, still there */
	expect_from_b(udp(&p, B4, 40005, C4, 53), PASS);
}

/* The sending pod's addresses are checked on every packet, not just on new
 * flows: a pod must not inject into other pods' tracked flows. */
static void test_antispoofing_covers_tracked_flows(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(udp(&p, A4, 5353, C4, 53), PASS); /* A's DNS query to C */
	expect_from_a(tcp(&p, A6, 40000, C6, 80, SYN), PASS);
	/* B forges C's answers */
	expect_from_b(udp(&p, C4, 53, A4, 5353), DROP);
	expect_from_b(tcp(&p, C6, 80, A6, 40000, RST | ACK), DROP);
	/* ... or an error about A's query, from C's address */
	expect_from_b(udp_unreachable(&p, C4, A4, A4, 5353, C4, 53), DROP);
	/* ... or a later fragment */
	expect_from_a(udp_frag(&p, A4, 5353, C4, 53, 0x7777, true), PASS);
	eth_ip(&p, C4, A4);
	pkt_ip4_frag(&p, 0x7777, 24, false);
	pkt_next_proto(&p, IPPROTO_UDP);
	pkt_payload(&p, "ghijklmn", 8);
	pkt_finish(&p);
	expect_from_b(&p, DROP);
	/* the real answer, delivered to A, passes */
	expect_to_pod(udp(&p, C4, 53, A4, 5353), PASS);
	/* tracked flows do not pass an interface that is no known pod's */
	expect_action(fix_from_pod(F, IF_LO, udp(&p, A4, 5353, C4, 53)), &p, DROP);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_CT_ESTABLISHED, 1),
		     S(MOAT_STAT_CT_REPLY, 1), S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 5),
		     S(MOAT_STAT_DROP(MOAT_DROP_SPOOFED), 4), S(MOAT_STAT_DROP(MOAT_DROP_NO_ENDPOINT), 1));
	expect_rules(S(MOAT_RULE_DEFAULT_ALLOW, 4), S(MOAT_RULE_SPOOF, 4), S(MOAT_RULE_NO_ENDPOINT, 1));
	assert_int_equal(ct_entry(IPPROTO_UDP, A4, 5353, C4, 53).packets, 3);
}

static void test_unknown_interface(void **state)
{
	struct pkt p;

	(void)state;
	expect_action(fix_from_pod(F, IF_LO, udp(&p, A4, 40000, B4, 53)), &p, DROP);
	expect_action(fix_from_pod(F, IF_LO, tcp(&p, A6, 40000, B6, 80, SYN)), &p, DROP);
	expect_stats(S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 2), S(MOAT_STAT_DROP(MOAT_DROP_NO_ENDPOINT), 2));
	expect_rules(S(MOAT_RULE_NO_ENDPOINT, 2));
	assert_int_equal(fix_ct_count(F), 0);
}

static void test_to_pod_unknown_destination(void **state)
{
	struct pkt p;

	(void)state;
	expect_to_pod(udp(&p, C4, 40000, "10.0.0.99", 53), DROP); /* not known yet */
	expect_to_pod(udp(&p, C6, 40000, "fd00::99", 53), DROP);
	expect_to_pod(udp(&p, C4, 40000, NODE4, 53), DROP); /* not a pod */
	expect_to_pod(udp(&p, C4, 40000, VIP4, 53), DROP);
	expect_stats(S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 4), S(MOAT_STAT_DROP(MOAT_DROP_NO_ENDPOINT), 4));
	expect_rules(S(MOAT_RULE_NO_ENDPOINT, 4));
	expect_to_pod(udp(&p, C4, 40000, B4, 53), PASS);
}

/* A Service VIP is judged after DNAT, at the backend. */
static void test_vip_deferred(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	assert_int_equal(
		fix_subject(F, ID_A, MOAT_DIR_EGRESS, MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED, R_ISO_A_EG), 0);
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, ID_C, IPPROTO_TCP, 8080, 0, fix_pv_netpol(R_1));
	expect_from_a(tcp(&p, A4, 40000, VIP4, 80, SYN), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, VIP4, 80);
	assert_int_equal(e.flags, MOAT_CT_DEFERRED);
	assert_int_equal(e.init_identity, ID_A);
	assert_int_equal(e.resp_identity, ID_VIP);
	expect_stats(ALLOWED(1), S(MOAT_STAT_DEFERRED, 1));
	expect_no_rules();
	/* DNATed to backend B, delivered: A's egress isolates */
	expect_to_pod(tcp(&p, A4, 40000, B4, 8080, SYN), DROP);
	/* the un-NATed reply of a backend that was allowed */
	expect_to_pod(tcp(&p, VIP4, 80, A4, 40000, SYN | ACK), PASS);
	/* IPv6 */
	expect_from_a(tcp(&p, A6, 40001, VIP6, 80, SYN), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A6, 40001, VIP6, 80).flags, MOAT_CT_DEFERRED);
	expect_stats(ALLOWED(3), S(MOAT_STAT_DEFERRED, 2), S(MOAT_STAT_CT_REPLY, 1), DENIED(1));
	/* a deferred entry names no rule: its packets count under RULE_NONE */
	expect_rules(S(R_ISO_A_EG, 1), S(MOAT_RULE_NONE, 1));
}

/* The uplink judges only what it delivers to this node's pods. */
static void test_uplink_not_ours(void **state)
{
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	expect_uplink(tcp(&p, WORLD4, 40000, C4, 80, SYN), PASS);    /* remote pod */
	expect_uplink(tcp(&p, WORLD4, 40000, NODE4, 22, SYN), PASS); /* the node */
	expect_uplink(tcp(&p, WORLD6, 40000, "2001:db8::5", 22, SYN), PASS);
	expect_stats(S(MOAT_STAT_NOT_OURS, 3));
	expect_uplink(tcp(&p, WORLD4, 40000, B4, 22, SYN), DROP);
	expect_stats(S(MOAT_STAT_NOT_OURS, 3), DENIED(1));
	assert_int_equal(fix_ct_count(F), 0);
}

/* ============================================================================
 * Conntrack.  A's ingress is isolated with no rule in most tests: a packet
 * to A passes only as part of a flow A opened (or one already tracked).
 * ========================================================================== */
static void test_ct_tcp_handshake_reply_passes(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	isolate_a_ingress();
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.flags, 0);
	assert_int_equal(e.tcp_flags, SYN);
	assert_int_equal(e.packets, 1);
	/* SYN-ACK: sent by B, delivered to A */
	expect_from_b(tcp(&p, B4, 80, A4, 40000, SYN | ACK), PASS);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, SYN | ACK), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.flags, MOAT_CT_SEEN_REPLY);
	assert_int_equal(e.tcp_flags, SYN | ACK);
	assert_int_equal(e.packets, 3);
	assert_int_equal(e.bytes, 3 * p.len);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, ACK), PASS);
	/* the same direction as the reply, as a new flow, is denied */
	expect_from_b(tcp(&p, B4, 80, A4, 40001, SYN), DROP);
	expect_from_b(tcp(&p, B4, 40000, A4, 80, SYN), DROP);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_CT_REPLY, 2),
		     S(MOAT_STAT_CT_ESTABLISHED, 1), DENIED(2));
	expect_rules(S(MOAT_RULE_DEFAULT_ALLOW, 4), S(R_ISO_A_IN, 2));
	assert_int_equal(fix_ct_count(F), 1);
}

/* The initiator has the higher address: it is endpoint b of the key. */
static void test_ct_initiator_is_endpoint_b(void **state)
{
	struct pkt p;

	(void)state;
	assert_int_equal(
		fix_subject(F, ID_B, MOAT_DIR_INGRESS, MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED, R_ISO_B_IN), 0);
	expect_from_b(tcp(&p, B4, 40000, A4, 80, SYN), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, B4, 40000, A4, 80).flags, MOAT_CT_INIT_B);
	expect_from_a(tcp(&p, A4, 80, B4, 40000, SYN | ACK), PASS);
	expect_from_b(tcp(&p, B4, 40000, A4, 80, ACK), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, B4, 40000, A4, 80).flags, MOAT_CT_INIT_B | MOAT_CT_SEEN_REPLY);
	/* same address, ports decide: a pod talking to itself */
	expect_from_a(udp(&p, A4, 9000, A4, 53), PASS);
	expect_to_pod(udp(&p, A4, 53, A4, 9000), PASS);
	assert_int_equal(ct_entry(IPPROTO_UDP, A4, 9000, A4, 53).flags, MOAT_CT_INIT_B | MOAT_CT_SEEN_REPLY);
	expect_stats(ALLOWED(5), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_CT_REPLY, 2),
		     S(MOAT_STAT_CT_ESTABLISHED, 1));
}

static void test_ct_udp_reply(void **state)
{
	struct pkt p;

	(void)state;
	isolate_a_ingress();
	expect_from_a(udp(&p, A4, 5353, B4, 53), PASS);
	expect_to_pod(udp(&p, B4, 53, A4, 5353), PASS);
	expect_to_pod(udp(&p, B4, 53, A4, 5354), DROP);
	expect_to_pod(udp(&p, B4, 54, A4, 5353), DROP);
	expect_uplink(udp(&p, C4, 53, A4, 5353), DROP);
	/* IPv6 */
	expect_from_a(udp(&p, A6, 5353, B6, 53), PASS);
	expect_to_pod(udp(&p, B6, 53, A6, 5353), PASS);
	expect_to_pod(udp(&p, B6, 53, A6, 5354), DROP);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_CT_REPLY, 2), DENIED(4));
	assert_int_equal(ct_entry(IPPROTO_UDP, A4, 5353, B4, 53).flags, MOAT_CT_SEEN_REPLY);
}

static void test_ct_icmp_echo_reply(void **state)
{
	struct pkt p;

	(void)state;
	isolate_a_ingress();
	expect_from_a(echo(&p, A4, B4, 7, false), PASS);
	expect_to_pod(echo(&p, B4, A4, 7, true), PASS);
	expect_to_pod(echo(&p, B4, A4, 8, true), DROP); /* another identifier */
	expect_from_a(echo(&p, A6, B6, 7, false), PASS);
	expect_to_pod(echo(&p, B6, A6, 7, true), PASS);
	expect_to_pod(echo(&p, B6, A6, 8, true), DROP);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_CT_REPLY, 2), DENIED(2));
	assert_int_equal(ct_entry(IPPROTO_ICMP, A4, 7, B4, 7).flags, MOAT_CT_SEEN_REPLY);
	assert_int_equal(ct_entry(IPPROTO_ICMPV6, A6, 7, B6, 7).flags, MOAT_CT_SEEN_REPLY);
}

static void test_ct_icmp_error_related(void **state)
{
	struct pkt p;

	(void)state;
	isolate_a_ingress();
	expect_from_a(udp(&p, A4, 5353, B4, 53), PASS);
	/* B: port unreachable about A's datagram */
	expect_to_pod(udp_unreachable(&p, B4, A4, A4, 5353, B4, 53), PASS);
	/* a router on the way: time exceeded */
	eth_ip(&p, "192.168.7.1", A4);
	pkt_icmp4(&p, 11, 0);
	pkt_ip4(&p, pkt_a4(A4), pkt_a4(B4));
	pkt_udp(&p, 5353, 53);
	pkt_finish(&p);
	expect_uplink(&p, PASS);
	expect_to_pod(&p, PASS);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_RELATED, 3));
	/* about a flow nobody tracks: a new ICMP flow to A, denied */
	expect_to_pod(udp_unreachable(&p, B4, A4, A4, 5353, B4, 54), DROP);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_RELATED, 3), DENIED(1));
	/* IPv6 */
	expect_from_a(udp(&p, A6, 5353, B6, 53), PASS);
	expect_to_pod(udp_unreachable(&p, B6, A6, A6, 5353, B6, 53), PASS);
	expect_to_pod(udp_unreachable(&p, B6, A6, A6, 5353, B6, 54), DROP);
	expect_stats(ALLOWED(6), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_RELATED, 4), DENIED(2));
	expect_rules(S(MOAT_RULE_DEFAULT_ALLOW, 2), S(R_ISO_A_IN, 2));
	/* an error about an ICMP echo */
	expect_from_a(echo(&p, A4, B4, 33, false), PASS);
	eth_ip(&p, B4, A4);
	pkt_icmp4(&p, 3, 1);
	pkt_ip4(&p, pkt_a4(A4), pkt_a4(B4));
	pkt_icmp4_echo(&p, 8, 33, 1);
	pkt_finish(&p);
	expect_to_pod(&p, PASS);
	assert_int_equal(fix_stat(F, MOAT_STAT_RELATED), 5);
	/* an error about an expired flow is not related */
	{
		struct moat_ct_entry e = ct_entry(IPPROTO_UDP, A4, 5353, B4, 53);
		e.last_seen_ns = moat_ktime_coarse_ns() - 61 * 1000000000ull;
		assert_int_equal(fix_ct_put(F, IPPROTO_UDP, A4, 5353, B4, 53, &e), 0);
	}
	expect_to_pod(udp_unreachable(&p, B4, A4, A4, 5353, B4, 53), DROP);
	assert_int_equal(fix_stat(F, MOAT_STAT_RELATED), 5);
}

/* An ICMP error relates to a flow only when it goes to the flow's endpoint
 * that sent the offending packet; otherwise any pod could wrap arbitrary
 * traffic to anyone in an "error" about one of its own flows. */
static void test_ct_icmp_error_to_third_party_is_judged(void **state)
{
	struct pkt p;

	(void)state;
	assert_int_equal(
		fix_subject(F, ID_A, MOAT_DIR_EGRESS, MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED, R_ISO_A_EG), 0);
	fix_rule(F, ID_A, MOAT_DIR_EGRESS, ID_B, IPPROTO_UDP, 53, 0, fix_pv_netpol(R_1));
	expect_from_a(udp(&p, A4, 5353, B4, 53), PASS);
	expect_from_a(udp(&p, A6, 5353, B6, 53), PASS);
	/* A -> C, wrapped around its tracked flow, either way round */
	expect_from_a(udp_unreachable(&p, A4, C4, A4, 5353, B4, 53), DROP);
	expect_from_a(udp_unreachable(&p, A4, C4, B4, 53, A4, 5353), DROP);
	expect_from_a(udp_unreachable(&p, A6, C6, A6, 5353, B6, 53), DROP);
	/* A reporting to B about B's packet is related */
	expect_from_a(udp_unreachable(&p, A4, B4, B4, 53, A4, 5353), PASS);
	expect_stats(ALLOWED(3), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_RELATED, 1), DENIED(3),
		     S(MOAT_STAT_DENY_CACHED, 1));
	expect_rules(S(R_1, 2), S(R_ISO_A_EG, 3));
}

static void test_ct_fin_fin_closes(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	isolate_a_ingress();
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, SYN | ACK), PASS);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, FIN | ACK), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).flags,
			 MOAT_CT_SEEN_REPLY | MOAT_CT_FIN_INIT);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, FIN | ACK), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.flags, MOAT_CT_SEEN_REPLY | MOAT_CT_FIN_INIT | MOAT_CT_FIN_RESP);
	assert_int_equal(e.tcp_flags, SYN | ACK | FIN);
	/* the last ACK still belongs to it */
	expect_from_a(tcp(&p, A4, 40000, B4, 80, ACK), PASS);
	/* a new SYN on the same ports is a new flow */
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.flags, 0);
	assert_int_equal(e.packets, 1);
	assert_int_equal(e.tcp_flags, SYN);
	expect_stats(ALLOWED(6), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_CT_REPLY, 2),
		     S(MOAT_STAT_CT_ESTABLISHED, 2));
}

/* A closing flow lives for the close timeout only. */
static void test_ct_rst_closes(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	isolate_a_ingress();
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, SYN | ACK), PASS);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, RST), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.flags, MOAT_CT_SEEN_REPLY | MOAT_CT_RST);
	/* 5 s later: within the close timeout (10 s) */
	e.last_seen_ns = moat_ktime_coarse_ns() - 5 * 1000000000ull;
	assert_int_equal(fix_ct_put(F, IPPROTO_TCP, A4, 40000, B4, 80, &e), 0);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, ACK), PASS);
	/* 11 s later: gone; B's packet is judged as a new flow to A */
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	e.last_seen_ns = moat_ktime_coarse_ns() - 11 * 1000000000ull;
	assert_int_equal(fix_ct_put(F, IPPROTO_TCP, A4, 40000, B4, 80, &e), 0);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, ACK), DROP);
	/* an open flow that old would still pass */
	expect_from_a(tcp(&p, A4, 40001, B4, 80, SYN), PASS);
	expect_to_pod(tcp(&p, B4, 80, A4, 40001, SYN | ACK), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40001, B4, 80);
	e.last_seen_ns = moat_ktime_coarse_ns() - 11 * 1000000000ull;
	assert_int_equal(fix_ct_put(F, IPPROTO_TCP, A4, 40001, B4, 80, &e), 0);
	expect_to_pod(tcp(&p, B4, 80, A4, 40001, ACK), PASS);
	expect_stats(ALLOWED(7), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_CT_REPLY, 5), DENIED(1));
}

static void test_ct_expired_entry_judged_again(void **state)
{
	struct moat_config *cfg = moat_dp_config(F->dp);
	struct moat_ct_entry e;
	struct pkt p;
	__u64 now;

	(void)state;
	isolate_a_ingress();
	expect_from_a(udp(&p, A4, 5353, B4, 53), PASS);
	/* 59 s idle: alive (other timeout 60 s) */
	now = moat_ktime_coarse_ns();
	e = ct_entry(IPPROTO_UDP, A4, 5353, B4, 53);
	e.last_seen_ns = now - 59 * 1000000000ull;
	assert_int_equal(fix_ct_put(F, IPPROTO_UDP, A4, 5353, B4, 53, &e), 0);
	expect_to_pod(udp(&p, B4, 53, A4, 5353), PASS);
	assert_true(ct_entry(IPPROTO_UDP, A4, 5353, B4, 53).last_seen_ns >= now);
	/* 61 s idle: expired, the reply is a new (denied) flow */
	e = ct_entry(IPPROTO_UDP, A4, 5353, B4, 53);
	e.last_seen_ns = moat_ktime_coarse_ns() - 61 * 1000000000ull;
	assert_int_equal(fix_ct_put(F, IPPROTO_UDP, A4, 5353, B4, 53, &e), 0);
	expect_to_pod(udp(&p, B4, 53, A4, 5353), DROP);
	/* an expired entry's own direction is judged again and renewed */
	expect_from_a(udp(&p, A4, 5353, B4, 53), PASS);
	assert_int_equal(ct_entry(IPPROTO_UDP, A4, 5353, B4, 53).packets, 1);
	/* the timeout comes from the configuration */
	cfg->ct_other_timeout_s = 2;
	e = ct_entry(IPPROTO_UDP, A4, 5353, B4, 53);
	e.last_seen_ns = moat_ktime_coarse_ns() - 3 * 1000000000ull;
	assert_int_equal(fix_ct_put(F, IPPROTO_UDP, A4, 5353, B4, 53, &e), 0);
	expect_to_pod(udp(&p, B4, 53, A4, 5353), DROP);
	/* TCP without a reply yet: the SYN timeout */
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	cfg->ct_syn_timeout_s = 1;
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	e.last_seen_ns = moat_ktime_coarse_ns() - 2 * 1000000000ull;
	assert_int_equal(fix_ct_put(F, IPPROTO_TCP, A4, 40000, B4, 80, &e), 0);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, SYN | ACK), DROP);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 3), S(MOAT_STAT_CT_REPLY, 1), DENIED(3),
		     S(MOAT_STAT_DENY_CACHED, 1));
	expect_rules(S(MOAT_RULE_DEFAULT_ALLOW, 4), S(R_ISO_A_IN, 3));
}

/* ---- generations and revocation ------------------------------------------- */
/* A flow A -> B:80 allowed by NetworkPolicy rule R_1 on B's ingress. */
static void open_web_flow(void)
{
	struct pkt p;

	isolate_b_ingress();
	allow_in(ID_B, ID_A, IPPROTO_TCP, 80, R_1);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	expect_from_b(tcp(&p, B4, 80, A4, 40000, SYN | ACK), PASS);
}

static void test_ct_revoked_by_new_generation(void **state)
{
	__u32 gen0, gen1;
	struct pkt p;

	(void)state;
	open_web_flow();
	gen0 = live_generation();
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).generation, gen0);
	fix_rule_del(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_TCP, 80, 0);
	assert_int_equal(fix_commit(F, &gen1), 0);
	assert_int_equal(gen1, gen0 + 1);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, ACK), DROP);
	assert_false(ct_exists(IPPROTO_TCP, A4, 40000, B4, 80));
	expect_stats(ALLOWED(2), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_CT_REPLY, 1),
		     S(MOAT_STAT_CT_REVALIDATED, 1), S(MOAT_STAT_CT_REVOKED, 1),
		     S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 1), S(MOAT_STAT_DROP(MOAT_DROP_CT_REVOKED), 1));
	expect_rules(S(R_1, 2), S(R_ISO_B_IN, 1));
	/* the flow is gone: B's next packet is a new flow B -> A (allowed) */
	expect_from_b(tcp(&p, B4, 80, A4, 40000, ACK), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).init_identity, ID_B);
}

/* A reply packet revalidates the flow as its initiator opened it. */
static void test_ct_revoked_on_reply_packet(void **state)
{
	struct pkt p;

	(void)state;
	open_web_flow();
	fix_rule_del(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_TCP, 80, 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, ACK), DROP);
	assert_false(ct_exists(IPPROTO_TCP, A4, 40000, B4, 80));
	assert_int_equal(fix_stat(F, MOAT_STAT_CT_REVOKED), 1);
	assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_CT_REVOKED)), 1);
}

static void test_ct_revalidated_under_new_rule(void **state)
{
	struct moat_ct_entry e;
	__u32 gen1;
	struct pkt p;

	(void)state;
	open_web_flow();
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_TCP, 80, 0, fix_pv_netpol(R_2));
	assert_int_equal(fix_commit(F, &gen1), 0);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, ACK), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.generation, gen1);
	assert_int_equal(e.ingress_rule, R_2);
	/* judged once per generation */
	expect_from_b(tcp(&p, B4, 80, A4, 40000, ACK), PASS);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_CT_REPLY, 2),
		     S(MOAT_STAT_CT_ESTABLISHED, 1), S(MOAT_STAT_CT_REVALIDATED, 1));
	expect_rules(S(R_1, 2), S(R_2, 2));
}

/* A reply packet revalidates the flow in its initiator's direction. */
static void test_ct_revalidated_on_reply_packet(void **state)
{
	struct moat_ct_entry e;
	__u32 gen1;
	struct pkt p;

	(void)state;
	open_web_flow();
	fix_rule(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_TCP, 80, 0, fix_pv_netpol(R_2));
	assert_int_equal(fix_commit(F, &gen1), 0);
	expect_to_pod(tcp(&p, B4, 80, A4, 40000, ACK), PASS);
	e = ct_entry(IPPROTO_TCP, A4, 40000, B4, 80);
	assert_int_equal(e.generation, gen1);
	assert_int_equal(e.ingress_rule, R_2);
	assert_int_equal(e.init_identity, ID_A);
	expect_stats(ALLOWED(3), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_CT_REPLY, 2),
		     S(MOAT_STAT_CT_REVALIDATED, 1));
}

static void test_ct_revocation_disabled_keeps_flow(void **state)
{
	__u32 gen0 = 0;
	struct pkt p;

	(void)state;
	open_web_flow();
	gen0 = live_generation();
	moat_dp_config(F->dp)->flags &= ~MOAT_CFG_REVOKE_ESTABLISHED;
	fix_rule_del(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_TCP, 80, 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, ACK), PASS);
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).generation, gen0);
	expect_stats(ALLOWED(3), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_CT_REPLY, 1),
		     S(MOAT_STAT_CT_ESTABLISHED, 1));
	/* new flows follow the new generation */
	expect_from_a(tcp(&p, A4, 40001, B4, 80, SYN), DROP);
}

/* Flows to a Service VIP are judged at the backend, not revalidated. */
static void test_ct_deferred_not_revalidated(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(tcp(&p, A4, 40000, VIP4, 80, SYN), PASS);
	assert_int_equal(
		fix_subject(F, ID_A, MOAT_DIR_EGRESS, MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED, R_ISO_A_EG), 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40000, VIP4, 80, ACK), PASS);
	expect_stats(ALLOWED(2), S(MOAT_STAT_DEFERRED, 1), S(MOAT_STAT_CT_ESTABLISHED, 1));
}

/* A denied flow's next packets drop from the deny cache with the same rule
 * and counters; the cache holds only for the generation, hook and direction
 * it was judged in. */
static void test_deny_cache(void **state)
{
	struct pkt p;
	int i;

	(void)state;
	isolate_b_ingress();
	assert_int_equal(fix_commit(F, NULL), 0);
	for (i = 0; i < 3; i++)
		expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), DROP);
	for (i = 0; i < 3; i++)
		expect_from_a(tcp(&p, A6, 40000, B6, 80, SYN), DROP);
	expect_stats(DENIED(6), S(MOAT_STAT_DENY_CACHED, 4));
	expect_rules(S(R_ISO_B_IN, 6));
	/* the same packet at B's own interface is judged there, not taken
	 * from the from_pod entry */
	expect_to_pod(tcp(&p, A4, 40000, B4, 80, SYN), DROP);
	assert_int_equal(fix_stat(F, MOAT_STAT_DENY_CACHED), 4);
	/* the other direction is another flow: B may open it (A is not
	 * isolated), and then A's packets are its replies */
	expect_from_b(tcp(&p, B4, 80, A4, 40000, SYN), PASS);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN | ACK), PASS);
	assert_int_equal(moat_dp_ct_flush(F->dp), 0);
	/* a new generation allowing it: not stuck on the cached deny */
	expect_from_a(tcp(&p, A4, 40001, B4, 80, SYN), DROP);
	allow_in(ID_B, ID_A, IPPROTO_TCP, 80, R_1);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40001, B4, 80, SYN), PASS);
	assert_true(ct_exists(IPPROTO_TCP, A4, 40001, B4, 80));
}

/* Sampling of established flows: the node's 1-in-N over all packets, or
 * the rate the namespace of either end asks for, per flow (0: none). */
static __u64 samples_of_five(__u16 sport)
{
	struct pkt p;
	__u64 before;

	expect_from_a(tcp(&p, A4, sport, B4, 80, SYN), PASS); /* new flow: one event */
	before = fix_events_tried(F);
	for (int i = 0; i < 5; i++)
		expect_from_a(tcp(&p, A4, sport, B4, 80, ACK), PASS);
	return fix_events_tried(F) - before;
}

static void test_sampling_per_namespace(void **state)
{
	struct moat_config *cfg = moat_dp_config(F->dp);

	(void)state;
	cfg->sample_every = 0;
	assert_int_equal(samples_of_five(41000), 0);
	cfg->sample_every = 1;
	assert_int_equal(samples_of_five(41001), 5);
	/* B's namespace: 1 in 2 of its flows' packets (packets 2..6: 2, 4, 6) */
	assert_int_equal(fix_subject_sample(F, ID_B, 2), 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	assert_int_equal(samples_of_five(41002), 3);
	/* none, whatever the node says */
	assert_int_equal(fix_subject_sample(F, ID_B, 0), 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	assert_int_equal(samples_of_five(41003), 0);
	/* both ends set: the more frequent wins */
	assert_int_equal(fix_subject_sample(F, ID_A, 1), 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	assert_int_equal(samples_of_five(41004), 5);
}

/* Observe-only: denied packets are judged and counted, never dropped. */
static void test_enforce_cleared_counts_but_passes(void **state)
{
	struct pkt p;

	(void)state;
	moat_dp_config(F->dp)->flags &= ~MOAT_CFG_ENFORCE;
	open_web_flow();
	expect_from_a(tcp(&p, A4, 40001, B4, 81, SYN), PASS);
	assert_false(ct_exists(IPPROTO_TCP, A4, 40001, B4, 81));
	expect_from_a(tcp(&p, A4, 40001, B4, 81, SYN), PASS); /* the cached deny, not dropped either */
	expect_from_a(udp(&p, "10.0.0.99", 1, B4, 53), PASS); /* spoofed */
	expect_from_a(vlan_udp(&p, 3, 1), PASS);              /* malformed */
	expect_stats(ALLOWED(2), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_CT_REPLY, 1),
		     S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 4), S(MOAT_STAT_DROP(MOAT_DROP_POLICY), 2),
		     S(MOAT_STAT_DROP(MOAT_DROP_SPOOFED), 1), S(MOAT_STAT_DROP(MOAT_DROP_VLAN_DEPTH), 1),
		     S(MOAT_STAT_DENY_CACHED, 1));
	expect_rules(S(R_1, 2), S(R_ISO_B_IN, 2), S(MOAT_RULE_SPOOF, 1), S(MOAT_RULE_MALFORMED, 1));
	/* revocation still deletes the entry */
	fix_rule_del(F, ID_B, MOAT_DIR_INGRESS, ID_A, IPPROTO_TCP, 80, 0);
	assert_int_equal(fix_commit(F, NULL), 0);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, ACK), PASS);
	assert_false(ct_exists(IPPROTO_TCP, A4, 40000, B4, 80));
	assert_int_equal(fix_stat(F, MOAT_STAT_DROP(MOAT_DROP_CT_REVOKED)), 1);
}

static void test_ct_ipv6_handshake(void **state)
{
	struct moat_ct_entry e;
	struct pkt p;

	(void)state;
	isolate_a_ingress();
	isolate_b_ingress();
	allow_in(ID_B, ID_A, IPPROTO_TCP, 443, R_1);
	expect_from_a(tcp(&p, A6, 40000, B6, 443, SYN), PASS);
	expect_from_b(tcp(&p, B6, 443, A6, 40000, SYN | ACK), PASS);
	expect_to_pod(tcp(&p, B6, 443, A6, 40000, SYN | ACK), PASS);
	expect_from_a(tcp(&p, A6, 40000, B6, 443, ACK), PASS);
	expect_from_b(tcp(&p, B6, 443, A6, 40001, SYN), DROP);
	e = ct_entry(IPPROTO_TCP, A6, 40000, B6, 443);
	assert_int_equal(e.flags, MOAT_CT_SEEN_REPLY);
	assert_int_equal(e.ingress_rule, R_1);
	assert_int_equal(e.packets, 4);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_CT_REPLY, 2),
		     S(MOAT_STAT_CT_ESTABLISHED, 1), DENIED(1));
	expect_rules(S(R_1, 4), S(R_ISO_A_IN, 1));
}

/* ---- fragments ------------------------------------------------------------ */
/* UDP sport -> dport in two fragments: the first with the UDP header and
 * 16 bytes, the second with 8 more. */
static struct pkt *udp_frag(struct pkt *p, const char *s, __u16 sport, const char *d, __u16 dport, __u32 id,
			    bool first)
{
	eth_ip(p, s, d);
	if (is6(s)) {
		pkt_ip6_frag(p, id, first ? 0 : 24, first);
	} else {
		pkt_ip4_frag(p, id, first ? 0 : 24, first);
	}
	if (first) {
		pkt_udp(p, sport, dport);
		pkt_payload(p, "0123456789abcdef", 16);
	} else {
		pkt_next_proto(p, IPPROTO_UDP);
		pkt_payload(p, "ghijklmn", 8);
	}
	pkt_finish(p);
	return p;
}

static void test_frag_later_joins_first(void **state)
{
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	allow_in(ID_B, ID_A, IPPROTO_UDP, 53, R_1);
	expect_from_a(udp_frag(&p, A4, 5353, B4, 53, 0x1111, true), PASS);
	assert_int_equal(fix_frag_count(F), 1);
	expect_from_a(udp_frag(&p, A4, 5353, B4, 53, 0x1111, false), PASS);
	expect_from_a(udp_frag(&p, A6, 5353, B6, 53, 0x22222222, true), PASS);
	expect_from_a(udp_frag(&p, A6, 5353, B6, 53, 0x22222222, false), PASS);
	assert_int_equal(fix_frag_count(F), 2);
	expect_stats(ALLOWED(4), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_CT_ESTABLISHED, 2),
		     S(MOAT_STAT_FRAG_LATER, 2));
	expect_rules(S(R_1, 4));
	assert_int_equal(ct_entry(IPPROTO_UDP, A4, 5353, B4, 53).packets, 2);
	assert_int_equal(ct_entry(IPPROTO_UDP, A6, 5353, B6, 53).packets, 2);
}

/* The fragmentable part starts with a destination-options header: later
 * fragments name it (60) in their fragment header and carry no UDP header;
 * they must still join the first fragment's flow. */
static void test_frag6_ext_after_fragment_header(void **state)
{
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	allow_in(ID_B, ID_A, IPPROTO_UDP, 53, R_1);
	eth_ip(&p, A6, B6);
	pkt_ip6_frag(&p, 0x33333333, 0, true);
	pkt_ip6_ext(&p, PKT_IP6_DSTOPTS, 8);
	pkt_udp(&p, 5353, 53);
	pkt_payload(&p, "0123456789abcdef", 16);
	assert_int_equal(pkt_finish(&p), 0);
	expect_from_a(&p, PASS);
	eth_ip(&p, A6, B6);
	pkt_ip6_frag(&p, 0x33333333, 32, false);
	pkt_next_proto(&p, PKT_IP6_DSTOPTS);
	pkt_payload(&p, "ghijklmn", 8);
	assert_int_equal(pkt_finish(&p), 0);
	expect_from_a(&p, PASS);
	expect_to_pod(&p, PASS);
	expect_stats(ALLOWED(3), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_CT_ESTABLISHED, 2),
		     S(MOAT_STAT_FRAG_LATER, 2));
	assert_int_equal(ct_entry(IPPROTO_UDP, A6, 5353, B6, 53).packets, 3);
}

static void test_frag_later_without_first_dropped(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(udp_frag(&p, A4, 5353, B4, 53, 0x1111, false), DROP);
	expect_from_a(udp_frag(&p, A6, 5353, B6, 53, 0x1111, false), DROP);
	/* a first fragment of another datagram does not help */
	expect_from_a(udp_frag(&p, A4, 5353, B4, 53, 0x1112, true), PASS);
	expect_from_a(udp_frag(&p, A4, 5353, B4, 53, 0x1111, false), DROP);
	expect_stats(S(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), 3),
		     S(MOAT_STAT_DROP(MOAT_DROP_FRAG_NO_FIRST), 3), S(MOAT_STAT_FRAG_LATER, 3), NEW_FLOWS(1));
	expect_rules(S(MOAT_RULE_MALFORMED, 3), S(MOAT_RULE_DEFAULT_ALLOW, 1));
}

static void test_frag_first_denied_later_dropped(void **state)
{
	struct pkt p;

	(void)state;
	isolate_b_ingress();
	expect_from_a(udp_frag(&p, A4, 5353, B4, 53, 0x1111, true), DROP);
	expect_from_a(udp_frag(&p, A4, 5353, B4, 53, 0x1111, false), DROP);
	expect_stats(DENIED(2), S(MOAT_STAT_FRAG_LATER, 1));
	expect_rules(S(R_ISO_B_IN, 1), S(MOAT_RULE_NONE, 1));
	assert_int_equal(fix_ct_count(F), 0);
}

/* A fragmented datagram of a flow that is already tracked. */
static void test_frag_of_established_flow(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(udp(&p, A4, 5353, B4, 53), PASS);
	expect_from_a(udp_frag(&p, A4, 5353, B4, 53, 0x3333, true), PASS);
	expect_from_a(udp_frag(&p, A4, 5353, B4, 53, 0x3333, false), PASS);
	expect_from_a(udp(&p, A6, 5353, B6, 53), PASS);
	expect_from_a(udp_frag(&p, A6, 5353, B6, 53, 0x4444, true), PASS);
	expect_from_a(udp_frag(&p, A6, 5353, B6, 53, 0x4444, false), PASS);
	/* and of the reply direction */
	expect_to_pod(udp_frag(&p, B4, 53, A4, 5353, 0x5555, true), PASS);
	expect_to_pod(udp_frag(&p, B4, 53, A4, 5353, 0x5555, false), PASS);
	expect_stats(ALLOWED(8), S(MOAT_STAT_CT_NEW, 2), S(MOAT_STAT_CT_ESTABLISHED, 4),
		     S(MOAT_STAT_CT_REPLY, 2), S(MOAT_STAT_FRAG_LATER, 3));
}

/* A fragmented datagram to a Service VIP. */
static void test_frag_to_vip(void **state)
{
	struct pkt p;

	(void)state;
	expect_from_a(udp_frag(&p, A4, 5353, VIP4, 53, 0x6666, true), PASS);
	expect_from_a(udp_frag(&p, A4, 5353, VIP4, 53, 0x6666, false), PASS);
	expect_stats(ALLOWED(2), S(MOAT_STAT_DEFERRED, 1), S(MOAT_STAT_CT_ESTABLISHED, 1),
		     S(MOAT_STAT_FRAG_LATER, 1));
}

/* ---- the generation switch -------------------------------------------------- */
static void test_generation_switch(void **state)
{
	struct moat_config *cfg = moat_dp_config(F->dp);
	struct moat_policy_key k = { .subject = ID_B, .peer = ID_A, .port = 80, .proto = IPPROTO_TCP };
	struct moat_policy_val v = fix_pv_netpol(R_1), got;
	int slot_fd[2] = { moat_dp_map_fd(F->dp, "moat_pol_a"), moat_dp_map_fd(F->dp, "moat_pol_b") };
	__u32 gen0, gen1, active0;
	struct moat_tx *tx;

	(void)state;
	assert_int_equal(fix_commit(F, NULL), 0); /* the topology */
	assert_true(slot_fd[0] >= 0 && slot_fd[1] >= 0);
	gen0 = live_generation();
	active0 = cfg->active;
	assert_int_equal(cfg->slot_gen[active0], gen0);
	assert_int_equal(moat_dp_lookup(F->dp, MOAT_T_POL, &k, &got), -ENOENT);

	assert_int_equal(moat_tx_begin(F->dp, false, &tx), 0);
	assert_int_equal(moat_tx_put(tx, MOAT_T_POL, &k, &v), 0);
	assert_int_equal(moat_tx_ops(tx), 1);
	assert_int_equal(moat_tx_commit(tx, &gen1), 0);
	assert_int_equal(gen1, gen0 + 1);
	assert_int_equal(live_generation(), gen1);
	assert_int_equal(cfg->active, !active0);
	assert_int_equal(cfg->slot_gen[cfg->active], gen1);
	/* live at once, before the other slot settles */
	assert_int_equal(moat_dp_lookup(F->dp, MOAT_T_POL, &k, &got), 0);
	assert_memory_equal(&got, &v, sizeof(v));
	assert_int_equal(moat_dp_settle(F->dp), 0);
	/* both slots hold it */
	for (int s = 0; s < 2; s++) {
		memset(&got, 0, sizeof(got));
		assert_int_equal(bpf_map_lookup_elem(slot_fd[s], &k, &got), 0);
		assert_memory_equal(&got, &v, sizeof(v));
	}
	/* a delete reaches both slots too */
	assert_int_equal(moat_tx_begin(F->dp, false, &tx), 0);
	assert_int_equal(moat_tx_del(tx, MOAT_T_POL, &k), 0);
	assert_int_equal(moat_tx_commit(tx, NULL), 0);
	assert_int_equal(live_generation(), gen1 + 1);
	assert_int_equal(cfg->active, active0);
	assert_int_equal(moat_dp_lookup(F->dp, MOAT_T_POL, &k, &got), -ENOENT);
	assert_int_equal(moat_dp_settle(F->dp), 0);
	for (int s = 0; s < 2; s++)
		assert_int_equal(bpf_map_lookup_elem(slot_fd[s], &k, &got), -ENOENT);
	/* an aborted transaction changes nothing */
	assert_int_equal(moat_tx_begin(F->dp, false, &tx), 0);
	assert_int_equal(moat_tx_put(tx, MOAT_T_POL, &k, &v), 0);
	moat_tx_abort(tx);
	assert_int_equal(live_generation(), gen1 + 1);
	assert_int_equal(moat_dp_lookup(F->dp, MOAT_T_POL, &k, &got), -ENOENT);
}

/* Packets are judged with the slot the commit switched to, at once. */
static void test_generation_packets_see_new_slot(void **state)
{
	const __u32 isolated = MOAT_SUBJ_ACTIVE | MOAT_SUBJ_ISOLATED;
	struct moat_subject subj = { .dir = { { .flags = isolated, .isolate_rule = R_ISO_B_IN } } };
	__u32 key = ID_B, gen;
	struct moat_tx *tx;
	struct pkt p;

	(void)state;
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	assert_int_equal(moat_tx_begin(F->dp, false, &tx), 0);
	assert_int_equal(moat_tx_put(tx, MOAT_T_SUBJ, &key, &subj), 0);
	assert_int_equal(moat_tx_commit(tx, &gen), 0);
	/* no settle: the new slot is live */
	expect_from_a(tcp(&p, A4, 40001, B4, 80, SYN), DROP);
	expect_from_a(tcp(&p, A4, 40000, B4, 80, ACK), DROP); /* revoked */
	assert_int_equal(moat_dp_settle(F->dp), 0);
	assert_int_equal(fix_stat(F, MOAT_STAT_CT_REVOKED), 1);
	assert_int_equal(live_generation(), gen);
}

/* ---- the fixture's benchmark runner ------------------------------------------- */
static void test_run_repeat(void **state)
{
	__u32 ns = 0;
	struct pkt p;

	(void)state;
	expect_from_a(tcp(&p, A4, 40000, B4, 80, SYN), PASS);
	tcp(&p, A4, 40000, B4, 80, ACK);
	assert_int_equal(fix_run_repeat(F, MOAT_HOOK_FROM_POD, IF_A, p.data, p.len, 1000, &ns), XDP_PASS);
	assert_true(ns > 0);
	expect_stats(ALLOWED(1001), S(MOAT_STAT_CT_NEW, 1), S(MOAT_STAT_CT_ESTABLISHED, 1000));
	assert_int_equal(ct_entry(IPPROTO_TCP, A4, 40000, B4, 80).packets, 1001);
}

/* ============================================================================ */
#define T(fn) cmocka_unit_test_setup(fn, setup)

int main(void)
{
	const struct CMUnitTest parser[] = {
		T(test_parse_arp_is_not_ip),
		T(test_parse_ethernet_truncated),
		T(test_parse_vlan_one_and_two_tags),
		T(test_parse_vlan_three_tags_dropped),
		T(test_parse_vlan_truncated),
		T(test_parse_ip4_options),
		T(test_parse_ip4_bad_ihl_and_version),
		T(test_parse_ip4_truncated_header),
		T(test_parse_ip4_total_length),
		T(test_parse_ip6_each_extension_header),
		T(test_parse_ip6_extension_chain_limit),
		T(test_parse_ip6_extension_truncated),
		T(test_parse_ip6_truncated_header),
		T(test_parse_tcp_options),
		T(test_parse_tcp_bad_data_offset),
		T(test_parse_l4_truncated),
		T(test_parse_sctp_init),
		T(test_parse_icmp_error_inner_packet),
		T(test_parse_ndp_and_link_local_pass),
		T(test_parse_truncation_sweep_tcp4),
		T(test_parse_truncation_sweep_ip6_ext),
		T(test_parse_other_l4_protocol),
	};
	const struct CMUnitTest policy[] = {
		T(test_policy_netpol_exact_peer_and_port),
		T(test_policy_netpol_ipv6),
		T(test_policy_peer_any_port),
		T(test_policy_class_row_and_port),
		T(test_policy_class_any),
		T(test_policy_lookup_chain_first_hit_wins),
		T(test_policy_cidr_regions_ipv4),
		T(test_policy_cidr_regions_ipv6),
		T(test_policy_source_region_from_endpoint),
		T(test_policy_rank_merge_admin),
		T(test_policy_rank_merge_baseline),
		T(test_policy_admin_pass_goes_to_netpol),
		T(test_policy_baseline_after_netpol),
		T(test_policy_default_allow),
		T(test_policy_rule_attribution),
		T(test_policy_audit),
		T(test_policy_port_range_classes),
		T(test_policy_sctp_port),
		T(test_policy_local_node_exempt),
		T(test_antispoofing),
		T(test_antispoofing_covers_tracked_flows),
		T(test_endpoints_array_and_hash),
		T(test_unknown_interface),
		T(test_to_pod_unknown_destination),
		T(test_vip_deferred),
		T(test_uplink_not_ours),
	};
	const struct CMUnitTest conntrack[] = {
		T(test_ct_tcp_handshake_reply_passes),
		T(test_ct_initiator_is_endpoint_b),
		T(test_ct_udp_reply),
		T(test_ct_icmp_echo_reply),
		T(test_ct_icmp_error_related),
		T(test_ct_icmp_error_to_third_party_is_judged),
		T(test_ct_fin_fin_closes),
		T(test_ct_rst_closes),
		T(test_ct_expired_entry_judged_again),
		T(test_ct_revoked_by_new_generation),
		T(test_ct_revoked_on_reply_packet),
		T(test_ct_revalidated_under_new_rule),
		T(test_ct_revalidated_on_reply_packet),
		T(test_ct_revocation_disabled_keeps_flow),
		T(test_ct_deferred_not_revalidated),
		T(test_enforce_cleared_counts_but_passes),
		T(test_deny_cache),
		T(test_sampling_per_namespace),
		T(test_ct_ipv6_handshake),
		T(test_frag_later_joins_first),
		T(test_frag6_ext_after_fragment_header),
		T(test_frag_later_without_first_dropped),
		T(test_frag_first_denied_later_dropped),
		T(test_frag_of_established_flow),
		T(test_frag_to_vip),
	};
	const struct CMUnitTest generation[] = {
		T(test_generation_switch),
		T(test_generation_packets_see_new_slot),
		T(test_run_repeat),
	};
	const char *const veth[2] = { "moat-a", "moat-b" };
	int ifindex[2], err, failed = 0;

	if (geteuid() != 0) {
		fprintf(stderr, "skip: needs root (BPF, network namespaces)\n");
		return 77;
	}
	err = fix_private_netns(veth, ifindex);
	if (err) {
		fprintf(stderr, "skip: no private network namespace with a veth pair: %s\n", strerror(-err));
		return 77;
	}
	IF_A = ifindex[0];
	IF_B = ifindex[1];
	if (system("ip link add moat-h index 40000 type veth peer name moat-h2")) {
		fprintf(stderr, "cannot create an interface with ifindex %d\n", IF_HIGH);
		return 1;
	}
	err = fix_open(&F);
	if (err) {
		fprintf(stderr, "skip: cannot load the datapath: %s\n", strerror(-err));
		return 77;
	}
	failed += cmocka_run_group_tests_name("parser", parser, NULL, NULL);
	failed += cmocka_run_group_tests_name("policy", policy, NULL, NULL);
	failed += cmocka_run_group_tests_name("conntrack", conntrack, NULL, NULL);
	failed += cmocka_run_group_tests_name("generation", generation, NULL, NULL);
	fix_close(F);
	return failed ? 1 : 0;
}
