// SPDX-License-Identifier: Apache-2.0
/* Packet builder for datapath tests and benchmarks; see pkt.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_ether.h>

#include "pkt.h"

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif
#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

#define IP4_HLEN           20
#define IP6_HLEN           40
#define TCP_HLEN           20
#define UDP_HLEN           8
#define SCTP_HLEN          12
#define ICMP_HLEN          8
#define IP6_NO_NEXT_HEADER 59

static const __u8 default_dst_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x02 };
static const __u8 default_src_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };

__be32 pkt_a4(const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1) {
		fprintf(stderr, "pkt_a4: bad IPv4 literal '%s'\n", s);
		abort();
	}
	return a.s_addr;
}

struct in6_addr pkt_a6(const char *s)
{
	struct in6_addr a;

	if (inet_pton(AF_INET6, s, &a) != 1) {
		fprintf(stderr, "pkt_a6: bad IPv6 literal '%s'\n", s);
		abort();
	}
	return a;
}

void pkt_init(struct pkt *p)
{
	memset(p, 0, sizeof(*p));
}

static void put16(__u8 *at, __u16 v)
{
	at[0] = v >> 8;
	at[1] = v & 0xff;
}

static void put32(__u8 *at, __u32 v)
{
	at[0] = v >> 24;
	at[1] = (v >> 16) & 0xff;
	at[2] = (v >> 8) & 0xff;
	at[3] = v & 0xff;
}

static int fail(struct pkt *p, int err)
{
	if (!p->err)
		p->err = err;
	return err;
}

static struct pkt_layer *last_layer(struct pkt *p)
{
	return p->nlayers ? &p->layer[p->nlayers - 1] : NULL;
}

/* Names the new layer in the header before it. */
static void link_previous(struct pkt *p, const struct pkt_layer *prev, const struct pkt_layer *next)
{
	__u8 *h = p->data + prev->off;

	switch (prev->kind) {
	case PKT_L_ETH:
		if (next->ethertype)
			put16(h + 12, next->ethertype);
		break;
	case PKT_L_VLAN:
		if (next->ethertype)
			put16(h + 2, next->ethertype);
		break;
	case PKT_L_IP4:
		if (next->proto)
			h[9] = next->proto;
		break;
	case PKT_L_IP6:
		if (next->proto || next->kind == PKT_L_IP6_EXT)
			h[6] = next->proto;
		break;
	case PKT_L_IP6_EXT:
	case PKT_L_IP6_FRAG:
		if (next->proto || next->kind == PKT_L_IP6_EXT)
			h[0] = next->proto;
		break;
	default:
		break; /* ICMP errors embed what follows; payload names nothing */
	}
}

/* Appends a zeroed header of hlen bytes; returns it or NULL (error set). */
static __u8 *push(struct pkt *p, enum pkt_layer_kind kind, size_t hlen, __u8 proto, __u16 ethertype)
{
	struct pkt_layer *prev = last_layer(p), *l;

	if (p->err)
		return NULL;
	if (p->finished || p->len != p->built_len) {
		fail(p, -EBUSY); /* finished or truncated: no more layers */
		return NULL;
	}
	if (p->nlayers == PKT_MAX_LAYERS || p->len + hlen > PKT_MAX_LEN) {
		fail(p, -ENOSPC);
		return NULL;
	}
	l = &p->layer[p->nlayers++];
	l->kind = kind;
	l->proto = proto;
	l->ethertype = ethertype;
	l->off = p->len;
	l->hlen = hlen;
	memset(p->data + p->len, 0, hlen);
	p->len += hlen;
	p->built_len = p->len;
	if (prev)
		link_previous(p, prev, l);
	return p->data + l->off;
}

int pkt_eth(struct pkt *p, const __u8 *dst_mac, const __u8 *src_mac)
{
	__u8 *h = push(p, PKT_L_ETH, ETH_HLEN, 0, 0);

	if (!h)
		return p->err;
	memcpy(h, dst_mac ? dst_mac : default_dst_mac, 6);
	memcpy(h + 6, src_mac ? src_mac : default_src_mac, 6);
	return 0;
}

int pkt_vlan(struct pkt *p, __u16 tpid, __u16 vid)
{
	__u8 *h = push(p, PKT_L_VLAN, 4, 0, tpid);

	if (!h)
		return p->err;
	put16(h, vid & 0x0fff);
	return 0;
}

int pkt_arp(struct pkt *p, __u16 op, __be32 sender_ip, __be32 target_ip)
{
	__u8 *h = push(p, PKT_L_ARP, 28, 0, ETH_P_ARP);

	if (!h)
		return p->err;
	put16(h, 1); /* Ethernet */
	put16(h + 2, ETH_P_IP);
	h[4] = 6;
	h[5] = 4;
	put16(h + 6, op);
	memcpy(h + 8, default_src_mac, 6);
	memcpy(h + 14, &sender_ip, 4);
	if (op == 2)
		memcpy(h + 18, default_dst_mac, 6);
	memcpy(h + 24, &target_ip, 4);
	return 0;
}

int pkt_ip4(struct pkt *p, __be32 saddr, __be32 daddr)
{
	__u8 *h = push(p, PKT_L_IP4, IP4_HLEN, IPPROTO_IPIP, ETH_P_IP);

	if (!h)
		return p->err;
	h[0] = 0x45;
	put16(h + 4, 0x1234); /* id */
	h[8] = 64;            /* ttl */
	h[9] = 255;           /* protocol: set by the next layer */
	memcpy(h + 12, &saddr, 4);
	memcpy(h + 16, &daddr, 4);
	return 0;
}

int pkt_ip4_options(struct pkt *p, const void *opts, size_t len)
{
	struct pkt_layer *l = last_layer(p);
	size_t padded = (len + 3) & ~(size_t)3;
	__u8 *h;

	if (p->err)
		return p->err;
	if (!l || l->kind != PKT_L_IP4 || l->hlen + padded > 60 || p->finished || p->len != p->built_len)
		return fail(p, -EINVAL);
	if (p->len + padded > PKT_MAX_LEN)
		return fail(p, -ENOSPC);
	h = p->data + l->off;
	memset(h + l->hlen, 0, padded); /* 0 = end of options list */
	memcpy(h + l->hlen, opts, len);
	l->hlen += padded;
	p->len += padded;
	p->built_len = p->len;
	h[0] = 0x40 | (l->hlen / 4);
	return 0;
}

int pkt_ip4_frag(struct pkt *p, __u16 id, __u16 offset, bool more_fragments)
{
	__u8 *h = pkt_hdr(p, PKT_L_IP4, 0);
	int n;

	if (p->err)
		return p->err;
	/* the innermost IPv4 header pushed so far */
	for (n = 1; pkt_hdr(p, PKT_L_IP4, n); n++)
		h = pkt_hdr(p, PKT_L_IP4, n);
	if (!h || offset % 8)
		return fail(p, -EINVAL);
	put16(h + 4, id);
	put16(h + 6, (offset / 8) | (more_fragments ? 0x2000 : 0));
	return 0;
}

int pkt_ip6(struct pkt *p, struct in6_addr saddr, struct in6_addr daddr)
{
	__u8 *h = push(p, PKT_L_IP6, IP6_HLEN, 41, ETH_P_IPV6);

	if (!h)
		return p->err;
	h[0] = 0x60;
	h[6] = IP6_NO_NEXT_HEADER;
	h[7] = 64;
	memcpy(h + 8, &saddr, 16);
	memcpy(h + 24, &daddr, 16);
	return 0;
}

static void fill_pad_options(__u8 *at, size_t n)
{
	if (n == 0)
		return;
	if (n == 1) {
		at[0] = 0; /* Pad1 */
		return;
	}
	at[0] = 1; /* PadN */
	at[1] = n - 2;
}

int pkt_ip6_ext(struct pkt *p, __u8 type, size_t len)
{
	__u8 *h;

	if (p->err)
		return p->err;
	if (type == PKT_IP6_AH) {
		if (len < 12 || len % 4 || len / 4 - 2 > 255)
			return fail(p, -EINVAL);
	} else if (type == PKT_IP6_HOPOPTS || type == PKT_IP6_ROUTING || type == PKT_IP6_DSTOPTS) {
		if (len < 8 || len % 8 || len / 8 - 1 > 255)
			return fail(p, -EINVAL);
	} else {
		return fail(p, -EINVAL);
	}
	h = push(p, PKT_L_IP6_EXT, len, type, 0);
	if (!h)
		return p->err;
	h[0] = IP6_NO_NEXT_HEADER;
	if (type == PKT_IP6_AH) {
		h[1] = len / 4 - 2;
		put32(h + 4, 0x100); /* SPI */
		put32(h + 8, 1);     /* sequence number; ICV stays zero */
	} else {
		h[1] = len / 8 - 1;
		if (type == PKT_IP6_ROUTING)
			h[2] = 253; /* experimental routing type, segments left 0 */
		else
			fill_pad_options(h + 2, len - 2);
	}
	return 0;
}

int pkt_ip6_frag(struct pkt *p, __u32 id, __u16 offset, bool more_fragments)
{
	__u8 *h;

	if (p->err)
		return p->err;
	if (offset % 8)
		return fail(p, -EINVAL);
	h = push(p, PKT_L_IP6_FRAG, 8, PKT_IP6_FRAGMENT, 0);
	if (!h)
		return p->err;
	h[0] = IP6_NO_NEXT_HEADER;
	put16(h + 2, offset | (more_fragments ? 1 : 0));
	put32(h + 4, id);
	return 0;
}

int pkt_tcp(struct pkt *p, __u16 sport, __u16 dport, __u8 flags)
{
	__u8 *h = push(p, PKT_L_TCP, TCP_HLEN, IPPROTO_TCP, 0);

	if (!h)
		return p->err;
	put16(h, sport);
	put16(h + 2, dport);
	put32(h + 4, 1);
	put32(h + 8, (flags & PKT_TCP_ACK) ? 1 : 0);
	h[12] = (TCP_HLEN / 4) << 4;
	h[13] = flags;
	put16(h + 14, 65535);
	return 0;
}

int pkt_tcp_options(struct pkt *p, const void *opts, size_t len)
{
	struct pkt_layer *l = last_layer(p);
	size_t padded = (len + 3) & ~(size_t)3;
	__u8 *h;

	if (p->err)
		return p->err;
	if (!l || l->kind != PKT_L_TCP || l->hlen + padded > 60 || p->finished || p->len != p->built_len)
		return fail(p, -EINVAL);
	if (p->len + padded > PKT_MAX_LEN)
		return fail(p, -ENOSPC);
	h = p->data + l->off;
	memset(h + l->hlen, 1, padded); /* 1 = NOP */
	memcpy(h + l->hlen, opts, len);
	l->hlen += padded;
	p->len += padded;
	p->built_len = p->len;
	h[12] = (l->hlen / 4) << 4;
	return 0;
}

int pkt_tcp_seq(struct pkt *p, __u32 seq, __u32 ack)
{
	__u8 *h = pkt_hdr(p, PKT_L_TCP, 0);

	if (p->err)
		return p->err;
	if (!h)
		return fail(p, -EINVAL);
	put32(h + 4, seq);
	put32(h + 8, ack);
	return 0;
}

int pkt_udp(struct pkt *p, __u16 sport, __u16 dport)
{
	__u8 *h = push(p, PKT_L_UDP, UDP_HLEN, IPPROTO_UDP, 0);

	if (!h)
		return p->err;
	put16(h, sport);
	put16(h + 2, dport);
	return 0;
}

int pkt_sctp(struct pkt *p, __u16 sport, __u16 dport, __u32 vtag)
{
	__u8 *h = push(p, PKT_L_SCTP, SCTP_HLEN, IPPROTO_SCTP, 0);

	if (!h)
		return p->err;
	put16(h, sport);
	put16(h + 2, dport);
	put32(h + 4, vtag);
	return 0;
}

int pkt_sctp_init(struct pkt *p, __u16 sport, __u16 dport, __u32 initiate_tag)
{
	__u8 chunk[20] = { 0 };

	/* An INIT travels with verification tag 0. */
	if (pkt_sctp(p, sport, dport, 0))
		return p->err;
	chunk[0] = 1; /* INIT */
	put16(chunk + 2, sizeof(chunk));
	put32(chunk + 4, initiate_tag);
	put32(chunk + 8, 65536);         /* a_rwnd */
	put16(chunk + 12, 1);            /* outbound streams */
	put16(chunk + 14, 1);            /* inbound streams */
	put32(chunk + 16, initiate_tag); /* initial TSN */
	return pkt_payload(p, chunk, sizeof(chunk));
}

int pkt_icmp4(struct pkt *p, __u8 type, __u8 code)
{
	__u8 *h = push(p, PKT_L_ICMP4, ICMP_HLEN, IPPROTO_ICMP, 0);

	if (!h)
		return p->err;
	h[0] = type;
	h[1] = code;
	return 0;
}

int pkt_icmp4_echo(struct pkt *p, __u8 type, __u16 id, __u16 seq)
{
	__u8 *h;

	if (pkt_icmp4(p, type, 0))
		return p->err;
	h = p->data + last_layer(p)->off;
	put16(h + 4, id);
	put16(h + 6, seq);
	return 0;
}

int pkt_icmp6(struct pkt *p, __u8 type, __u8 code)
{
	__u8 *h = push(p, PKT_L_ICMP6, ICMP_HLEN, IPPROTO_ICMPV6, 0);

	if (!h)
		return p->err;
	h[0] = type;
	h[1] = code;
	return 0;
}

int pkt_icmp6_echo(struct pkt *p, __u8 type, __u16 id, __u16 seq)
{
	__u8 *h;

	if (pkt_icmp6(p, type, 0))
		return p->err;
	h = p->data + last_layer(p)->off;
	put16(h + 4, id);
	put16(h + 6, seq);
	return 0;
}

int pkt_icmp6_ns(struct pkt *p, struct in6_addr target)
{
	__u8 *h = push(p, PKT_L_ICMP6, ICMP_HLEN + 16 + 8, IPPROTO_ICMPV6, 0);

	if (!h)
		return p->err;
	h[0] = 135; /* neighbour solicitation */
	memcpy(h + 8, &target, 16);
	h[24] = 1; /* source link-layer address option */
	h[25] = 1; /* 8 bytes */
	memcpy(h + 26, default_src_mac, 6);
	return 0;
}

int pkt_next_proto(struct pkt *p, __u8 proto)
{
	struct pkt_layer *l = last_layer(p);
	__u8 *h;

	if (p->err)
		return p->err;
	if (!l)
		return fail(p, -EINVAL);
	h = p->data + l->off;
	switch (l->kind) {
	case PKT_L_IP4:
		h[9] = proto;
		return 0;
	case PKT_L_IP6:
		h[6] = proto;
		return 0;
	case PKT_L_IP6_EXT:
	case PKT_L_IP6_FRAG:
		h[0] = proto;
		return 0;
	default:
		return fail(p, -EINVAL);
	}
}

int pkt_payload(struct pkt *p, const void *data, size_t len)
{
	__u8 *h = push(p, PKT_L_RAW, len, 0, 0);

	if (!h)
		return p->err;
	memcpy(h, data, len);
	return 0;
}

int pkt_zeros(struct pkt *p, size_t len)
{
	return push(p, PKT_L_RAW, len, 0, 0) ? 0 : p->err;
}

/* ---- checksums ------------------------------------------------------------ */
static __u32 csum_partial(const void *data, size_t len, __u32 sum)
{
	const __u8 *b = data;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += ((__u32)b[i] << 8) | b[i + 1];
	if (len & 1)
		sum += (__u32)b[len - 1] << 8;
	return sum;
}

static __u16 csum_fold(__u32 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

__u16 pkt_csum(const void *data, size_t len, __u32 seed)
{
	return csum_fold(csum_partial(data, len, seed));
}

__u32 pkt_crc32c(const void *data, size_t len)
{
	const __u8 *b = data;
	__u32 crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= b[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* The nearest IP header before layer i, for pseudo headers. */
static const struct pkt_layer *enclosing_ip(const struct pkt *p, int i)
{
	while (--i >= 0)
		if (p->layer[i].kind == PKT_L_IP4 || p->layer[i].kind == PKT_L_IP6)
			return &p->layer[i];
	return NULL;
}

static __u32 pseudo_sum(const struct pkt *p, int i, __u8 proto, size_t l4len)
{
	const struct pkt_layer *ip = enclosing_ip(p, i);
	__u8 ph[40] = { 0 };

	if (!ip)
		return 0;
	if (ip->kind == PKT_L_IP4) {
		memcpy(ph, p->data + ip->off + 12, 8);
		ph[9] = proto;
		put16(ph + 10, l4len);
		return csum_partial(ph, 12, 0);
	}
	memcpy(ph, p->data + ip->off + 8, 32);
	put32(ph + 32, l4len);
	ph[39] = proto;
	return csum_partial(ph, 40, 0);
}

/* Bytes of layer i to the end of the packet (0 if it was cut off). */
static size_t extent(const struct pkt *p, int i)
{
	return p->len > p->layer[i].off ? p->len - p->layer[i].off : 0;
}

static void checksum_layer(struct pkt *p, int i)
{
	struct pkt_layer *l = &p->layer[i];
	__u8 *h = p->data + l->off;
	size_t n = extent(p, i);
	__u16 c;

	switch (l->kind) {
	case PKT_L_IP4:
		put16(h + 10, 0);
		put16(h + 10, pkt_csum(h, n < l->hlen ? n : l->hlen, 0));
		break;
	case PKT_L_TCP:
		put16(h + 16, 0);
		put16(h + 16, pkt_csum(h, n, pseudo_sum(p, i, IPPROTO_TCP, n)));
		break;
	case PKT_L_UDP:
		put16(h + 6, 0);
		c = pkt_csum(h, n, pseudo_sum(p, i, IPPROTO_UDP, n));
		put16(h + 6, c ? c : 0xffff);
		break;
	case PKT_L_ICMP4:
		put16(h + 2, 0);
		put16(h + 2, pkt_csum(h, n, 0));
		break;
	case PKT_L_ICMP6:
		put16(h + 2, 0);
		put16(h + 2, pkt_csum(h, n, pseudo_sum(p, i, IPPROTO_ICMPV6, n)));
		break;
	case PKT_L_SCTP: {
		__u32 crc;
		memset(h + 8, 0, 4);
		crc = pkt_crc32c(h, n);
		/* stored least significant byte first (RFC 9260 appendix A) */
		h[8] = crc & 0xff;
		h[9] = (crc >> 8) & 0xff;
		h[10] = (crc >> 16) & 0xff;
		h[11] = crc >> 24;
		break;
	}
	default:
		break;
	}
}

int pkt_fix_checksums(struct pkt *p)
{
	if (p->err)
		return p->err;
	for (int i = p->nlayers - 1; i >= 0; i--)
		checksum_layer(p, i);
	return 0;
}

int pkt_finish(struct pkt *p)
{
	if (p->err)
		return p->err;
	/* innermost first: an outer checksum covers the finished inner bytes */
	for (int i = p->nlayers - 1; i >= 0; i--) {
		struct pkt_layer *l = &p->layer[i];
		__u8 *h = p->data + l->off;
		size_t n = extent(p, i);

		switch (l->kind) {
		case PKT_L_IP4:
			put16(h + 2, n);
			break;
		case PKT_L_IP6:
			put16(h + 4, n > IP6_HLEN ? n - IP6_HLEN : 0);
			break;
		case PKT_L_UDP:
			put16(h + 4, n);
			break;
		default:
			break;
		}
		checksum_layer(p, i);
	}
	p->finished = true;
	return 0;
}

int pkt_truncate(struct pkt *p, size_t len)
{
	if (p->err)
		return p->err;
	if (len > p->len)
		return fail(p, -EINVAL);
	p->len = len;
	return 0;
}

const struct pkt_layer *pkt_layer_of(const struct pkt *p, enum pkt_layer_kind kind, int nth)
{
	for (int i = 0; i < p->nlayers; i++)
		if (p->layer[i].kind == kind && nth-- == 0)
			return &p->layer[i];
	return NULL;
}

void *pkt_hdr(struct pkt *p, enum pkt_layer_kind kind, int nth)
{
	const struct pkt_layer *l = pkt_layer_of(p, kind, nth);

	return l ? p->data + l->off : NULL;
}

int pkt_offset(const struct pkt *p, enum pkt_layer_kind kind, int nth)
{
	const struct pkt_layer *l = pkt_layer_of(p, kind, nth);

	return l ? l->off : -ENOENT;
}

void pkt_hexdump(FILE *out, const void *data, size_t len)
{
	const __u8 *b = data;

	for (size_t i = 0; i < len; i += 16) {
		fprintf(out, "%04zx ", i);
		for (size_t k = 0; k < 16; k++) {
			if (i + k < len)
				fprintf(out, " %02x", b[i + k]);
			else
				fputs("   ", out);
			if (k == 7)
				fputc(' ', out);
		}
		fputs("  |", out);
		for (size_t k = 0; k < 16 && i + k < len; k++)
			fputc(isprint(b[i + k]) ? b[i + k] : '.', out);
		fputs("|\n", out);
	}
}

void pkt_dump(FILE *out, const struct pkt *p)
{
	static const char *const names[] = {
		[PKT_L_ETH] = "eth",           [PKT_L_VLAN] = "vlan",  [PKT_L_ARP] = "arp",
		[PKT_L_IP4] = "ip4",           [PKT_L_IP6] = "ip6",    [PKT_L_IP6_EXT] = "ip6-ext",
		[PKT_L_IP6_FRAG] = "ip6-frag", [PKT_L_TCP] = "tcp",    [PKT_L_UDP] = "udp",
		[PKT_L_SCTP] = "sctp",         [PKT_L_ICMP4] = "icmp", [PKT_L_ICMP6] = "icmp6",
		[PKT_L_RAW] = "payload",
	};

	fprintf(out, "packet: %zu bytes (%zu built)%s", p->len, p->built_len, p->err ? " [build error]" : "");
	for (int i = 0; i < p->nlayers; i++)
		fprintf(out, "%s%s@%u+%u", i ? " / " : ": ", names[p->layer[i].kind], p->layer[i].off,
			p->layer[i].hlen);
	fputc('\n', out);
	pkt_hexdump(out, p->data, p->len);
}
