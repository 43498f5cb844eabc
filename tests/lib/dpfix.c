// SPDX-License-Identifier: Apache-2.0
/* Datapath fixtures; see dpfix.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netlink/netlink.h>
#include <netlink/route/link/veth.h>

#include "dpfix.h"
#include "pkt.h"

/* ---- set-up ------------------------------------------------------------ */
static const char *const hook_names[MOAT_HOOK_MAX] = {
	[MOAT_HOOK_FROM_POD] = "from_pod",
	[MOAT_HOOK_TO_POD] = "to_pod",
	[MOAT_HOOK_UPLINK] = "uplink",
};

int fix_open(struct dpfix **ret)
{
	struct moat_dp_opts opts = {
		.no_pin = true,
		.events = true,
		.max_policy = 4096,
		.max_ips = 1024,
		.max_ct = 4096,
		.max_identities = FIX_MAX_IDENTITIES,
		.max_rules = FIX_MAX_RULES,
	};
	struct dpfix *f;
	int err;

	if (geteuid() != 0)
		return -EPERM;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	err = moat_dp_open(&opts, &f->dp, NULL);
	if (err) {
		free(f);
		return err;
	}
	for (int h = 0; h < MOAT_HOOK_MAX; h++) {
		f->prog_fd[h] = moat_dp_prog_fd(f->dp, h);
		if (f->prog_fd[h] < 0) {
			fprintf(stderr, "dpfix: no program for hook %s\n", hook_names[h]);
			fix_close(f);
			return -ENOENT;
		}
	}
	f->ncpu = libbpf_num_possible_cpus();
	if (f->ncpu <= 0) {
		fix_close(f);
		return -EINVAL;
	}
	*ret = f;
	return 0;
}

void fix_close(struct dpfix *f)
{
	if (!f)
		return;
	if (f->tx)
		moat_tx_abort(f->tx);
	moat_dp_close(f->dp);
	free(f);
}

static int percpu_zero(struct dpfix *f, const char *map, __u32 nkeys, size_t value_size)
{
	int fd = moat_dp_map_fd(f->dp, map);
	void *zero;
	int err = 0;

	if (fd < 0)
		return fd;
	zero = calloc((size_t)f->ncpu, (value_size + 7) & ~(size_t)7);
	if (!zero)
		return -ENOMEM;
	for (__u32 k = 0; k < nkeys; k++) {
		if (bpf_map_update_elem(fd, &k, zero, BPF_ANY)) {
			err = -errno;
			break;
		}
	}
	free(zero);
	return err;
}

static int hash_clear(struct dpfix *f, const char *map)
{
	int fd = moat_dp_map_fd(f->dp, map);
	__u8 key[64];

	if (fd < 0)
		return fd;
	while (bpf_map_get_next_key(fd, NULL, key) == 0)
		if (bpf_map_delete_elem(fd, key) && errno != ENOENT)
			return -errno;
	return 0;
}

static void config_defaults(struct moat_config *c)
{
	/* as the loader sets them; the slot fields belong to transactions */
	c->flags = MOAT_CFG_REVOKE_ESTABLISHED | MOAT_CFG_ALLOW_LOCAL_NODE | MOAT_CFG_ENFORCE;
	c->sample_every = 0;
	c->ct_tcp_timeout_s = 21600;
	c->ct_tcp_close_timeout_s = 10;
	c->ct_other_timeout_s = 60;
	c->ct_syn_timeout_s = 60;
	c->deny_events_per_s = 1000;
	c->deny_events_burst = 2000;
	c->snaplen = 128;
}

int fix_reset(struct dpfix *f)
{
	struct moat_tx *tx;
	int err;

	if (f->tx) {
		moat_tx_abort(f->tx);
		f->tx = NULL;
	}
	f->nsubj = 0;
	err = moat_tx_begin(f->dp, true, &tx);
	if (err)
		return err;
	err = moat_tx_commit(tx, NULL);
	if (!err)
		err = moat_dp_settle(f->dp);
	if (!err)
		err = moat_dp_ct_flush(f->dp);
	if (!err)
		err = hash_clear(f, MOAT_MAP_FRAG4);
	if (!err)
		err = hash_clear(f, MOAT_MAP_FRAG6);
	if (!err)
		err = hash_clear(f, MOAT_MAP_DENY4);
	if (!err)
		err = hash_clear(f, MOAT_MAP_DENY6);
	if (!err)
		err = percpu_zero(f, MOAT_MAP_STATS, MOAT_STAT_MAX, sizeof(struct moat_stat));
	if (!err)
		err = percpu_zero(f, MOAT_MAP_RULESTATS, FIX_MAX_RULES, sizeof(struct moat_rule_stat));
	if (!err)
		err = percpu_zero(f, MOAT_MAP_EVSTATS, MOAT_EVS_MAX, sizeof(__u64));
	if (!err)
		config_defaults(moat_dp_config(f->dp));
	return err;
}

int fix_private_netns(const char *const names[2], int ifindex[2])
{
	struct nl_sock *sk;
	int err;

	if (unshare(CLONE_NEWNET))
		return -errno;
	sk = nl_socket_alloc();
	if (!sk)
		return -ENOMEM;
	err = nl_connect(sk, NETLINK_ROUTE);
	if (!err)
		err = rtnl_link_veth_add(sk, names[0], names[1], getpid());
	nl_socket_free(sk);
	if (err) {
		fprintf(stderr, "dpfix: veth %s/%s: %s\n", names[0], names[1], nl_geterror(err));
		return -EIO;
	}
	for (int i = 0; i < 2; i++) {
		ifindex[i] = if_nametoindex(names[i]);
		if (!ifindex[i])
			return -errno;
	}
	return 0;
}

/* ---- tables ---------------------------------------------------------------- */
static int tx_open(struct dpfix *f)
{
	return f->tx ? 0 : moat_tx_begin(f->dp, false, &f->tx);
}

static int tx_put(struct dpfix *f, enum moat_tbl t, const void *key, const void *val)
{
	int err = tx_open(f);

	return err ? err : moat_tx_put(f->tx, t, key, val);
}

static int tx_del(struct dpfix *f, enum moat_tbl t, const void *key)
{
	int err = tx_open(f);

	return err ? err : moat_tx_del(f->tx, t, key);
}

static bool is_ip6(const char *s)
{
	return strchr(s, ':') != NULL;
}

int fix_ip(struct dpfix *f, const char *ip, __u32 identity, __u8 cls, __u8 flags, __u32 region)
{
	struct moat_ip_info info = {
		.identity = identity,
		.region = region,
		.class = cls,
		.flags = flags,
	};

	if (is_ip6(ip)) {
		struct moat_ip6_key k;
		if (inet_pton(AF_INET6, ip, k.addr) != 1)
			return -EINVAL;
		return tx_put(f, MOAT_T_IP6, &k, &info);
	} else {
		struct moat_ip4_key k;
		if (inet_pton(AF_INET, ip, &k.addr) != 1)
			return -EINVAL;
		return tx_put(f, MOAT_T_IP4, &k, &info);
	}
}

int fix_pod(struct dpfix *f, __u32 identity, const char *ip4, const char *ip6, bool local)
{
	__u8 flags = local ? MOAT_IP_F_LOCAL : 0;
	int err = 0;

	if (ip4)
		err = fix_ip(f, ip4, identity, MOAT_CLASS_POD, flags, 0);
	if (!err && ip6)
		err = fix_ip(f, ip6, identity, MOAT_CLASS_POD, flags, 0);
	return err;
}

int fix_endpoint(struct dpfix *f, int ifindex, __u32 identity, const char *ip4, const char *ip6)
{
	return fix_endpoint_regions(f, ifindex, identity, ip4, ip6, 0, 0);
}

int fix_endpoint_regions(struct dpfix *f, int ifindex, __u32 identity, const char *ip4, const char *ip6,
			 __u32 region4, __u32 region6)
{
	struct moat_endpoint ep = {
		.identity = identity, .flags = MOAT_EP_F_VALID, .region4 = region4, .region6 = region6
	};
	__u32 key = ifindex;

	if (ip4) {
		if (inet_pton(AF_INET, ip4, &ep.ip4) != 1)
			return -EINVAL;
		ep.flags |= MOAT_EP_F_HAS_IP4;
	}
	if (ip6) {
		if (inet_pton(AF_INET6, ip6, ep.ip6) != 1)
			return -EINVAL;
		ep.flags |= MOAT_EP_F_HAS_IP6;
	}
	return tx_put(f, MOAT_T_EP, &key, &ep);
}

int fix_endpoint_del(struct dpfix *f, int ifindex)
{
	__u32 key = ifindex;

	return tx_del(f, MOAT_T_EP, &key);
}

static struct moat_subject *subject_copy(struct dpfix *f, __u32 identity)
{
	for (int i = 0; i < f->nsubj; i++)
		if (f->subj[i].identity == identity)
			return &f->subj[i].s;
	if (f->nsubj == FIX_MAX_SUBJECTS)
		return NULL;
	f->subj[f->nsubj].identity = identity;
	memset(&f->subj[f->nsubj].s, 0, sizeof(struct moat_subject));
	return &f->subj[f->nsubj++].s;
}

int fix_subject(struct dpfix *f, __u32 identity, __u32 dir, __u32 flags, __u32 isolate_rule)
{
	struct moat_subject *s;

	if (dir > MOAT_DIR_EGRESS || identity >= FIX_MAX_IDENTITIES)
		return -EINVAL;
	s = subject_copy(f, identity);
	if (!s)
		return -ENOSPC;
	s->dir[dir].flags = flags;
	s->dir[dir].isolate_rule = isolate_rule;
	return tx_put(f, MOAT_T_SUBJ, &identity, s);
}

int fix_subject_audit(struct dpfix *f, __u32 identity, __u32 dir, __u32 audit_isolate_rule)
{
	struct moat_subject *s;

	if (dir > MOAT_DIR_EGRESS || identity >= FIX_MAX_IDENTITIES)
		return -EINVAL;
	s = subject_copy(f, identity);
	if (!s)
		return -ENOSPC;
	s->dir[dir].audit_isolate_rule = audit_isolate_rule;
	return tx_put(f, MOAT_T_SUBJ, &identity, s);
}

static struct moat_policy_key policy_key(__u32 subject, __u32 dir, __u32 peer, __u8 proto, __u16 port,
					 __u8 kflags)
{
	struct moat_policy_key k;

	memset(&k, 0, sizeof(k));
	k.subject = subject;
	k.peer = peer;
	k.port = port;
	k.proto = proto;
	k.flags = kflags | (dir == MOAT_DIR_EGRESS ? MOAT_PK_EGRESS : 0);
	return k;
}

int fix_rule(struct dpfix *f, __u32 subject, __u32 dir, __u32 peer, __u8 proto, __u16 port, __u8 kflags,
	     struct moat_policy_val val)
{
	struct moat_policy_key k = policy_key(subject, dir, peer, proto, port, kflags);

	return tx_put(f, MOAT_T_POL, &k, &val);
}

int fix_rule_del(struct dpfix *f, __u32 subject, __u32 dir, __u32 peer, __u8 proto, __u16 port, __u8 kflags)
{
	struct moat_policy_key k = policy_key(subject, dir, peer, proto, port, kflags);

	return tx_del(f, MOAT_T_POL, &k);
}

/* "addr/len" -> address bytes and prefix length. */
static int parse_prefix(const char *s, int family, void *addr, __u32 *plen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	char *slash, *end;
	long n;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	n = strtol(slash + 1, &end, 10);
	if (*end || n < 0 || n > (family == AF_INET ? 32 : 128))
		return -EINVAL;
	if (inet_pton(family, buf, addr) != 1)
		return -EINVAL;
	*plen = n;
	return 0;
}

int fix_cidr4(struct dpfix *f, const char *prefix, __u32 region)
{
	struct moat_net4_key k = { 0 };
	struct moat_net_info v = { .region = region };
	int err = parse_prefix(prefix, AF_INET, &k.addr, &k.prefixlen);

	return err ? err : tx_put(f, MOAT_T_NET4, &k, &v);
}

int fix_cidr6(struct dpfix *f, const char *prefix, __u32 region)
{
	struct moat_net6_key k = { 0 };
	struct moat_net_info v = { .region = region };
	int err = parse_prefix(prefix, AF_INET6, k.addr, &k.prefixlen);

	return err ? err : tx_put(f, MOAT_T_NET6, &k, &v);
}

int fix_port_class(struct dpfix *f, __u32 subject, __u32 dir, __u8 proto, __u16 first, __u32 prefix_bits,
		   __u32 cls)
{
	struct moat_port_key k;
	struct moat_port_class v = { .cls = cls };

	if (prefix_bits > 16 || (prefix_bits < 16 && (first & (0xffffu >> prefix_bits))))
		return -EINVAL;
	memset(&k, 0, sizeof(k));
	k.prefixlen = MOAT_PORT_KEY_FIXED_BITS + prefix_bits;
	k.subject = htonl(subject);
	k.dir = dir;
	k.proto = proto;
	k.port = htons(first);
	return tx_put(f, MOAT_T_PORTS, &k, &v);
}

struct moat_policy_val fix_pv_none(void)
{
	struct moat_policy_val v;

	memset(&v, 0, sizeof(v));
	v.admin_rank = MOAT_RANK_NONE;
	v.base_rank = MOAT_RANK_NONE;
	return v;
}

struct moat_policy_val fix_pv_admin(__u32 rank, __u8 action, __u32 rule)
{
	struct moat_policy_val v = fix_pv_none();

	v.admin_rank = rank;
	v.admin_action = action;
	v.admin_rule = rule;
	return v;
}

struct moat_policy_val fix_pv_netpol(__u32 rule)
{
	struct moat_policy_val v = fix_pv_none();

	v.np_rule = rule;
	return v;
}

struct moat_policy_val fix_pv_baseline(__u32 rank, __u8 action, __u32 rule)
{
	struct moat_policy_val v = fix_pv_none();

	v.base_rank = rank;
	v.base_action = action;
	v.base_rule = rule;
	return v;
}

int fix_commit(struct dpfix *f, __u32 *gen)
{
	int err;

	if (!f->tx) {
		if (gen)
			*gen = moat_dp_generation(f->dp);
		return 0;
	}
	err = moat_tx_commit(f->tx, gen); /* consumes the tx either way */
	f->tx = NULL;
	if (err)
		return err;
	return moat_dp_settle(f->dp);
}

/* ---- running packets ---------------------------------------------------------- */
static int run(struct dpfix *f, int hook, int ifindex, const void *data, size_t len, __u32 repeat)
{
	LIBBPF_OPTS(bpf_test_run_opts, o);
	struct xdp_md ctx;
	/* Test runs refuse a linear part shorter than Ethernet.  A shorter
	 * frame is sent padded to ETH_HLEN with ctx.data_end = len: the
	 * kernel (6.18) puts the padding in a fragment, which the program
	 * never sees.  Older kernels refuse that (-EINVAL). */
	size_t in_len = len < ETH_HLEN ? ETH_HLEN : len;
	__u8 in[PKT_MAX_LEN];
	int err;

	if (hook < 0 || hook >= MOAT_HOOK_MAX || len > PKT_MAX_LEN)
		return -EINVAL;
	if (f->tx) {
		err = fix_commit(f, NULL);
		if (err)
			return err;
	}
	memcpy(in, data, len);
	memset(in + len, 0, in_len - len);
	memset(&ctx, 0, sizeof(ctx));
	ctx.data_end = len;
	ctx.ingress_ifindex = ifindex;
	o.data_in = in;
	o.data_size_in = in_len;
	o.data_out = f->last_out;
	o.data_size_out = sizeof(f->last_out);
	o.ctx_in = &ctx;
	o.ctx_size_in = sizeof(ctx);
	o.repeat = repeat;
	if (bpf_prog_test_run_opts(f->prog_fd[hook], &o))
		return -errno;
	f->last_duration_ns = o.duration;
	f->last_out_len = o.data_size_out;
	if (o.data_size_out != in_len || memcmp(f->last_out, data, len))
		return -EBADMSG;
	return o.retval;
}

int fix_run_data(struct dpfix *f, int hook, int ifindex, const void *data, size_t len)
{
	return run(f, hook, ifindex, data, len, 1);
}

int fix_run(struct dpfix *f, int hook, int ifindex, const struct pkt *p)
{
	if (p->err)
		return p->err;
	return run(f, hook, ifindex, p->data, p->len, 1);
}

int fix_run_repeat(struct dpfix *f, int hook, int ifindex, const void *data, size_t len, __u32 repeat,
		   __u32 *ns_per_run)
{
	int rc = run(f, hook, ifindex, data, len, repeat);

	if (rc >= 0 && ns_per_run)
		*ns_per_run = f->last_duration_ns;
	return rc;
}

/* ---- counters ------------------------------------------------------------------ */
__u64 fix_stat(struct dpfix *f, __u32 idx)
{
	__u64 packets, bytes;

	return moat_dp_stat(f->dp, idx, &packets, &bytes) ? UINT64_MAX : packets;
}

__u64 fix_events_tried(struct dpfix *f)
{
	__u64 a = 0, b = 0;

	if (moat_dp_event_stat(f->dp, MOAT_EVS_EMITTED, &a) || moat_dp_event_stat(f->dp, MOAT_EVS_FAILED, &b))
		return UINT64_MAX;
	return a + b;
}

int fix_subject_sample(struct dpfix *f, __u32 identity, __u32 n)
{
	struct moat_subject *s;

	if (identity >= FIX_MAX_IDENTITIES)
		return -EINVAL;
	s = subject_copy(f, identity);
	if (!s)
		return -ENOSPC;
	for (int d = 0; d < 2; d++) {
		s->dir[d].flags |= MOAT_SUBJ_SAMPLE;
		s->dir[d].sample_every = n;
	}
	return tx_put(f, MOAT_T_SUBJ, &identity, s);
}

__u64 fix_stat_bytes(struct dpfix *f, __u32 idx)
{
	__u64 packets, bytes;

	return moat_dp_stat(f->dp, idx, &packets, &bytes) ? UINT64_MAX : bytes;
}

int fix_stats(struct dpfix *f, __u64 packets[MOAT_STAT_MAX])
{
	for (__u32 i = 0; i < MOAT_STAT_MAX; i++) {
		__u64 bytes;
		int err = moat_dp_stat(f->dp, i, &packets[i], &bytes);
		if (err)
			return err;
	}
	return 0;
}

__u64 fix_rule_packets(struct dpfix *f, __u32 rule)
{
	__u64 packets, bytes;

	return moat_dp_rule_stat(f->dp, rule, &packets, &bytes) ? UINT64_MAX : packets;
}

__u64 fix_rule_bytes(struct dpfix *f, __u32 rule)
{
	__u64 packets, bytes;

	return moat_dp_rule_stat(f->dp, rule, &packets, &bytes) ? UINT64_MAX : bytes;
}

int fix_rules_counted(struct dpfix *f, __u32 *rules, int max)
{
	int n = 0;

	for (__u32 r = 0; r < FIX_MAX_RULES; r++) {
		__u64 packets, bytes;
		int err = moat_dp_rule_stat(f->dp, r, &packets, &bytes);
		if (err)
			return err;
		if (packets && n < max)
			rules[n++] = r;
	}
	return n;
}

/* ---- conntrack ---------------------------------------------------------------- */
union ct_key {
	struct moat_ct4_key k4;
	struct moat_ct6_key k6;
};

/* The datapath's canonical key: endpoint a = the lower (address, port). */
static int ct_key(__u8 proto, const char *saddr, __u16 sport, const char *daddr, __u16 dport, int *family,
		  union ct_key *k)
{
	__u8 s[16], d[16];
	int af = is_ip6(saddr) ? AF_INET6 : AF_INET;
	size_t alen = af == AF_INET6 ? 16 : 4;
	int cmp;

	if (inet_pton(af, saddr, s) != 1 || inet_pton(af, daddr, d) != 1)
		return -EINVAL;
	cmp = memcmp(s, d, alen); /* network order: bytewise = numeric */
	if (cmp > 0 || (cmp == 0 && sport > dport)) {
		__u8 t[16];
		__u16 tp = sport;
		memcpy(t, s, alen);
		memcpy(s, d, alen);
		memcpy(d, t, alen);
		sport = dport;
		dport = tp;
	}
	memset(k, 0, sizeof(*k));
	if (af == AF_INET) {
		memcpy(&k->k4.a_addr, s, 4);
		memcpy(&k->k4.b_addr, d, 4);
		k->k4.a_port = htons(sport);
		k->k4.b_port = htons(dport);
		k->k4.proto = proto;
		*family = 4;
	} else {
		memcpy(k->k6.a_addr, s, 16);
		memcpy(k->k6.b_addr, d, 16);
		k->k6.a_port = htons(sport);
		k->k6.b_port = htons(dport);
		k->k6.proto = proto;
		*family = 6;
	}
	return 0;
}

int fix_ct_get(struct dpfix *f, __u8 proto, const char *saddr, __u16 sport, const char *daddr, __u16 dport,
	       struct moat_ct_entry *e)
{
	union ct_key k;
	int family, fd;
	int err = ct_key(proto, saddr, sport, daddr, dport, &family, &k);

	if (err)
		return err;
	fd = moat_dp_map_fd(f->dp, family == 4 ? MOAT_MAP_CT4 : MOAT_MAP_CT6);
	if (fd < 0)
		return fd;
	return bpf_map_lookup_elem(fd, &k, e) ? -errno : 0;
}

int fix_ct_put(struct dpfix *f, __u8 proto, const char *saddr, __u16 sport, const char *daddr, __u16 dport,
	       const struct moat_ct_entry *e)
{
	union ct_key k;
	int family, fd;
	int err = ct_key(proto, saddr, sport, daddr, dport, &family, &k);

	if (err)
		return err;
	fd = moat_dp_map_fd(f->dp, family == 4 ? MOAT_MAP_CT4 : MOAT_MAP_CT6);
	if (fd < 0)
		return fd;
	return bpf_map_update_elem(fd, &k, e, BPF_ANY) ? -errno : 0;
}

static int count_cb(const struct moat_ct_view *v, void *arg)
{
	(void)v;
	(*(int *)arg)++;
	return 0;
}

int fix_ct_count(struct dpfix *f)
{
	int n = 0;
	int err = moat_dp_ct_walk(f->dp, count_cb, &n);

	return err ? err : n;
}

static int hash_count(struct dpfix *f, const char *map)
{
	int fd = moat_dp_map_fd(f->dp, map);
	__u8 key[64], next[64];
	void *prev = NULL;
	int n = 0;

	if (fd < 0)
		return fd;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, sizeof(key));
		prev = key;
		n++;
	}
	return n;
}

int fix_frag_count(struct dpfix *f)
{
	int n4 = hash_count(f, MOAT_MAP_FRAG4), n6 = hash_count(f, MOAT_MAP_FRAG6);

	if (n4 < 0)
		return n4;
	if (n6 < 0)
		return n6;
	return n4 + n6;
}
