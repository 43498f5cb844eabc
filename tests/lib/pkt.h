/* SPDX-License-Identifier: Apache-2.0 */
/* Packet builder for datapath tests and benchmarks.
 *
 * A packet is built outermost layer first, one call per header, into a
 * fixed buffer; pkt_finish() then fills every length, next-protocol and
 * checksum field from the innermost layer outwards.  Each layer covers the
 * rest of the packet, so an ICMP error embeds whatever is pushed after it:
 *
 *	struct pkt p;
 *	pkt_init(&p);
 *	pkt_eth(&p, NULL, NULL);
 *	pkt_ip4(&p, pkt_a4("10.0.0.1"), pkt_a4("10.0.0.2"));
 *	pkt_tcp(&p, 40000, 80, PKT_TCP_SYN);
 *	pkt_payload(&p, "hello", 5);
 *	if (pkt_finish(&p)) ...
 *	run(p.data, p.len);
 *
 * Next-protocol fields (EtherType, IPv4 protocol, IPv6 next header) are set
 * when the following layer is pushed.  Errors are sticky: every call
 * returns 0 or a negative errno, and pkt_finish() returns the first error
 * of the whole chain, so callers may check only that.
 *
 * Malformed packets: change header fields after pkt_finish() through the
 * accessors (pkt_ip4_hdr(), ...), or cut the packet with pkt_truncate():
 * before pkt_finish() the packet is sent that short (lengths describe the
 * cut packet), after it the frame is cut in transit (lengths describe the
 * whole packet).
 */
#ifndef MOAT_TEST_PKT_H
#define MOAT_TEST_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <netinet/in.h>
#include <linux/types.h>

#define PKT_MAX_LEN    4096 /* more than XDP test runs take (about 3.5 KiB) */
#define PKT_MAX_LAYERS 32

enum pkt_layer_kind {
	PKT_L_ETH = 1,
	PKT_L_VLAN,
	PKT_L_ARP,
	PKT_L_IP4,
	PKT_L_IP6,
	PKT_L_IP6_EXT, /* hop-by-hop, routing, destination options, AH */
	PKT_L_IP6_FRAG,
	PKT_L_TCP,
	PKT_L_UDP,
	PKT_L_SCTP,
	PKT_L_ICMP4,
	PKT_L_ICMP6,
	PKT_L_RAW, /* payload bytes */
};

struct pkt_layer {
	__u8 kind;       /* enum pkt_layer_kind */
	__u8 proto;      /* what the enclosing header names it: IPPROTO_* or 0 */
	__u16 ethertype; /* what an Ethernet/VLAN header before it names it */
	__u16 off;       /* offset of the header in the packet */
	__u16 hlen;      /* header length (grows with options) */
};

struct pkt {
	size_t len;       /* bytes of the packet */
	size_t built_len; /* bytes pushed; > len after a truncation */
	struct pkt_layer layer[PKT_MAX_LAYERS];
	int nlayers;
	int err; /* first error, sticky */
	bool finished;
	__u8 align_pad[1];
	/* 2 bytes past an 8-byte boundary, like NET_IP_ALIGN: the headers
	 * after Ethernet are aligned for the accessors' struct types */
	__u8 data[PKT_MAX_LEN];
};
_Static_assert(offsetof(struct pkt, data) % 8 == 2, "IP header alignment");

/* TCP flags (byte 13 of the header). */
#define PKT_TCP_FIN 0x01
#define PKT_TCP_SYN 0x02
#define PKT_TCP_RST 0x04
#define PKT_TCP_PSH 0x08
#define PKT_TCP_ACK 0x10
#define PKT_TCP_URG 0x20

/* IPv6 extension header numbers. */
#define PKT_IP6_HOPOPTS  0
#define PKT_IP6_ROUTING  43
#define PKT_IP6_FRAGMENT 44
#define PKT_IP6_AH       51
#define PKT_IP6_DSTOPTS  60

/* Address literals; abort() on a malformed literal (a test bug). */
__be32 pkt_a4(const char *s);
struct in6_addr pkt_a6(const char *s);

void pkt_init(struct pkt *p);

/* Ethernet; NULL MACs take fixed defaults.  The EtherType is set by the
 * next layer. */
int pkt_eth(struct pkt *p, const __u8 *dst_mac, const __u8 *src_mac);
/* One 802.1Q (tpid 0x8100) or 802.1ad (0x88a8) tag. */
int pkt_vlan(struct pkt *p, __u16 tpid, __u16 vid);
/* ARP request/reply for IPv4 over Ethernet (op 1 = request, 2 = reply). */
int pkt_arp(struct pkt *p, __u16 op, __be32 sender_ip, __be32 target_ip);

/* IPv4, 20-byte header, TTL 64, DF clear, id 0x1234. */
int pkt_ip4(struct pkt *p, __be32 saddr, __be32 daddr);
/* Appends options to the IPv4 header just pushed; padded with
 * end-of-options bytes to a multiple of 4 (at most 40 bytes). */
int pkt_ip4_options(struct pkt *p, const void *opts, size_t len);
/* Fragment fields of the IPv4 header just pushed: offset in bytes
 * (multiple of 8), more_fragments = MF flag. */
int pkt_ip4_frag(struct pkt *p, __u16 id, __u16 offset, bool more_fragments);

/* IPv6, hop limit 64. */
int pkt_ip6(struct pkt *p, struct in6_addr saddr, struct in6_addr daddr);
/* An extension header of type PKT_IP6_{HOPOPTS,ROUTING,DSTOPTS,AH} and
 * total length len bytes (multiple of 8, >= 8; AH: multiple of 4, >= 12),
 * filled with padding options / zeros. */
int pkt_ip6_ext(struct pkt *p, __u8 type, size_t len);
/* Fragment header: offset in bytes (multiple of 8). */
int pkt_ip6_frag(struct pkt *p, __u32 id, __u16 offset, bool more_fragments);

/* TCP, 20-byte header; seq 1, ack 1 when PKT_TCP_ACK is set, window 65535. */
int pkt_tcp(struct pkt *p, __u16 sport, __u16 dport, __u8 flags);
/* Appends options to the TCP header just pushed (padded with NOPs to a
 * multiple of 4, at most 40 bytes). */
int pkt_tcp_options(struct pkt *p, const void *opts, size_t len);
int pkt_tcp_seq(struct pkt *p, __u32 seq, __u32 ack);
int pkt_udp(struct pkt *p, __u16 sport, __u16 dport);
/* SCTP common header + INIT chunk (CRC32c checksum). */
int pkt_sctp_init(struct pkt *p, __u16 sport, __u16 dport, __u32 initiate_tag);
/* SCTP common header only (verification tag given); chunks via pkt_payload. */
int pkt_sctp(struct pkt *p, __u16 sport, __u16 dport, __u32 vtag);

/* ICMP: an 8-byte header; for errors (dest unreachable, time exceeded,
 * ...) push the offending packet after it (pkt_ip4 + its L4 header). */
int pkt_icmp4(struct pkt *p, __u8 type, __u8 code);
int pkt_icmp4_echo(struct pkt *p, __u8 type, __u16 id, __u16 seq);
int pkt_icmp6(struct pkt *p, __u8 type, __u8 code);
int pkt_icmp6_echo(struct pkt *p, __u8 type, __u16 id, __u16 seq);
/* Neighbour solicitation for target, with a source link-layer option. */
int pkt_icmp6_ns(struct pkt *p, struct in6_addr target);

/* Sets the next-protocol field of the header just pushed (IPv4 protocol,
 * IPv6 / extension next header), for a payload that is no header pushed
 * here: a later fragment, an unknown protocol. */
int pkt_next_proto(struct pkt *p, __u8 proto);
int pkt_payload(struct pkt *p, const void *data, size_t len);
int pkt_zeros(struct pkt *p, size_t len);

/* Lengths, next-protocol fields and checksums; 0 or the first error. */
int pkt_finish(struct pkt *p);
/* Recomputes checksums only (after fields were changed by hand). */
int pkt_fix_checksums(struct pkt *p);
/* Cuts the packet to len bytes (see the top of this file). */
int pkt_truncate(struct pkt *p, size_t len);

/* The nth (0-based) layer of a kind, or NULL. */
void *pkt_hdr(struct pkt *p, enum pkt_layer_kind kind, int nth);
const struct pkt_layer *pkt_layer_of(const struct pkt *p, enum pkt_layer_kind kind, int nth);
#define pkt_eth_hdr(p) ((struct ethhdr *)pkt_hdr(p, PKT_L_ETH, 0))
#define pkt_ip4_hdr(p) ((struct iphdr *)pkt_hdr(p, PKT_L_IP4, 0))
#define pkt_ip6_hdr(p) ((struct ipv6hdr *)pkt_hdr(p, PKT_L_IP6, 0))
#define pkt_tcp_hdr(p) ((struct tcphdr *)pkt_hdr(p, PKT_L_TCP, 0))
#define pkt_udp_hdr(p) ((struct udphdr *)pkt_hdr(p, PKT_L_UDP, 0))
/* Offset of a layer's header, or -ENOENT. */
int pkt_offset(const struct pkt *p, enum pkt_layer_kind kind, int nth);

/* Internet checksum (RFC 1071) and CRC32c (SCTP), for tests of their own. */
__u16 pkt_csum(const void *data, size_t len, __u32 seed);
__u32 pkt_crc32c(const void *data, size_t len);

/* Hex dump, 16 bytes a line with offsets and ASCII. */
void pkt_hexdump(FILE *out, const void *data, size_t len);
void pkt_dump(FILE *out, const struct pkt *p);

#endif
