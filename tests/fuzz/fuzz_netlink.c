// SPDX-License-Identifier: Apache-2.0
/* Netlink notifications as moatd's interface discovery (hostd/ifaces.c)
 * takes them: the input is a receive buffer of rtnetlink messages (struct
 * nlmsghdr, a family header, rtattrs: RTM_NEWLINK/DELLINK, NEWROUTE/
 * DELROUTE, NEWADDR, NEWNEIGH, anything), fed through moat_ifaces_input():
 * libnl-route parses each into an object and includes it in the link or
 * route cache as the daemon's cache manager does.  Then the daemon's own
 * lookups run over the caches: the route to each cached host route's
 * destination (how pods are resolved to their host veth), the veths the
 * --veth-prefix list matches (attached before their pods are known).
 *
 * Properties: no crash, leak or undefined behaviour; every whole message is
 * counted once, by what became of it (applied, other kind, unknown type,
 * refused by libnl, skipped before libnl), a buffer ending inside a message is counted
 * truncated; every cached link name is a string shorter than IFNAMSIZ; the
 * prefix matcher reports exactly the veths whose names start with one of
 * the (non-empty) prefixes; the route lookup finds an interface for every
 * cached single-nexthop host route of the main table; the last valid
 * RTM_NEWLINK for an interface leaves it in the cache under its name, a
 * valid RTM_DELLINK after it removes it. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/cache.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/route/nexthop.h>

#include "ifaces.h"

#define PREFIXES "veth,lxc,,cali"

static bool ref_match(const char *name)
{
	static const char *const p[] = { "veth", "lxc", "cali" };

	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		if (!strncmp(name, p[i], strlen(p[i])))
			return true;
	return false;
}

struct seen {
	int n;
	int ifindex[512];
};

static void on_veth(int ifindex, const char *name, void *arg)
{
	struct seen *s = arg;

	assert(name && strlen(name) < IFNAMSIZ && ref_match(name));
	if (s->n < 512)
		s->ifindex[s->n] = ifindex;
	s->n++;
}

/* The link messages of the buffer that are beyond doubt: header, family
 * AF_UNSPEC, a positive index, a NUL-terminated name shorter than
 * IFNAMSIZ, whole attributes.  (Links of other families are other objects
 * in the cache with the same index; rtnl_link_get() finds either.) */
struct lmsg {
	int type, ifindex;
	bool doubt;
	char name[IFNAMSIZ];
};

/* 1: plain; 0: not about a link; -1: about m->ifindex, in doubt */
static int plain_link(const struct nlmsghdr *h, struct lmsg *m)
{
	const struct ifinfomsg *ifi;
	const struct rtattr *a;
	int len;

	if (h->nlmsg_type < RTM_NEWLINK || h->nlmsg_type > RTM_SETLINK)
		return 0;
	if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi)))
		return 0;
	ifi = NLMSG_DATA(h);
	m->type = h->nlmsg_type;
	m->ifindex = ifi->ifi_index;
	m->doubt = false;
	m->name[0] = 0;
	if (ifi->ifi_family != AF_UNSPEC || (m->type != RTM_NEWLINK && m->type != RTM_DELLINK))
		return -1;
	len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi)));
	for (a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t l = RTA_PAYLOAD(a);
		if ((a->rta_type & NLA_TYPE_MASK) != IFLA_IFNAME)
			continue;
		if (!l || l > IFNAMSIZ || ((const char *)RTA_DATA(a))[l - 1] || strlen(RTA_DATA(a)) != l - 1)
			return -1;
		memcpy(m->name, RTA_DATA(a), l);
	}
	/* the rest of the message must hold whole attributes too */
	return len == 0 && (m->type == RTM_DELLINK || m->name[0]) ? 1 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_ifaces_opts o = { .veth_prefixes = PREFIXES };
	struct moat_ifaces *fi, *one;
	struct moat_ifaces_nlstats st, st1, prev;
	struct nl_cache *links, *routes;
	struct seen seen = { 0 };
	struct lmsg *last = NULL;
	size_t nlast = 0;
	uint8_t *buf;
	int veths = 0, whole = 0, rem;

	if (size > 1 << 16)
		return 0;
	/* an aligned copy, as a receive buffer is */
	buf = calloc(1, size ? size : 1);
	memcpy(buf, data, size);
	assert(!moat_ifaces_new_offline(&o, &fi));
	assert(!moat_ifaces_input(fi, buf, size));
	moat_ifaces_nlstats(fi, &st);
	/* the same messages one at a time: what became of each */
	assert(!moat_ifaces_new_offline(&o, &one));

	/* every whole message counted once, by what became of it */
	rem = (int)size;
	for (const struct nlmsghdr *h = (const void *)buf; nlmsg_ok(h, rem);
	     h = nlmsg_next((struct nlmsghdr *)h, &rem)) {
		struct lmsg m;
		size_t i;
		int k;
		whole++;
		moat_ifaces_nlstats(one, &prev);
		assert(!moat_ifaces_input(one, h, h->nlmsg_len));
		moat_ifaces_nlstats(one, &st1);
		assert(st1.msgs == prev.msgs + 1 && st1.truncated == prev.truncated);
		if (!(k = plain_link(h, &m)))
			continue;
		if (st1.applied != prev.applied + 1)
			k = -1; /* refused by libnl (its checks go deeper than ours) */
		/* the last word on each interface, unless any was in doubt */
		for (i = 0; i < nlast && last[i].ifindex != m.ifindex; i++)
			;
		if (i == nlast) {
			void *nl = realloc(last, ++nlast * sizeof(*last));
			if (!nl)
				abort();
			last = nl;
			last[i].doubt = false;
		}
		m.doubt = last[i].doubt || k < 0;
		last[i] = m;
	}
	assert(st.msgs == (uint64_t)whole);
	assert(st.applied + st.other + st.unknown + st.bad + st.refused == st.msgs);
	assert(st.truncated == (rem > 0 ? 1u : 0u));
	/* one buffer or one message at a time: the same outcome */
	moat_ifaces_nlstats(one, &st1);
	assert(st.applied == st1.applied && st.other == st1.other && st.unknown == st1.unknown &&
	       st.bad == st1.bad && st.refused == st1.refused);
	assert(nl_cache_nitems(moat_ifaces_link_cache(fi)) == nl_cache_nitems(moat_ifaces_link_cache(one)));
	assert(nl_cache_nitems(moat_ifaces_route_cache(fi)) == nl_cache_nitems(moat_ifaces_route_cache(one)));
	moat_ifaces_free(one);

	/* links: bounded names; the prefix matcher reports exactly the veths
	 * whose names match */
	links = moat_ifaces_link_cache(fi);
	routes = moat_ifaces_route_cache(fi);
	moat_ifaces_prefix_veths(fi, on_veth, &seen);
	for (struct nl_object *ob = nl_cache_get_first(links); ob; ob = nl_cache_get_next(ob)) {
		struct rtnl_link *l = (struct rtnl_link *)ob;
		const char *name = rtnl_link_get_name(l), *type = rtnl_link_get_type(l);
		if (name)
			assert(strnlen(name, IFNAMSIZ) < IFNAMSIZ);
		if (name && type && !strcmp(type, "veth") && ref_match(name))
			veths++;
	}
	assert(seen.n == veths);
	/* the last valid word on an interface holds */
	for (size_t i = 0; i < nlast; i++) {
		struct rtnl_link *l;
		if (last[i].doubt)
			continue;
		l = rtnl_link_get(links, last[i].ifindex);
		if (last[i].type == RTM_NEWLINK)
			assert(l && rtnl_link_get_name(l) && !strcmp(rtnl_link_get_name(l), last[i].name));
		else
			assert(!l);
		if (l)
			rtnl_link_put(l);
	}
	/* routes: a lookup goes over every cached route; a pod's host route
	 * leads to its interface */
	{
		struct moat_addr none4 = { .family = 4 }, none6 = { .family = 6 };
		memset(none4.a, 0xfe, 4);
		memset(none6.a, 0xfe, 16);
		assert(moat_ifaces_route_oif(fi, &none4) >= 0);
		assert(moat_ifaces_route_oif(fi, &none6) >= 0);
	}
	for (struct nl_object *ob = nl_cache_get_first(routes); ob; ob = nl_cache_get_next(ob)) {
		struct rtnl_route *r = (struct rtnl_route *)ob;
		struct nl_addr *dst = rtnl_route_get_dst(r);
		struct rtnl_nexthop *nh;
		struct moat_addr a = { 0 };
		int fam, oif;
		if (!dst || rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_nnexthops(r) != 1)
			continue;
		fam = nl_addr_get_family(dst);
		if (!((fam == AF_INET && nl_addr_get_prefixlen(dst) == 32 && nl_addr_get_len(dst) == 4) ||
		      (fam == AF_INET6 && nl_addr_get_prefixlen(dst) == 128 && nl_addr_get_len(dst) == 16)))
			continue;
		nh = rtnl_route_nexthop_n(r, 0);
		if (!nh || rtnl_route_nh_get_ifindex(nh) <= 0)
			continue;
		a.family = fam == AF_INET ? 4 : 6;
		memcpy(a.a, nl_addr_get_binary_addr(dst), nl_addr_get_len(dst));
		oif = moat_ifaces_route_oif(fi, &a);
		assert(oif > 0);
	}

	free(last);
	free(buf);
	moat_ifaces_free(fi);
	return 0;
}
