// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/net_namespace.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/route/nexthop.h>

#include "ifaces.h"
#include "util.h"

struct att {
	char *name; /* link pin name */
	char *pod;  /* ns/name */
	int hook;
	int ifindex; /* in its own namespace */
	bool attached;
	bool seen; /* still wanted in this pass */
	struct moat_attach_info info;
	struct moat_iface_plan plan; /* issue 6 */
	char error[160];
};

struct moat_ifaces {
	struct moat_dp *dp;
	enum moat_mode mode;
	char *netns_dirs;
	char *uplink;
	char *veth_prefixes;   /* attach to these veths before their pod is known */
	struct nl_sock *sock;  /* requests */
	struct nl_sock *msock; /* cache manager */
	struct nl_cache_mngr *mngr;
	struct nl_cache *links, *routes;
	bool changed;
	uint64_t resyncs;                 /* overruns answered by re-reading everything */
	struct hmap atts;                 /* name -> att */
	struct hmap pod_if;               /* ns/name -> host ifindex (int*) */
	struct moat_hwplan *hwplan;       /* issue 6: attach plans, or NULL */
	const struct moat_compiler *comp; /* during moat_ifaces_attach */
	struct moat_ifaces_nlstats nl;    /* moat_ifaces_input */
};

static int nl_err(int e)
{
	/* libnl's NLE_* are not errnos: map the ones that matter */
	switch (e < 0 ? -e : e) {
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOACCESS:
		return -EACCES;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_INVAL:
		return -EINVAL;
	default:
		return -EIO;
	}
}

/* libnl-route trusts some lengths of route messages (3.7, and upstream
 * still): an RTA_MULTIPATH next hop of length 0 makes rtnl_route_parse()
 * loop forever, allocating a next hop each time; one whose padded length
 * overruns the attribute makes it read past the message; an RTA_VIA (at
 * the top or in a next hop) shorter than its family field makes it copy a
 * negative length.  The kernel never sends such a thing; a message that
 * holds one is skipped (and counted) before libnl parses it, on the
 * daemon's sockets and in moat_ifaces_input(). */
static bool via_sane(const struct rtattr *a, int len)
{
	for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
		if ((a->rta_type & NLA_TYPE_MASK) == RTA_VIA &&
		    RTA_PAYLOAD(a) < offsetof(struct rtvia, rtvia_addr))
			return false;
	return true;
}

static bool msg_sane(const struct nlmsghdr *h)
{
	const struct rtattr *a;
	int len;

	if (h->nlmsg_type != RTM_NEWROUTE && h->nlmsg_type != RTM_DELROUTE && h->nlmsg_type != RTM_GETROUTE)
		return true;
	if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg)))
		return true; /* libnl refuses it on its own */
	len = (int)RTM_PAYLOAD(h);
	if (!via_sane(RTM_RTA(NLMSG_DATA(h)), len))
		return false;
	for (a = RTM_RTA(NLMSG_DATA(h)); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		const struct rtnexthop *nh = RTA_DATA(a);
		size_t tlen = RTA_PAYLOAD(a);

		if ((a->rta_type & NLA_TYPE_MASK) != RTA_MULTIPATH)
			continue;
		/* libnl's walk (parse_multipath), with the lengths checked */
		while (tlen >= sizeof(*nh) && tlen >= nh->rtnh_len) {
			if (nh->rtnh_len < sizeof(*nh) || (size_t)RTNH_ALIGN(nh->rtnh_len) > tlen ||
			    !via_sane(RTNH_DATA(nh), (int)(nh->rtnh_len - sizeof(*nh))))
				return false;
			tlen -= (size_t)RTNH_ALIGN(nh->rtnh_len);
			nh = RTNH_NEXT(nh);
		}
	}
	return true;
}

/* libnl-route 3.7 compares two links of a kind with its info ops (vxlan and
 * others) through their info data without checking that either has any: a
 * link message whose IFLA_LINKINFO names such a kind without IFLA_INFO_DATA,
 * seen twice, is a NULL dereference in nl_cache_include().  moat only reads
 * the kind "veth" (whose linkinfo libnl never compares), so any other kind
 * without info data has its linkinfo hidden from libnl (the attribute
 * becomes IFLA_UNSPEC, which libnl skips); the link itself is kept. */
static void link_info_hide(struct nlmsghdr *h)
{
	struct rtattr *a;
	int len;

	if ((h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) ||
	    h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
		return;
	len = (int)IFLA_PAYLOAD(h);
	for (a = IFLA_RTA(NLMSG_DATA(h)); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		const struct rtattr *n;
		int nlen = (int)RTA_PAYLOAD(a);
		bool veth = false, data = false;

		if ((a->rta_type & NLA_TYPE_MASK) != IFLA_LINKINFO)
			continue;
		struct rtattr *x;

		for (n = RTA_DATA(a); RTA_OK(n, nlen); n = RTA_NEXT(n, nlen)) {
			int t = n->rta_type & NLA_TYPE_MASK;
			if (t == IFLA_INFO_DATA)
				data = true;
			else if (t == IFLA_INFO_KIND)
				veth = RTA_PAYLOAD(n) >= 5 && !memcmp(RTA_DATA(n), "veth", 5);
		}
		if (!veth && !data) {
			a->rta_type = IFLA_UNSPEC;
			continue;
		}
		if (data)
			continue;
		/* a veth with IFLA_INFO_XSTATS but no data: libnl calls the kind's
		 * parser with NULL data, which veth's dereferences; hide the stats */
		nlen = (int)RTA_PAYLOAD(a);
		for (x = RTA_DATA(a); RTA_OK(x, nlen); x = RTA_NEXT(x, nlen))
			if ((x->rta_type & NLA_TYPE_MASK) == IFLA_INFO_XSTATS)
				x->rta_type = IFLA_INFO_UNSPEC;
	}
}

static int msg_in(struct nl_msg *m, void *arg)
{
	struct moat_ifaces *fi = arg;

	link_info_hide(nlmsg_hdr(m));
	if (msg_sane(nlmsg_hdr(m)))
		return NL_OK;
	fi->nl.refused++;
	return NL_SKIP;
}

static void mngr_change(struct nl_cache *cache, struct nl_object *obj, int action, void *arg)
{
	struct moat_ifaces *fi = arg;

	(void)cache;
	(void)obj;
	(void)action;
	fi->changed = true;
}

static struct moat_ifaces *ifaces_alloc(struct moat_dp *dp, const struct moat_ifaces_opts *o)
{
	struct moat_ifaces *fi = xcalloc(1, sizeof(*fi));

	fi->dp = dp;
	fi->mode = o ? o->mode : MOAT_MODE_AUTO;
	fi->netns_dirs = xstrdup(o && o->netns_dirs ? o->netns_dirs : "/run/netns:/var/run/netns");
	fi->uplink = xstrdup(o ? o->uplink : NULL);
	fi->veth_prefixes = xstrdup(o && o->veth_prefixes && *o->veth_prefixes ? o->veth_prefixes : NULL);
	fi->hwplan = o ? o->hwplan : NULL;
	hmap_init(&fi->atts);
	hmap_init(&fi->pod_if);
	return fi;
}

int moat_ifaces_new(struct moat_dp *dp, const struct moat_ifaces_opts *o, struct moat_ifaces **ret)
{
	struct moat_ifaces *fi = ifaces_alloc(dp, o);
	int err;

	fi->sock = nl_socket_alloc();
	fi->msock = nl_socket_alloc();
	if (!fi->sock || !fi->msock) {
		err = -ENOMEM;
		goto fail;
	}
	err = nl_connect(fi->sock, NETLINK_ROUTE);
	if (err) {
		err = nl_err(err);
		goto fail;
	}
	err = nl_cache_mngr_alloc(fi->msock, NETLINK_ROUTE, NL_AUTO_PROVIDE, &fi->mngr);
	if (err) {
		err = nl_err(err);
		goto fail;
	}
	/* notifications, and the re-reads after an overrun */
	nl_socket_modify_cb(fi->msock, NL_CB_MSG_IN, NL_CB_CUSTOM, msg_in, fi);
	nl_socket_modify_cb(fi->sock, NL_CB_MSG_IN, NL_CB_CUSTOM, msg_in, fi);
	err = nl_cache_mngr_add(fi->mngr, "route/link", mngr_change, fi, &fi->links);
	if (!err)
		err = nl_cache_mngr_add(fi->mngr, "route/route", mngr_change, fi, &fi->routes);
	if (err) {
		err = nl_err(err);
		goto fail;
	}
	*ret = fi;
	return 0;
fail:
	moat_ifaces_free(fi);
	return err;
}

void moat_ifaces_free(struct moat_ifaces *fi)
{
	size_t it = 0;
	void *v;

	if (!fi)
		return;
	while (hmap_next(&fi->atts, &it, NULL, NULL, &v)) {
		struct att *a = v;
		free(a->name);
		free(a->pod);
		free(a);
	}
	it = 0;
	const void *k;
	while (hmap_next(&fi->pod_if, &it, &k, NULL, &v)) {
		free((void *)k);
		free(v);
	}
	hmap_free(&fi->atts);
	hmap_free(&fi->pod_if);
	if (fi->mngr) {
		nl_cache_mngr_free(fi->mngr);
	} else {
		/* offline: the caches are ours */
		if (fi->links)
			nl_cache_free(fi->links);
		if (fi->routes)
			nl_cache_free(fi->routes);
	}
	if (fi->sock)
		nl_socket_free(fi->sock);
	/* the cache manager closes a socket it was given, but does not free it */
	if (fi->msock)
		nl_socket_free(fi->msock);
	free(fi->netns_dirs);
	free(fi->uplink);
	free(fi->veth_prefixes);
	free(fi);
}

int moat_ifaces_fd(const struct moat_ifaces *fi)
{
	return nl_cache_mngr_get_fd(fi->mngr);
}

bool moat_ifaces_ready(struct moat_ifaces *fi)
{
	int err = nl_cache_mngr_data_ready(fi->mngr);
	bool ch = fi->changed;

	if (err == -NLE_NOMEM || err == -NLE_MSG_OVERFLOW) {
		/* overrun: notifications were lost, resync everything */
		nl_cache_refill(fi->sock, fi->links);
		nl_cache_refill(fi->sock, fi->routes);
		fi->resyncs++;
		ch = true;
	}
	fi->changed = false;
	return ch;
}

uint64_t moat_ifaces_resyncs(const struct moat_ifaces *fi)
{
	return fi ? fi->resyncs : 0;
}

int moat_ifaces_new_offline(const struct moat_ifaces_opts *o, struct moat_ifaces **ret)
{
	struct moat_ifaces *fi = ifaces_alloc(NULL, o);
	int err = nl_cache_alloc_name("route/link", &fi->links);

	if (!err)
		err = nl_cache_alloc_name("route/route", &fi->routes);
	if (err) {
		moat_ifaces_free(fi);
		return nl_err(err);
	}
	*ret = fi;
	return 0;
}

struct input_ctx {
	struct moat_ifaces *fi;
	int rc;
};

/* What the cache manager does with a parsed notification (libnl's
 * include_cb): into the cache that follows its kind. */
static void input_obj(struct nl_object *obj, void *arg)
{
	struct input_ctx *x = arg;
	struct moat_ifaces *fi = x->fi;
	const char *type = nl_object_get_type(obj);
	struct nl_cache *cache = NULL;

	if (type && !strcmp(type, "route/link"))
		cache = fi->links;
	else if (type && !strcmp(type, "route/route"))
		cache = fi->routes;
	if (!cache) {
		x->rc = 1;
		return;
	}
	x->rc = nl_cache_include(cache, obj, mngr_change, fi) < 0 ? -1 : 0;
}

int moat_ifaces_input(struct moat_ifaces *fi, const void *buf, size_t len)
{
	const struct nlmsghdr *h = buf;
	int rem = len > (size_t)INT_MAX ? INT_MAX : (int)len;

	for (; nlmsg_ok(h, rem); h = nlmsg_next((struct nlmsghdr *)h, &rem)) {
		struct nl_msg *m = nlmsg_convert((struct nlmsghdr *)h);
		struct input_ctx x = { .fi = fi, .rc = 1 };
		int err;

		fi->nl.msgs++;
		if (!m)
			return -ENOMEM;
		if (!msg_sane(h)) {
			fi->nl.refused++;
			nlmsg_free(m);
			continue;
		}
		link_info_hide(nlmsg_hdr(m));
		nlmsg_set_proto(m, NETLINK_ROUTE);
		err = nl_msg_parse(m, input_obj, &x);
		nlmsg_free(m);
		if (err == -NLE_MSGTYPE_NOSUPPORT)
			fi->nl.unknown++;
		else if (err < 0 || x.rc < 0)
			fi->nl.bad++;
		else if (x.rc > 0)
			fi->nl.other++; /* parsed, not followed (or nothing in it) */
		else
			fi->nl.applied++;
	}
	if (rem > 0)
		fi->nl.truncated++;
	return 0;
}

void moat_ifaces_nlstats(const struct moat_ifaces *fi, struct moat_ifaces_nlstats *st)
{
	if (fi)
		*st = fi->nl;
	else
		memset(st, 0, sizeof(*st));
}

struct nl_cache *moat_ifaces_link_cache(struct moat_ifaces *fi)
{
	return fi->links;
}

struct nl_cache *moat_ifaces_route_cache(struct moat_ifaces *fi)
{
	return fi->routes;
}

/* The host route to a pod address names its host-side interface. */
static int route_oif(struct moat_ifaces *fi, const struct moat_addr *a)
{
	struct nl_object *o;
	int plen = a->family == 4 ? 32 : 128;

	for (o = nl_cache_get_first(fi->routes); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *r = (struct rtnl_route *)o;
		struct nl_addr *dst = rtnl_route_get_dst(r);
		struct rtnl_nexthop *nh;

		/* the prefix length comes from the header, the address from
		 * RTA_DST: a short attribute is not a whole address */
		if (!dst || (int)nl_addr_get_prefixlen(dst) != plen ||
		    nl_addr_get_family(dst) != (a->family == 4 ? AF_INET : AF_INET6) ||
		    nl_addr_get_len(dst) != (unsigned)(a->family == 4 ? 4 : 16))
			continue;
		if (memcmp(nl_addr_get_binary_addr(dst), a->a, a->family == 4 ? 4 : 16))
			continue;
		if (rtnl_route_get_table(r) != (uint32_t)RT_TABLE_MAIN)
			continue;
		if (rtnl_route_get_nnexthops(r) != 1)
			continue;
		nh = rtnl_route_nexthop_n(r, 0);
		if (nh && rtnl_route_nh_get_ifindex(nh) > 0)
			return rtnl_route_nh_get_ifindex(nh);
	}
	return 0;
}

int moat_ifaces_route_oif(struct moat_ifaces *fi, const struct moat_addr *a)
{
	return route_oif(fi, a);
}

struct nsid_req {
	int nsid;
	bool got;
};

static int nsid_parse(struct nl_msg *msg, void *arg)
{
	struct nsid_req *r = arg;
	struct nlattr *tb[NETNSA_MAX + 1];
	struct nlmsghdr *h = nlmsg_hdr(msg);

	if (h->nlmsg_type != RTM_NEWNSID)
		return NL_SKIP;
	if (nlmsg_parse(h, sizeof(struct rtgenmsg), tb, NETNSA_MAX, NULL) < 0)
		return NL_SKIP;
	if (tb[NETNSA_NSID]) {
		r->nsid = (int)nla_get_u32(tb[NETNSA_NSID]);
		r->got = true;
	}
	return NL_OK;
}

/* The id our namespace uses for the namespace behind fd. */
static int netns_id(struct moat_ifaces *fi, int fd, int *ret)
{
	struct rtgenmsg g = { .rtgen_family = AF_UNSPEC };
	struct nsid_req r = { 0 };
	struct nl_msg *m = nlmsg_alloc_simple(RTM_GETNSID, NLM_F_REQUEST);
	int err;

	if (!m)
		return -ENOMEM;
	if (nlmsg_append(m, &g, sizeof(g), NLMSG_ALIGNTO) < 0 ||
	    nla_put_u32(m, NETNSA_FD, (uint32_t)fd) < 0) {
		nlmsg_free(m);
		return -ENOMEM;
	}
	nl_socket_modify_cb(fi->sock, NL_CB_VALID, NL_CB_CUSTOM, nsid_parse, &r);
	err = nl_send_auto(fi->sock, m);
	nlmsg_free(m);
	if (err < 0)
		return nl_err(err);
	err = nl_recvmsgs_default(fi->sock);
	if (err < 0)
		return nl_err(err);
	/* libnl asks for an ACK by default: consume it, or it would be read
	 * as the answer to the next request */
	err = nl_wait_for_ack(fi->sock);
	if (err < 0)
		return nl_err(err);
	if (!r.got || r.nsid < 0)
		return -ENOENT;
	*ret = r.nsid;
	return 0;
}

/* Opens the network namespace our namespace knows as nsid. */
static int netns_open_by_id(struct moat_ifaces *fi, int nsid)
{
	char *dirs = xstrdup(fi->netns_dirs), *save = NULL, *d;
	int found = -ENOENT;

	for (d = strtok_r(dirs, ":", &save); d && found < 0; d = strtok_r(NULL, ":", &save)) {
		DIR *dir = opendir(d);
		struct dirent *de;
		if (!dir)
			continue;
		while ((de = readdir(dir)) && found < 0) {
			char path[PATH_MAX];
			int fd, id = -1;
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", d, de->d_name);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			if (netns_id(fi, fd, &id) == 0 && id == nsid)
				found = fd;
			else
				close(fd);
		}
		closedir(dir);
	}
	free(dirs);
	return found;
}

int moat_ifaces_resolve(struct moat_ifaces *fi, struct moat_compiler *c);

struct resolve_ctx {
	struct moat_ifaces *fi;
	struct moat_compiler *c;
	int changed;
};

static int resolve_one(const struct moat_endpoint_view *v, void *arg)
{
	struct resolve_ctx *rc = arg;
	char *key;
	int ifindex = 0, *cur;

	if (!v->local || v->host_network)
		return 0;
	for (size_t i = 0; i < v->nips && !ifindex; i++)
		ifindex = route_oif(rc->fi, &v->ips[i]);
	key = xasprintf("%s/%s", v->ns, v->name);
	cur = hmap_gets(&rc->fi->pod_if, key);
	if (!cur) {
		cur = xcalloc(1, sizeof(int));
		hmap_put(&rc->fi->pod_if, key, strlen(key), cur, NULL);
	} else {
		free(key);
	}
	if (v->ifindex != ifindex) {
		moat_compiler_set_endpoint(rc->c, v->ns, v->name, ifindex);
		rc->changed++;
	}
	*cur = ifindex;
	return 0;
}

int moat_ifaces_resolve(struct moat_ifaces *fi, struct moat_compiler *c)
{
	struct resolve_ctx rc = { .fi = fi, .c = c };

	moat_compiler_endpoints(c, resolve_one, &rc);
	return rc.changed;
}

static struct att *att_get(struct moat_ifaces *fi, const char *name)
{
	struct att *a = hmap_gets(&fi->atts, name);

	if (a)
		return a;
	a = xcalloc(1, sizeof(*a));
	a->name = xstrdup(name);
	hmap_put(&fi->atts, a->name, strlen(a->name), a, NULL);
	return a;
}

static void att_do(struct moat_ifaces *fi, struct att *a, int hook, int ifindex, int netns_fd,
		   enum moat_mode mode)
{
	struct moat_attach_req req = {
		.hook = hook, .ifindex = ifindex, .netns_fd = netns_fd, .mode = mode, .name = a->name
	};
	int err;

	if (a->attached && a->ifindex == ifindex && a->hook == hook)
		return;
	a->hook = hook;
	a->ifindex = ifindex;
	if (fi->hwplan) /* profile, probe and plan (issue 6) */
		err = moat_hwplan_attach(fi->hwplan, fi->dp, &req, fi->comp,
					 hook == MOAT_HOOK_UPLINK && fi->uplink ? fi->uplink : a->name,
					 &a->info, &a->plan);
	else
		err = moat_dp_attach(fi->dp, &req, &a->info);
	a->attached = !err;
	if (err)
		snprintf(a->error, sizeof(a->error), "%s", strerror(-err));
	else
		a->error[0] = 0;
}

struct attach_ctx {
	struct moat_ifaces *fi;
	int errors;
};

/* Attaches moat_from_pod to a host-side veth and moat_to_pod to its peer in
 * the pod's namespace.  Links are named after the host-side interface, so
 * an interface attached before its pod was known keeps its link. */
static void attach_pair(struct attach_ctx *ac, int ifindex, const char *pod)
{
	struct moat_ifaces *fi = ac->fi;
	struct rtnl_link *host = rtnl_link_get(fi->links, ifindex);
	char hname[300], pname[300];
	int peer, nsid, nsfd;
	struct att *a;

	if (!host) {
		ac->errors++;
		return;
	}
	snprintf(hname, sizeof(hname), "h_%s", rtnl_link_get_name(host));
	snprintf(pname, sizeof(pname), "p_%s", rtnl_link_get_name(host));

	/* traffic from the pod: the host-side veth */
	a = att_get(fi, hname);
	a->seen = true;
	free(a->pod);
	a->pod = xstrdup(pod);
	att_do(fi, a, MOAT_HOOK_FROM_POD, ifindex, -1, fi->mode);
	ac->errors += !a->attached;

	/* traffic to the pod: the peer inside the pod's namespace */
	a = att_get(fi, pname);
	a->seen = true;
	free(a->pod);
	a->pod = xstrdup(pod);
	peer = rtnl_link_get_link(host);
	if (rtnl_link_get_link_netnsid(host, &nsid) || peer <= 0) {
		/* the cache may predate the peer's move into the pod: ask the
		 * kernel (notifications do not always carry the new netnsid) */
		struct rtnl_link *fresh = NULL;
		if (rtnl_link_get_kernel(fi->sock, ifindex, NULL, &fresh) == 0) {
			rtnl_link_put(host);
			host = fresh;
			peer = rtnl_link_get_link(host);
		}
	}
	if (rtnl_link_get_link_netnsid(host, &nsid) || peer <= 0) {
		rtnl_link_put(host);
		if (a->attached)
			return; /* a cached link from before its peer moved */
		/* the CNI may not have moved the peer yet: retried next pass */
		snprintf(a->error, sizeof(a->error), "interface %d has no peer in another namespace (yet)",
			 ifindex);
		ac->errors++;
		return;
	}
	rtnl_link_put(host);
	if (a->attached && a->ifindex == peer)
		return;
	nsfd = netns_open_by_id(fi, nsid);
	if (nsfd < 0) {
		snprintf(a->error, sizeof(a->error), "no netns file for nsid %d under %s", nsid,
			 fi->netns_dirs);
		ac->errors++;
		return;
	}
	att_do(fi, a, MOAT_HOOK_TO_POD, peer, nsfd, fi->mode);
	close(nsfd);
	ac->errors += !a->attached;
}

static int attach_one(const struct moat_endpoint_view *v, void *arg)
{
	char pod[300];

	if (!v->local || v->host_network || v->ifindex <= 0)
		return 0;
	snprintf(pod, sizeof(pod), "%s/%s", v->ns, v->name);
	attach_pair(arg, v->ifindex, pod);
	return 0;
}

static bool prefix_match(const char *prefixes, const char *name)
{
	const char *p = prefixes;

	while (p && *p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l && !strncmp(name, p, l))
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

static int unpin_stale(const char *name, bool alive, void *arg)
{
	struct moat_ifaces *fi = arg;
	struct att *a = hmap_gets(&fi->atts, name);

	if (!a || !a->seen || !alive) {
		moat_dp_detach(fi->dp, name);
		if (a && a->hook == MOAT_HOOK_UPLINK)
			moat_hwplan_detached(fi->hwplan, fi->uplink);
		if (a)
			a->attached = false;
	}
	return 0;
}

void moat_ifaces_prefix_veths(struct moat_ifaces *fi, void (*fn)(int ifindex, const char *name, void *arg),
			      void *arg)
{
	if (!fi->veth_prefixes)
		return;
	for (struct nl_object *o = nl_cache_get_first(fi->links); o; o = nl_cache_get_next(o)) {
		struct rtnl_link *l = (struct rtnl_link *)o;
		const char *type = rtnl_link_get_type(l), *name = rtnl_link_get_name(l);
		if (!type || strcmp(type, "veth") || !prefix_match(fi->veth_prefixes, name))
			continue;
		fn(rtnl_link_get_ifindex(l), name, arg);
	}
}

static void attach_prefixed(int ifindex, const char *name, void *arg)
{
	struct attach_ctx *ac = arg;
	char hname[300];
	struct att *a;

	snprintf(hname, sizeof(hname), "h_%s", name);
	a = hmap_gets(&ac->fi->atts, hname);
	if (a && a->seen)
		return; /* already done for its pod */
	attach_pair(ac, ifindex, "");
}

int moat_ifaces_attach(struct moat_ifaces *fi, struct moat_compiler *c)
{
	struct attach_ctx ac = { .fi = fi };
	size_t it = 0;
	void *v;

	fi->comp = c;
	while (hmap_next(&fi->atts, &it, NULL, NULL, &v))
		((struct att *)v)->seen = false;
	moat_compiler_endpoints(c, attach_one, &ac);
	/* pod veths not matched to a pod yet: enforce before the first packet
	 * (fail closed: the datapath drops what it cannot attribute) */
	moat_ifaces_prefix_veths(fi, attach_prefixed, &ac);
	if (fi->uplink) {
		struct rtnl_link *l = rtnl_link_get_by_name(fi->links, fi->uplink);
		struct att *a = att_get(fi, "uplink");
		a->seen = true;
		if (l) {
			att_do(fi, a, MOAT_HOOK_UPLINK, rtnl_link_get_ifindex(l), -1, MOAT_MODE_AUTO);
			rtnl_link_put(l);
			ac.errors += !a->attached;
		} else {
			snprintf(a->error, sizeof(a->error), "no interface %s", fi->uplink);
			ac.errors++;
		}
	}
	/* links of interfaces that are gone, or no longer ours */
	moat_dp_links(fi->dp, unpin_stale, fi);
	return ac.errors ? -EAGAIN : 0;
}

void moat_ifaces_reattach(struct moat_ifaces *fi)
{
	size_t it = 0;
	void *v;

	while (hmap_next(&fi->atts, &it, NULL, NULL, &v))
		((struct att *)v)->attached = false;
}

int moat_ifaces_status(struct moat_ifaces *fi, int (*fn)(const struct moat_iface_status *s, void *arg),
		       void *arg)
{
	size_t it = 0;
	void *v;

	while (hmap_next(&fi->atts, &it, NULL, NULL, &v)) {
		struct att *a = v;
		struct moat_iface_status s;
		int rc;

		if (!a->seen)
			continue;
		memset(&s, 0, sizeof(s));
		s.name = a->name;
		s.pod = a->pod;
		s.hook = a->hook;
		s.ifindex = a->ifindex;
		s.mode = a->info.mode;
		memcpy(s.why, a->info.why, sizeof(s.why));
		s.attached = a->attached;
		s.plan = &a->plan;
		snprintf(s.error, sizeof(s.error), "%s", a->error);
		rc = fn(&s, arg);
		if (rc)
			return rc;
	}
	return 0;
}
