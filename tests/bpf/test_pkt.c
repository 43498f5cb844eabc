// SPDX-License-Identifier: Apache-2.0
/* The packet builder (tests/lib/pkt) on its own: header fields, lengths,
 * next-protocol chaining, truncation, errors, and checksums against values
 * Wireshark (tshark 4.0) verified as correct for the same packets. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <cmocka.h>

#include "../lib/pkt.h"

static __u16 be16_at(const struct pkt *p, int off)
{
	return (__u16)(p->data[off] << 8 | p->data[off + 1]);
}

/* The 16-bit checksum field at byte field_off of the nth layer of a kind. */
static __u16 csum_of(const struct pkt *p, enum pkt_layer_kind kind, int nth, int field_off)
{
	int off = pkt_offset(p, kind, nth);

	assert_true(off >= 0);
	return be16_at(p, off + field_off);
}

static void eth_ip4(struct pkt *p, const char *s, const char *d)
{
	pkt_init(p);
	pkt_eth(p, NULL, NULL);
	pkt_ip4(p, pkt_a4(s), pkt_a4(d));
}

static void eth_ip6(struct pkt *p, const char *s, const char *d)
{
	pkt_init(p);
	pkt_eth(p, NULL, NULL);
	pkt_ip6(p, pkt_a6(s), pkt_a6(d));
}

static void test_tcp4_with_options(void **state)
{
	struct pkt p;

	(void)state;
	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_tcp(&p, 40000, 80, PKT_TCP_SYN);
	pkt_tcp_options(&p, "\x02\x04\x05\xb4\x04\x02", 6);
	pkt_payload(&p, "hello", 5);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(p.len, 14 + 20 + 28 + 5);
	assert_int_equal(be16_at(&p, 12), ETH_P_IP);
	assert_int_equal(pkt_ip4_hdr(&p)->protocol, IPPROTO_TCP);
	assert_int_equal(ntohs(pkt_ip4_hdr(&p)->tot_len), 20 + 28 + 5);
	assert_int_equal(pkt_tcp_hdr(&p)->doff, 7);
	assert_int_equal(pkt_tcp_hdr(&p)->syn, 1);
	assert_int_equal(p.data[14 + 20 + 20 + 6], 1); /* NOP padding */
	assert_int_equal(csum_of(&p, PKT_L_IP4, 0, 10), 0x548d);
	assert_int_equal(csum_of(&p, PKT_L_TCP, 0, 16), 0x8eb4);
	/* a correct header sums to zero */
	assert_int_equal(pkt_csum(pkt_ip4_hdr(&p), 20, 0), 0);
}

static void test_udp4_ip_options(void **state)
{
	struct pkt p;

	(void)state;
	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_ip4_options(&p, "\x94\x04\x00\x00", 4);
	pkt_udp(&p, 5353, 53);
	pkt_payload(&p, "abcde", 5);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_ip4_hdr(&p)->ihl, 6);
	assert_int_equal(pkt_offset(&p, PKT_L_UDP, 0), 14 + 24);
	assert_int_equal(ntohs(pkt_udp_hdr(&p)->len), 8 + 5);
	assert_int_equal(csum_of(&p, PKT_L_IP4, 0, 10), 0xbf8d);
	assert_int_equal(csum_of(&p, PKT_L_UDP, 0, 6), 0xacec);
}

static void test_vlan_ip6_extension_headers(void **state)
{
	struct pkt p;
	int off;

	(void)state;
	pkt_init(&p);
	pkt_eth(&p, NULL, NULL);
	pkt_vlan(&p, 0x88a8, 10);
	pkt_vlan(&p, 0x8100, 20);
	pkt_ip6(&p, pkt_a6("fd00::1"), pkt_a6("fd00::2"));
	pkt_ip6_ext(&p, PKT_IP6_HOPOPTS, 8);
	pkt_ip6_ext(&p, PKT_IP6_DSTOPTS, 16);
	pkt_udp(&p, 5353, 53);
	pkt_payload(&p, "abcde", 5);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(be16_at(&p, 12), 0x88a8);
	assert_int_equal(be16_at(&p, 14), 10);
	assert_int_equal(be16_at(&p, 16), 0x8100);
	assert_int_equal(be16_at(&p, 20), ETH_P_IPV6);
	off = pkt_offset(&p, PKT_L_IP6, 0);
	assert_int_equal(off, 22);
	assert_int_equal(p.data[off + 6], PKT_IP6_HOPOPTS);
	assert_int_equal(be16_at(&p, off + 4), 8 + 16 + 8 + 5);
	off = pkt_offset(&p, PKT_L_IP6_EXT, 0);
	assert_int_equal(p.data[off], PKT_IP6_DSTOPTS);
	assert_int_equal(p.data[off + 1], 0);
	off = pkt_offset(&p, PKT_L_IP6_EXT, 1);
	assert_int_equal(p.data[off], IPPROTO_UDP);
	assert_int_equal(p.data[off + 1], 1);
	assert_int_equal(p.data[off + 2], 1); /* PadN */
	assert_int_equal(p.data[off + 3], 12);
	assert_int_equal(csum_of(&p, PKT_L_UDP, 0, 6), 0xc6ea);
}

static void test_ip6_ah_routing_fragment(void **state)
{
	struct pkt p;
	int off;

	(void)state;
	eth_ip6(&p, "fd00::1", "fd00::2");
	pkt_ip6_ext(&p, PKT_IP6_AH, 24);
	pkt_ip6_ext(&p, PKT_IP6_ROUTING, 24);
	pkt_tcp(&p, 1, 2, PKT_TCP_SYN);
	assert_int_equal(pkt_finish(&p), 0);
	off = pkt_offset(&p, PKT_L_IP6_EXT, 0);
	assert_int_equal(p.data[off], PKT_IP6_ROUTING);
	assert_int_equal(p.data[off + 1], 24 / 4 - 2);
	off = pkt_offset(&p, PKT_L_IP6_EXT, 1);
	assert_int_equal(p.data[off], IPPROTO_TCP);
	assert_int_equal(p.data[off + 1], 24 / 8 - 1);
	assert_int_equal(csum_of(&p, PKT_L_TCP, 0, 16), 0xb5da);

	eth_ip6(&p, "fd00::1", "fd00::2");
	pkt_ip6_frag(&p, 0x2222, 24, false);
	pkt_next_proto(&p, IPPROTO_UDP);
	pkt_payload(&p, "ghijklmn", 8);
	assert_int_equal(pkt_finish(&p), 0);
	off = pkt_offset(&p, PKT_L_IP6_FRAG, 0);
	assert_int_equal(p.data[off - 40 + 6], PKT_IP6_FRAGMENT);
	assert_int_equal(p.data[off], IPPROTO_UDP);
	assert_int_equal(be16_at(&p, off + 2), 24);
	assert_int_equal(be16_at(&p, off + 6), 0x2222);

	/* bad lengths are refused */
	eth_ip6(&p, "fd00::1", "fd00::2");
	assert_int_equal(pkt_ip6_ext(&p, PKT_IP6_HOPOPTS, 12), -EINVAL);
	assert_int_equal(pkt_finish(&p), -EINVAL);
}

static void test_icmp_echo(void **state)
{
	struct pkt p;

	(void)state;
	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_icmp4_echo(&p, 8, 7, 1);
	pkt_payload(&p, "ping", 4);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_ip4_hdr(&p)->protocol, IPPROTO_ICMP);
	assert_int_equal(csum_of(&p, PKT_L_IP4, 0, 10), 0x54a7);
	assert_int_equal(csum_of(&p, PKT_L_ICMP4, 0, 2), 0x1927);

	eth_ip6(&p, "fd00::1", "fd00::2");
	pkt_icmp6_echo(&p, 128, 7, 1);
	pkt_payload(&p, "ping", 4);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_ip6_hdr(&p)->nexthdr, IPPROTO_ICMPV6);
	assert_int_equal(csum_of(&p, PKT_L_ICMP6, 0, 2), 0xa6db);
}

static void test_icmp_errors_embed_a_packet(void **state)
{
	struct pkt p;

	(void)state;
	eth_ip4(&p, "10.0.0.2", "10.0.0.1");
	pkt_icmp4(&p, 3, 3);
	pkt_ip4(&p, pkt_a4("10.0.0.1"), pkt_a4("10.0.0.2"));
	pkt_udp(&p, 5353, 53);
	pkt_payload(&p, "abcd", 4);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_ip4_hdr(&p)->protocol, IPPROTO_ICMP);
	assert_int_equal(((struct iphdr *)pkt_hdr(&p, PKT_L_IP4, 1))->protocol, IPPROTO_UDP);
	assert_int_equal(ntohs(((struct iphdr *)pkt_hdr(&p, PKT_L_IP4, 1))->tot_len), 20 + 8 + 4);
	assert_int_equal(csum_of(&p, PKT_L_IP4, 0, 10), 0x548b);
	assert_int_equal(csum_of(&p, PKT_L_IP4, 1, 10), 0x5497);
	assert_int_equal(csum_of(&p, PKT_L_UDP, 0, 6), 0x11ef);
	assert_int_equal(csum_of(&p, PKT_L_ICMP4, 0, 2), 0x111d);

	eth_ip6(&p, "fd00::2", "fd00::1");
	pkt_icmp6(&p, 1, 4);
	pkt_ip6(&p, pkt_a6("fd00::1"), pkt_a6("fd00::2"));
	pkt_udp(&p, 5353, 53);
	pkt_payload(&p, "abcd", 4);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_ip6_hdr(&p)->nexthdr, IPPROTO_ICMPV6);
	assert_int_equal(csum_of(&p, PKT_L_UDP, 0, 6), 0x2bed);
	assert_int_equal(csum_of(&p, PKT_L_ICMP6, 0, 2), 0x9351);
}

static void test_sctp_init_crc32c(void **state)
{
	static const __u8 wire_crc[4] = { 0x90, 0xda, 0x5c, 0x9d };
	struct pkt p;
	int off;

	(void)state;
	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_sctp_init(&p, 5000, 6000, 0x01020304);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_ip4_hdr(&p)->protocol, IPPROTO_SCTP);
	assert_int_equal(csum_of(&p, PKT_L_IP4, 0, 10), 0x5410);
	off = pkt_offset(&p, PKT_L_SCTP, 0);
	assert_memory_equal(p.data + off + 8, wire_crc, 4);
	assert_int_equal(p.data[off + 12], 1); /* INIT chunk */
	/* RFC 3720 B.4 test vector: 32 zero bytes */
	{
		__u8 zeros[32] = { 0 };
		assert_int_equal(pkt_crc32c(zeros, sizeof(zeros)), 0x8a9136aa);
	}
}

static void test_arp_and_ndp(void **state)
{
	struct pkt p;
	int off;

	(void)state;
	pkt_init(&p);
	pkt_eth(&p, NULL, NULL);
	pkt_arp(&p, 1, pkt_a4("10.0.0.1"), pkt_a4("10.0.0.2"));
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(p.len, 42);
	assert_int_equal(be16_at(&p, 12), ETH_P_ARP);
	assert_int_equal(be16_at(&p, 14 + 6), 1);

	eth_ip6(&p, "fe80::1", "ff02::1:ff00:2");
	pkt_icmp6_ns(&p, pkt_a6("fd00::2"));
	assert_int_equal(pkt_finish(&p), 0);
	off = pkt_offset(&p, PKT_L_ICMP6, 0);
	assert_int_equal(p.data[off], 135);
	assert_int_equal(p.len, 14 + 40 + 32);
	assert_int_equal(csum_of(&p, PKT_L_ICMP6, 0, 2), 0x7c17);
}

static void test_ip4_fragments(void **state)
{
	struct pkt p;

	(void)state;
	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_ip4_frag(&p, 0x1111, 0, true);
	pkt_udp(&p, 5353, 53);
	pkt_payload(&p, "0123456789abcdef", 16);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(ntohs(pkt_ip4_hdr(&p)->frag_off), 0x2000);
	assert_int_equal(ntohs(pkt_ip4_hdr(&p)->id), 0x1111);
	assert_int_equal(csum_of(&p, PKT_L_IP4, 0, 10), 0x35ae);

	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_ip4_frag(&p, 0x1111, 24, false);
	pkt_next_proto(&p, IPPROTO_UDP);
	pkt_payload(&p, "ghijklmn", 8);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(ntohs(pkt_ip4_hdr(&p)->frag_off), 3);
	assert_int_equal(pkt_ip4_hdr(&p)->protocol, IPPROTO_UDP);
	assert_int_equal(pkt_ip4_frag(&p, 1, 7, false), -EINVAL); /* not a multiple of 8 */
}

static void test_truncation_before_and_after_finish(void **state)
{
	struct pkt p;

	(void)state;
	/* before: the packet is sent that short, lengths say so */
	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_udp(&p, 1, 2);
	pkt_payload(&p, "0123456789", 10);
	assert_int_equal(pkt_truncate(&p, 14 + 20 + 8 + 3), 0);
	assert_int_equal(pkt_payload(&p, "x", 1), -EBUSY); /* nothing after a cut */
	pkt_init(&p);
	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_udp(&p, 1, 2);
	pkt_payload(&p, "0123456789", 10);
	pkt_truncate(&p, 14 + 20 + 8 + 3);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(p.len, 45);
	assert_int_equal(p.built_len, 52);
	assert_int_equal(ntohs(pkt_ip4_hdr(&p)->tot_len), 20 + 8 + 3);
	assert_int_equal(ntohs(pkt_udp_hdr(&p)->len), 8 + 3);
	/* after: the frame is cut in transit, lengths describe the whole */
	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_udp(&p, 1, 2);
	pkt_payload(&p, "0123456789", 10);
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_truncate(&p, 20), 0);
	assert_int_equal(p.len, 20);
	assert_int_equal(ntohs(pkt_ip4_hdr(&p)->tot_len), 20 + 8 + 10);
	assert_int_equal(pkt_truncate(&p, 21), -EINVAL);
}

static void test_errors_are_sticky(void **state)
{
	__u8 big[PKT_MAX_LEN];
	struct pkt p;

	(void)state;
	memset(big, 0, sizeof(big));
	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_udp(&p, 1, 2);
	assert_int_equal(pkt_ip4_options(&p, "\x01", 1), -EINVAL); /* IP header not last */
	assert_int_equal(pkt_udp(&p, 1, 2), -EINVAL);
	assert_int_equal(pkt_finish(&p), -EINVAL);

	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	assert_int_equal(pkt_payload(&p, big, sizeof(big)), -ENOSPC);
	assert_int_equal(pkt_finish(&p), -ENOSPC);

	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	pkt_tcp(&p, 1, 2, 0);
	assert_int_equal(pkt_tcp_options(&p, big, 41), -EINVAL); /* over 40 bytes */

	eth_ip4(&p, "10.0.0.1", "10.0.0.2");
	assert_int_equal(pkt_finish(&p), 0);
	assert_int_equal(pkt_udp(&p, 1, 2), -EBUSY); /* finished */
}

static void test_hexdump(void **state)
{
	char buf[512] = { 0 };
	FILE *out = fmemopen(buf, sizeof(buf), "w");

	(void)state;
	assert_non_null(out);
	pkt_hexdump(out, "ABCDEFGHIJKLMNOPQ", 17);
	fclose(out);
	assert_string_equal(buf,
			    "0000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n"
			    "0010  51                                                |Q|\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp4_with_options),
		cmocka_unit_test(test_udp4_ip_options),
		cmocka_unit_test(test_vlan_ip6_extension_headers),
		cmocka_unit_test(test_ip6_ah_routing_fragment),
		cmocka_unit_test(test_icmp_echo),
		cmocka_unit_test(test_icmp_errors_embed_a_packet),
		cmocka_unit_test(test_sctp_init_crc32c),
		cmocka_unit_test(test_arp_and_ndp),
		cmocka_unit_test(test_ip4_fragments),
		cmocka_unit_test(test_truncation_before_and_after_finish),
		cmocka_unit_test(test_errors_are_sticky),
		cmocka_unit_test(test_hexdump),
	};

	return cmocka_run_group_tests_name("pkt", tests, NULL, NULL);
}
