// SPDX-License-Identifier: Apache-2.0
/* Seed files for the fuzz targets, made with the project's own writers, run
 * once and committed (tests/fuzz/corpus/NAME/):
 *   make -j2 && cc -std=gnu17 -D_GNU_SOURCE -Ihostd -Iinclude -Ioffload \
 *       $(pkg-config --cflags libnl-3.0) -o /tmp/gen_corpus tests/fuzz/gen_corpus.c \
 *       build/libmoathost.a $(pkg-config --libs libnl-3.0)
 *   /tmp/gen_corpus pcapng tests/fuzz/corpus/pcapng
 *   /tmp/gen_corpus netlink tests/fuzz/corpus/netlink
 *   ip netns exec NS /tmp/gen_corpus netlink-dump tests/fuzz/corpus/netlink
 * pcapng: segments as the archive writes them (SHB, IDBs with nanosecond
 * and other resolutions, EPBs with every option and moat comments, ISBs,
 * flow and loss records in custom blocks), two sections, a torn last
 * block, garbage after whole blocks.
 * netlink: receive buffers of rtnetlink notifications built with libnl (a
 * pod's veth appearing, moving its peer, its host route, an address and a
 * neighbour, the veth and route going away); netlink-dump: what the kernel
 * answers to link and route dumps in the namespace it runs in (run it in
 * one with veths and host routes). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <sys/socket.h>

#include "pcapng.h"

#define T0  1795849200000000000ull
#define SEC 1000000000ull

static const uint8_t tcp4[60] = {
	0x0e, 0,  0,    0, 0,  2, 0x0e, 0, 0,  0, 0,    1,    0x08, 0x00, 0x45, 0, 0,    40,
	0,    1,  0x40, 0, 64, 6, 0,    0, 10, 0, 1,    1,    10,   0,    1,    2, 0x9c, 0x40,
	0,    80, 0,    0, 0,  1, 0,    0, 0,  0, 0x50, 0x02, 0x20, 0,    0,    0, 0,    0,
};
static const uint8_t udp6[66] = {
	0x0e, 0, 0, 0, 0, 2, 0x0e, 0, 0, 0, 0,    1,    0x86, 0xdd, 0x60, 0,  0,    0, 0,   12,  17,  64,
	0xfd, 0, 0, 0, 0, 0, 0,    0, 0, 0, 0,    0,    0,    0,    0,    1,  0xfd, 0, 0,   0,   0,   0,
	0,    0, 0, 0, 0, 0, 0,    0, 0, 2, 0x13, 0x88, 0,    53,   0,    12, 0,    0, 'a', 'b', 'c', 'd',
};

static int save(const char *dir, const char *name, const void *p, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f)) {
		perror(path);
		return -EIO;
	}
	return 0;
}

static void section(struct pcapng_buf *b, int variant)
{
	struct pcapng_shb_info shb = { .hardware = "n1",
				       .os = "Linux",
				       .userappl = "moatd",
				       .comment = variant ? NULL : "moat archive segment" };
	struct pcapng_idb_info i0 = {
		.linktype = 1, .snaplen = 65535, .name = "h_veth0", .description = "pod a/x"
	};
	struct pcapng_idb_info i1 = { .linktype = 1, .snaplen = 256, .name = "p_veth1" };

	pcapng_put_shb(b, &shb);
	pcapng_put_idb(b, &i0);
	pcapng_put_idb(b, &i1);
}

static void packets(struct pcapng_buf *b, int n, int first_id)
{
	for (int i = 0; i < n; i++) {
		char c[256];
		struct pcapng_epb_info e = {
			.ifid = (uint32_t)(i & 1),
			.ts_ns = T0 + (uint64_t)i * SEC,
			.data = i % 3 == 2 ? udp6 : tcp4,
			.caplen = i % 3 == 2 ? sizeof(udp6) : sizeof(tcp4),
			.origlen = i % 3 == 2 ? 66 : 1500,
			.flags = i & 1 ? PCAPNG_DIR_OUTBOUND : PCAPNG_DIR_INBOUND,
			.has_dropcount = i == 1,
			.dropcount = 3,
			.has_packetid = true,
			.packetid = (uint64_t)(first_id + i),
			.has_verdict = true,
			.verdict_type = PCAPNG_VERDICT_XDP,
			.verdict = i == 1 ? 1 : 2,
			.comment = c,
		};
		snprintf(
			c, sizeof(c),
			"moat: id=1.%d verdict=%s hook=from-pod src=a/x dst=b/y rule=\"b/only-from-b ingress #0\" "
			"rule_ns=b tier=netpol",
			first_id + i,
			i == 1 ? "deny" :
			i == 2 ? "audit" :
				 "allow");
		pcapng_put_epb(b, &e);
	}
}

static void records(struct pcapng_buf *b, int id)
{
	char j[512];

	snprintf(
		j, sizeof(j),
		"{\"moat\":\"flow\",\"v\":1,\"id\":\"1.%d\",\"state\":\"end\",\"proto\":\"tcp\",\"proto_num\":6,"
		"\"src\":{\"ip\":\"10.0.1.1\",\"port\":40000,\"namespace\":\"a\",\"pod\":\"x\"},"
		"\"dst\":{\"ip\":\"10.0.1.2\",\"port\":80,\"namespace\":\"b\",\"pod\":\"y\"},"
		"\"verdict\":\"allow\",\"rule\":\"b/only-from-b ingress #0\",\"rule_ns\":\"b\","
		"\"first_ns\":%llu,\"last_ns\":%llu,\"packets\":4,\"bytes\":240}",
		id, (unsigned long long)T0, (unsigned long long)(T0 + 2 * SEC));
	pcapng_put_custom(b, 32473, j, strlen(j));
	snprintf(j, sizeof(j),
		 "{\"moat\":\"loss\",\"v\":1,\"node\":\"n1\",\"run\":1,\"time\":\"2026-11-28T07:00:05Z\","
		 "\"time_ns\":%llu,\"counts\":{\"perf_ring\":0,\"output_failed\":0,\"rate_limit\":2,"
		 "\"seq_gaps\":0,\"archive_queue\":1,\"archive_queue_flows\":0,\"archive_unattributed\":0,"
		 "\"disk_full\":0}}",
		 (unsigned long long)(T0 + 5 * SEC));
	pcapng_put_custom(b, 32473, j, strlen(j));
}

static void isb(struct pcapng_buf *b)
{
	struct pcapng_isb_info s = { .ifid = 0,
				     .ts_ns = T0 + 9 * SEC,
				     .start_ns = T0,
				     .end_ns = T0 + 9 * SEC,
				     .has_counters = true,
				     .ifrecv = 10,
				     .ifdrop = 1,
				     .usrdeliv = 9,
				     .comment = "counters" };
	pcapng_put_isb(b, &s);
}

/* An IDB with another timestamp resolution (microseconds, 2^-20 s). */
static void idb_resol(struct pcapng_buf *b, uint8_t res)
{
	size_t at = b->len;
	uint32_t len;

	pcapng_put_idb(b, &(struct pcapng_idb_info){ .linktype = 1, .snaplen = 65535, .name = "lo" });
	/* the writer's if_tsresol is 9: the last option before opt_endofopt */
	memcpy(&len, b->p + at + 4, 4);
	b->p[at + len - 12] = res;
}

static int gen_pcapng(const char *dir)
{
	struct pcapng_buf b = { 0 };
	size_t whole;
	int rc = 0;

	/* 1: a segment: packets, records, counters */
	section(&b, 0);
	packets(&b, 4, 1);
	records(&b, 2);
	isb(&b);
	rc |= save(dir, "segment.pcapng", b.p, b.len);
	/* 2: torn in the middle of its last packet */
	whole = b.len;
	packets(&b, 1, 9);
	rc |= save(dir, "torn.pcapng", b.p, whole + 37);
	/* 3: garbage after whole blocks (a length that does not add up) */
	memcpy(b.p + whole + 4, "\x0d\x00\x00\x00", 4);
	rc |= save(dir, "bad-length.pcapng", b.p, whole + 64);
	pcapng_buf_free(&b);
	/* 4: two sections, the second with other interfaces */
	section(&b, 0);
	packets(&b, 2, 1);
	section(&b, 1);
	packets(&b, 3, 5);
	records(&b, 7);
	rc |= save(dir, "two-sections.pcapng", b.p, b.len);
	pcapng_buf_free(&b);
	/* 5: microsecond and binary resolutions, a packet on each */
	section(&b, 1);
	idb_resol(&b, 6);
	idb_resol(&b, 0x80 | 20);
	packets(&b, 4, 1);
	rc |= save(dir, "resolutions.pcapng", b.p, b.len);
	pcapng_buf_free(&b);
	/* 6: a section header alone; 7: a query result in classic pcap */
	pcapng_put_shb(&b, NULL);
	rc |= save(dir, "header-only.pcapng", b.p, b.len);
	pcapng_buf_free(&b);
	pcap_put_header(&b, 65535, 1);
	pcap_put_record(&b, T0, tcp4, sizeof(tcp4), sizeof(tcp4));
	rc |= save(dir, "classic.pcap", b.p, b.len);
	pcapng_buf_free(&b);
	return rc;
}

/* ---- netlink ----------------------------------------------------------------- */
static void add(struct pcapng_buf *b, struct nl_msg *m)
{
	struct nlmsghdr *h = nlmsg_hdr(m);
	size_t l = NLMSG_ALIGN(h->nlmsg_len);

	if (b->len + l > b->cap) {
		b->cap = (b->len + l) * 2;
		b->p = realloc(b->p, b->cap);
	}
	memset(b->p + b->len, 0, l);
	memcpy(b->p + b->len, h, h->nlmsg_len);
	b->len += l;
	nlmsg_free(m);
}

static struct nl_msg *link_msg(int type, int ifindex, const char *name, const char *kind, int peer, int nsid)
{
	struct nl_msg *m = nlmsg_alloc_simple(type, 0);
	struct ifinfomsg ifi = {
		.ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = IFF_UP, .ifi_change = 0xffffffff
	};

	nlmsg_append(m, &ifi, sizeof(ifi), NLMSG_ALIGNTO);
	if (name)
		nla_put_string(m, IFLA_IFNAME, name);
	nla_put_u32(m, IFLA_MTU, 1500);
	if (kind) {
		struct nlattr *li = nla_nest_start(m, IFLA_LINKINFO);
		nla_put_string(m, IFLA_INFO_KIND, kind);
		nla_nest_end(m, li);
	}
	if (peer)
		nla_put_u32(m, IFLA_LINK, (uint32_t)peer);
	if (nsid >= 0)
		nla_put_s32(m, IFLA_LINK_NETNSID, nsid);
	return m;
}

static struct nl_msg *route_msg(int type, int family, const char *dst, int plen, int oif, int table)
{
	struct nl_msg *m = nlmsg_alloc_simple(type, 0);
	struct rtmsg rt = { .rtm_family = (unsigned char)family,
			    .rtm_dst_len = (unsigned char)plen,
			    .rtm_table = RT_TABLE_MAIN,
			    .rtm_protocol = RTPROT_BOOT,
			    .rtm_scope = RT_SCOPE_LINK,
			    .rtm_type = RTN_UNICAST };
	uint8_t a[16];

	inet_pton(family, dst, a);
	nlmsg_append(m, &rt, sizeof(rt), NLMSG_ALIGNTO);
	nla_put(m, RTA_DST, family == AF_INET ? 4 : 16, a);
	nla_put_u32(m, RTA_OIF, (uint32_t)oif);
	nla_put_u32(m, RTA_TABLE, (uint32_t)table);
	return m;
}

static struct nl_msg *addr_msg(int ifindex, const char *ip)
{
	struct nl_msg *m = nlmsg_alloc_simple(RTM_NEWADDR, 0);
	struct ifaddrmsg ifa = { .ifa_family = AF_INET, .ifa_prefixlen = 24, .ifa_index = (uint32_t)ifindex };
	uint8_t a[4];

	inet_pton(AF_INET, ip, a);
	nlmsg_append(m, &ifa, sizeof(ifa), NLMSG_ALIGNTO);
	nla_put(m, IFA_LOCAL, 4, a);
	nla_put(m, IFA_ADDRESS, 4, a);
	nla_put_string(m, IFA_LABEL, "eth0");
	return m;
}

static struct nl_msg *neigh_msg(int ifindex, const char *ip)
{
	struct nl_msg *m = nlmsg_alloc_simple(RTM_NEWNEIGH, 0);
	struct ndmsg nd = { .ndm_family = AF_INET, .ndm_ifindex = ifindex, .ndm_state = NUD_REACHABLE };
	uint8_t a[4], mac[6] = { 0x0e, 0, 0, 0, 0, 2 };

	inet_pton(AF_INET, ip, a);
	nlmsg_append(m, &nd, sizeof(nd), NLMSG_ALIGNTO);
	nla_put(m, NDA_DST, 4, a);
	nla_put(m, NDA_LLADDR, 6, mac);
	return m;
}

static int gen_netlink(const char *dir)
{
	struct pcapng_buf b = { 0 };
	int rc = 0;

	/* a pod arrives: its veth pair, the peer moved into the pod (nsid 3),
	 * the host route to its IP, an address and a neighbour entry */
	add(&b, link_msg(RTM_NEWLINK, 7, "veth1a2b3c", "veth", 0, -1));
	add(&b, link_msg(RTM_NEWLINK, 7, "veth1a2b3c", "veth", 2, 3));
	add(&b, link_msg(RTM_NEWLINK, 1, "lo", NULL, 0, -1));
	add(&b, link_msg(RTM_NEWLINK, 2, "eth0", NULL, 0, -1));
	add(&b, route_msg(RTM_NEWROUTE, AF_INET, "10.244.1.5", 32, 7, RT_TABLE_MAIN));
	add(&b, route_msg(RTM_NEWROUTE, AF_INET6, "fd00:10:244:1::5", 128, 7, RT_TABLE_MAIN));
	add(&b, addr_msg(2, "192.168.1.10"));
	add(&b, neigh_msg(7, "10.244.1.5"));
	rc |= save(dir, "pod-arrives.nl", b.p, b.len);
	/* and leaves: route and veth removed */
	add(&b, route_msg(RTM_DELROUTE, AF_INET, "10.244.1.5", 32, 7, RT_TABLE_MAIN));
	add(&b, link_msg(RTM_DELLINK, 7, "veth1a2b3c", "veth", 0, -1));
	rc |= save(dir, "pod-leaves.nl", b.p, b.len);
	pcapng_buf_free(&b);
	/* other CNIs' names, a route in another table, a renamed link */
	add(&b, link_msg(RTM_NEWLINK, 11, "lxc8f1e", "veth", 3, 0));
	add(&b, link_msg(RTM_NEWLINK, 12, "cali0123456789a", "veth", 3, 1));
	add(&b, link_msg(RTM_NEWLINK, 13, "vxlan.calico", "vxlan", 0, -1));
	add(&b, route_msg(RTM_NEWROUTE, AF_INET, "10.244.2.7", 32, 12, 200));
	add(&b, link_msg(RTM_NEWLINK, 11, "lxc-renamed", "veth", 3, 0));
	rc |= save(dir, "cnis.nl", b.p, b.len);
	pcapng_buf_free(&b);
	return rc;
}

/* What the kernel answers to link and route dumps here. */
static int dump(int fd, int type, int family, struct pcapng_buf *out)
{
	struct {
		struct nlmsghdr h;
		struct rtgenmsg g;
	} req = { { NLMSG_LENGTH(sizeof(struct rtgenmsg)), (uint16_t)type, NLM_F_REQUEST | NLM_F_DUMP, 1, 0 },
		  { (unsigned char)family } };
	static uint8_t buf[1 << 16];

	if (send(fd, &req, req.h.nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		int rem = (int)n;
		if (n <= 0)
			return -EIO;
		for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, rem); h = NLMSG_NEXT(h, rem)) {
			if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR)
				return 0;
			if (out->len + NLMSG_ALIGN(h->nlmsg_len) > out->cap) {
				out->cap = (out->len + NLMSG_ALIGN(h->nlmsg_len)) * 2;
				out->p = realloc(out->p, out->cap);
			}
			memcpy(out->p + out->len, h, NLMSG_ALIGN(h->nlmsg_len));
			out->len += NLMSG_ALIGN(h->nlmsg_len);
		}
	}
}

static int gen_netlink_dump(const char *dir)
{
	struct pcapng_buf b = { 0 };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), rc;

	if (fd < 0)
		return -errno;
	rc = dump(fd, RTM_GETLINK, AF_UNSPEC, &b);
	if (!rc)
		rc = save(dir, "kernel-links.nl", b.p, b.len);
	b.len = 0;
	if (!rc)
		rc = dump(fd, RTM_GETROUTE, AF_UNSPEC, &b);
	if (!rc)
		rc = save(dir, "kernel-routes.nl", b.p, b.len);
	pcapng_buf_free(&b);
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "pcapng"))
		return gen_pcapng(argv[2]) ? 1 : 0;
	if (argc == 3 && !strcmp(argv[1], "netlink"))
		return gen_netlink(argv[2]) ? 1 : 0;
	if (argc == 3 && !strcmp(argv[1], "netlink-dump"))
		return gen_netlink_dump(argv[2]) ? 1 : 0;
	fprintf(stderr, "usage: gen_corpus pcapng|netlink|netlink-dump DIR\n");
	return 2;
}
