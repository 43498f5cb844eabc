/* SPDX-License-Identifier: GPL-2.0-only */
/* Packet parser: Ethernet (up to two VLAN tags), IPv4 (options, fragments),
 * IPv6 (extension headers, fragment header), TCP, UDP, SCTP, ICMP, ICMPv6.
 *
 * Every outcome is defined: the parser either fills struct pkt, reports the
 * packet as not IP (ARP, LLDP, ...: passed, not policy), or returns a drop
 * reason.  Non-first fragments carry no L4 header; they are marked and the
 * caller joins them to their first fragment through the fragment map.
 *
 * Offsets, not pointers, are carried between steps and masked to a bound,
 * so the verifier can prune the extension-header loop's states.
 */
#ifndef MOAT_PARSE_BPF_H
#define MOAT_PARSE_BPF_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "moat/abi.h"

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif
#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif
#define MOAT_IP6_EXT_MAX 8
#define OFF_MASK         0x1fff /* headers are looked for in the first 8 KiB */

#define PARSE_OK     0
#define PARSE_NOT_IP (-1) /* not IPv4/IPv6: pass */

#define FRAG_NONE  0
#define FRAG_FIRST 1
#define FRAG_LATER 2

struct vlan_hdr_m {
	__be16 tci;
	__be16 proto;
};

struct sctp_common_m {
	__be16 sport;
	__be16 dport;
	__be32 vtag;
	__be32 csum;
};

union addr {
	__be32 v4;
	__u8 v6[16];
	__u32 w[4];
};

struct pkt {
	union addr saddr;
	union addr daddr;
	union addr inner_saddr; /* ICMP errors: the offending packet, as sent */
	union addr inner_daddr;
	__be16 sport;
	__be16 dport;
	__be16 inner_sport;
	__be16 inner_dport;
	__u32 frag_id; /* IPv4 id (16 bits) or IPv6 fragment id */
	__u32 len;
	__u8 family;    /* 4 or 6 */
	__u8 proto;     /* L4 protocol after extension headers */
	__u8 frag;      /* FRAG_* */
	__u8 has_ports; /* sport/dport are valid */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_err; /* ICMP error: inner_* hold the offending flow */
	__u8 is_nd;    /* IPv6 neighbour discovery / link-local only */
	__u8 inner_proto;
	__u8 hop_limit; /* IPv6 */
	__u8 frag_nh;   /* protocol named at the fragmentation point */
	__u8 pad[5];
};

static __always_inline int parse_inner_ports(void *data, const void *end, __u32 off, struct pkt *pk)
{
	__u8 *p = data + (off & OFF_MASK);

	pk->inner_sport = 0;
	pk->inner_dport = 0;
	if (pk->inner_proto == IPPROTO_TCP || pk->inner_proto == IPPROTO_UDP ||
	    pk->inner_proto == IPPROTO_SCTP) {
		__be16 *ports = (void *)p;
		if ((void *)(ports + 2) > end)
			return MOAT_DROP_TRUNC_L4;
		pk->inner_sport = ports[0];
		pk->inner_dport = ports[1];
	} else if (pk->inner_proto == IPPROTO_ICMP || pk->inner_proto == IPPROTO_ICMPV6) {
		/* Only echo has a flow identity worth matching: id at offset 4. */
		if ((void *)(p + 8) > end)
			return MOAT_DROP_TRUNC_L4;
		pk->inner_sport = *(__be16 *)(p + 4);
		pk->inner_dport = pk->inner_sport;
	}
	return PARSE_OK;
}

static __always_inline int parse_l4(void *data, void *end, __u32 off, struct pkt *pk)
{
	__u8 *p = data + (off & OFF_MASK);

	pk->has_ports = 0;
	if (pk->frag == FRAG_LATER)
		return PARSE_OK;

	switch (pk->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = (void *)p;
		__u32 doff;
		if ((void *)(th + 1) > end)
			return MOAT_DROP_TRUNC_L4;
		doff = th->doff;
		if (doff < 5)
			return MOAT_DROP_BAD_TCP_HDR;
		/* Options must be present in full. */
		if ((void *)p + doff * 4 > end)
			return MOAT_DROP_BAD_TCP_HDR;
		pk->sport = th->source;
		pk->dport = th->dest;
		pk->tcp_flags = p[13];
		pk->has_ports = 1;
		return PARSE_OK;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = (void *)p;
		if ((void *)(uh + 1) > end)
			return MOAT_DROP_TRUNC_L4;
		pk->sport = uh->source;
		pk->dport = uh->dest;
		pk->has_ports = 1;
		return PARSE_OK;
	}
	case IPPROTO_SCTP: {
		struct sctp_common_m *sh = (void *)p;
		if ((void *)(sh + 1) > end)
			return MOAT_DROP_TRUNC_L4;
		pk->sport = sh->sport;
		pk->dport = sh->dport;
		pk->has_ports = 1;
		return PARSE_OK;
	}
	case IPPROTO_ICMP: {
		struct icmphdr *ic = (void *)p;
		if (pk->family != 4)
			return PARSE_OK; /* not ICMP in IPv6: another protocol */
		if ((void *)(ic + 1) > end)
			return MOAT_DROP_TRUNC_L4;
		pk->icmp_type = ic->type;
		if (ic->type == ICMP_ECHO || ic->type == ICMP_ECHOREPLY) {
			pk->sport = ic->un.echo.id;
			pk->dport = ic->un.echo.id;
			pk->has_ports = 1;
			return PARSE_OK;
		}
		if (ic->type == ICMP_DEST_UNREACH || ic->type == ICMP_TIME_EXCEEDED ||
		    ic->type == ICMP_PARAMETERPROB || ic->type == ICMP_SOURCE_QUENCH) {
			struct iphdr *in = (void *)(ic + 1);
			if ((void *)(in + 1) > end)
				return MOAT_DROP_TRUNC_L4;
			if (in->version != 4 || in->ihl < 5)
				return MOAT_DROP_BAD_IP4_HDR;
			pk->icmp_err = 1;
			pk->inner_saddr.v4 = in->saddr;
			pk->inner_daddr.v4 = in->daddr;
			pk->inner_proto = in->protocol;
			return parse_inner_ports(data, end, off + 8 + in->ihl * 4, pk);
		}
		return PARSE_OK;
	}
	case IPPROTO_ICMPV6: {
		struct icmp6hdr *ic = (void *)p;
		if (pk->family != 6)
			return PARSE_OK; /* not ICMPv6 in IPv4: another protocol */
		if ((void *)(ic + 1) > end)
			return MOAT_DROP_TRUNC_L4;
		pk->icmp_type = ic->icmp6_type;
		/* RS, RA, NS, NA, redirect: only with hop limit 255, which no
		 * router forwards (RFC 4861); anything else is judged like any
		 * ICMPv6 and cannot use these types to bypass policy */
		if (ic->icmp6_type >= 133 && ic->icmp6_type <= 137 && pk->hop_limit == 255) {
			pk->is_nd = 1;
			return PARSE_OK;
		}
		if (ic->icmp6_type == ICMPV6_ECHO_REQUEST || ic->icmp6_type == ICMPV6_ECHO_REPLY) {
			pk->sport = ic->icmp6_identifier;
			pk->dport = ic->icmp6_identifier;
			pk->has_ports = 1;
			return PARSE_OK;
		}
		if (ic->icmp6_type >= 1 && ic->icmp6_type <= 4) {
			struct ipv6hdr *in = (void *)(ic + 1);
			if ((void *)(in + 1) > end)
				return MOAT_DROP_TRUNC_L4;
			pk->icmp_err = 1;
			__builtin_memcpy(pk->inner_saddr.v6, &in->saddr, 16);
			__builtin_memcpy(pk->inner_daddr.v6, &in->daddr, 16);
			/* Extension headers inside an error are not walked: the
			 * common case (transport header first) is matched. */
			pk->inner_proto = in->nexthdr;
			return parse_inner_ports(data, end, off + 8 + 40, pk);
		}
		return PARSE_OK;
	}
	default:
		return PARSE_OK;
	}
}

static __always_inline int parse_ip4(void *data, void *end, __u32 off, struct pkt *pk)
{
	struct iphdr *iph = data + (off & OFF_MASK);
	__u32 hlen, tot;

	if ((void *)(iph + 1) > end)
		return MOAT_DROP_TRUNC_IP4;
	if (iph->version != 4 || iph->ihl < 5)
		return MOAT_DROP_BAD_IP4_HDR;
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if ((void *)iph + hlen > end)
		return MOAT_DROP_TRUNC_IP4;
	if (tot < hlen)
		return MOAT_DROP_BAD_IP4_HDR;
	/* A total length beyond the frame means the frame was cut short. */
	if ((void *)iph + tot > end)
		return MOAT_DROP_TRUNC_IP4;

	pk->family = 4;
	pk->saddr.v4 = iph->saddr;
	pk->daddr.v4 = iph->daddr;
	pk->proto = iph->protocol;
	pk->frag_nh = iph->protocol;
	pk->frag_id = bpf_ntohs(iph->id);
	{
		__u16 fo = bpf_ntohs(iph->frag_off);
		if (fo & 0x1fff)
			pk->frag = FRAG_LATER;
		else if (fo & 0x2000)
			pk->frag = FRAG_FIRST;
	}
	return parse_l4(data, end, off + hlen, pk);
}

static __always_inline int ip6_is_ext(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 60 || nh == 51 || nh == 44;
}

static __always_inline int ip6_is_linklocal(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static __always_inline int parse_ip6(void *data, void *end, __u32 off, struct pkt *pk)
{
	struct ipv6hdr *ip6 = data + (off & OFF_MASK);
	__u8 nh;
	int i;

	if ((void *)(ip6 + 1) > end)
		return MOAT_DROP_TRUNC_IP6;
	if (ip6->version != 6)
		return MOAT_DROP_TRUNC_IP6;
	/* Payload length 0 is a jumbogram; otherwise it must fit the frame. */
	if (ip6->payload_len && (void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len) > end)
		return MOAT_DROP_TRUNC_IP6;
	pk->family = 6;
	pk->hop_limit = ip6->hop_limit;
	__builtin_memcpy(pk->saddr.v6, &ip6->saddr, 16);
	__builtin_memcpy(pk->daddr.v6, &ip6->daddr, 16);
	nh = ip6->nexthdr;
	off += sizeof(*ip6);

	for (i = 0; i < MOAT_IP6_EXT_MAX; i++) {
		__u8 *h;
		__u32 len;

		if (!ip6_is_ext(nh))
			break;
		off &= OFF_MASK;
		h = data + off;
		if ((void *)(h + 8) > end)
			return MOAT_DROP_TRUNC_EXTHDR;
		if (nh == 44) {
			__u16 fo = ((__u16)h[2] << 8) | h[3];
			pk->frag_id = ((__u32)h[4] << 24) | ((__u32)h[5] << 16) | ((__u32)h[6] << 8) | h[7];
			pk->frag_nh = h[0];
			if (fo & 0xfff8) {
				/* a later fragment: what follows is payload, not
				 * headers; its flow comes from the first fragment */
				pk->frag = FRAG_LATER;
				pk->proto = h[0];
				return PARSE_OK;
			}
			if (fo & 1)
				pk->frag = FRAG_FIRST;
			len = 8;
		} else if (nh == 51) {
			len = ((__u32)h[1] + 2) * 4;
		} else {
			len = ((__u32)h[1] + 1) * 8;
		}
		nh = h[0];
		off += len;
	}
	/* Still an extension header after the limit: refuse rather than guess. */
	if (ip6_is_ext(nh))
		return MOAT_DROP_EXTHDR_DEPTH;
	if (data + (off & OFF_MASK) > end || off > OFF_MASK)
		return MOAT_DROP_TRUNC_EXTHDR;
	pk->proto = nh;
	return parse_l4(data, end, off, pk);
}

/* Returns PARSE_OK, PARSE_NOT_IP, or a MOAT_DROP_* reason (> 0).  A global
 * function: verified once, whatever calls it. */
__attribute__((noinline)) int moat_parse(struct xdp_md *ctx, struct pkt *pk)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__be16 proto;
	__u32 off;
	int i, rc;

	if (!pk)
		return MOAT_DROP_MAP_ERROR;
	pk->len = end - data;
	if ((void *)(eth + 1) > end)
		return MOAT_DROP_TRUNC_ETH;
	proto = eth->h_proto;
	off = sizeof(*eth);

	for (i = 0; i < 2; i++) {
		struct vlan_hdr_m *vh;
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		vh = data + (off & OFF_MASK);
		if ((void *)(vh + 1) > end)
			return MOAT_DROP_TRUNC_VLAN;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return MOAT_DROP_VLAN_DEPTH;

	if (proto == bpf_htons(ETH_P_IP))
		return parse_ip4(data, end, off, pk);
	if (proto != bpf_htons(ETH_P_IPV6))
		return PARSE_NOT_IP;
	rc = parse_ip6(data, end, off, pk);
	if (rc == PARSE_OK && !pk->is_nd && ip6_is_linklocal(pk->saddr.v6) &&
	    (ip6_is_linklocal(pk->daddr.v6) || pk->daddr.v6[0] == 0xff))
		pk->is_nd = 1; /* link-local only traffic: not pod policy */
	return rc;
}

#endif
