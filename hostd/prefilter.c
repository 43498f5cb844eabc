// SPDX-License-Identifier: Apache-2.0
/* The pre-filter's tables from the compiled policy; see prefilter.h and
 * docs/offload.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "prefilter.h"
#include "util.h"

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

/* ---- wanted and written tables --------------------------------------------- */
struct src_ent {
	__u8 key[18]; /* family, plen, address (masked) */
	__u32 set;
};

struct dst_ent {
	__u8 key[17]; /* family, address */
	__u32 identity;
};

struct set_ent {
	__u8 key[18];
	__u32 set;
};

struct pair_ent {
	__u32 key[2]; /* set, identity */
	__u32 deny;
	__u32 rule[MOAT_PF_G_MAX];
};

struct tables {
	struct hmap src, dst, pairs;
	__u8 lens[2][MOAT_PF_MAX_LENS]; /* descending */
	__u32 nlen[2];
};

struct moat_pfc {
	struct moat_pfc_limits lim;
	struct tables want;        /* from the last build */
	struct tables cur;         /* what the maps hold */
	struct moat_pf_config cfg; /* as written */
	bool cfg_written;
	bool stale;        /* maps may hold anything: rewrite all */
	bool full_rewrite; /* this update empties pairs first */
	/* source sets: stable per prefix while it is placed */
	struct hmap set_of; /* src key -> struct set_ent */
	__u32 next_set;
	struct u32vec free_sets;
	struct moat_pfc_stats st;
};

static void tables_init(struct tables *t)
{
	memset(t, 0, sizeof(*t));
	hmap_init(&t->src);
	hmap_init(&t->dst);
	hmap_init(&t->pairs);
}

static void tables_clear(struct tables *t)
{
	size_t it = 0;
	void *v;

	while (hmap_next(&t->src, &it, NULL, NULL, &v))
		free(v);
	it = 0;
	while (hmap_next(&t->dst, &it, NULL, NULL, &v))
		free(v);
	it = 0;
	while (hmap_next(&t->pairs, &it, NULL, NULL, &v))
		free(v);
	hmap_free(&t->src);
	hmap_free(&t->dst);
	hmap_free(&t->pairs);
	tables_init(t);
}

int moat_pfc_new(const struct moat_pfc_limits *lim, struct moat_pfc **ret)
{
	struct moat_pfc *p = xcalloc(1, sizeof(*p));

	p->lim = *lim;
	if (!p->lim.max_lens || p->lim.max_lens > MOAT_PF_MAX_LENS)
		p->lim.max_lens = MOAT_PF_MAX_LENS;
	if (!p->lim.max_src)
		p->lim.max_src = MOAT_PF_MAX_SRC;
	if (!p->lim.max_dst)
		p->lim.max_dst = MOAT_PF_MAX_DST;
	if (!p->lim.max_pairs)
		p->lim.max_pairs = MOAT_PF_MAX_PAIRS;
	tables_init(&p->want);
	tables_init(&p->cur);
	hmap_init(&p->set_of);
	p->next_set = 1;
	p->cfg.flags = MOAT_PF_CFG_ENFORCE;
	*ret = p;
	return 0;
}

void moat_pfc_free(struct moat_pfc *p)
{
	size_t it = 0;
	void *v;

	if (!p)
		return;
	tables_clear(&p->want);
	tables_clear(&p->cur);
	while (hmap_next(&p->set_of, &it, NULL, NULL, &v))
		free(v);
	hmap_free(&p->set_of);
	u32vec_free(&p->free_sets);
	free(p);
}

void moat_pfc_reset(struct moat_pfc *p)
{
	tables_clear(&p->cur);
	p->cfg_written = false;
	p->stale = false;
}

/* ---- building -------------------------------------------------------------------- */
struct pfx {
	int family;
	__u8 plen;
	__u8 lo[16], hi[16]; /* first and last address */
	__u32 region;
	int parent;     /* index, -1: none */
	int root;       /* topmost needed ancestor, -1: not needed */
	bool candidate; /* holds no cluster address */
	bool has_deny;
	bool unplaced; /* a tree root that did not fit */
	__u32 npairs;
};

struct lpod {
	int family;
	__u8 addr[16];
	__u32 identity;
};

struct bctx {
	const struct moat_compiler *c;
	bool next;
	/* cluster addresses, sorted, per family */
	__u8 (*known[2])[16];
	size_t nknown[2], capknown[2];
	struct pfx *pfx;
	size_t npfx, cappfx;
	struct lpod *pods;
	size_t npods, cappods;
};

static int fam_ix(int family)
{
	return family == 6;
}

static int alen(int family)
{
	return family == 6 ? 16 : 4;
}

static int known_cb(const void *key, const void *val, void *arg, int family)
{
	struct bctx *b = arg;
	const struct moat_ip_info *ii = val;
	int f = fam_ix(family);

	if (b->nknown[f] == b->capknown[f]) {
		b->capknown[f] = b->capknown[f] ? b->capknown[f] * 2 : 256;
		b->known[f] = xrealloc(b->known[f], b->capknown[f] * 16);
	}
	memset(b->known[f][b->nknown[f]], 0, 16);
	memcpy(b->known[f][b->nknown[f]++], key, (size_t)alen(family));
	if (ii->class == MOAT_CLASS_POD && (ii->flags & MOAT_IP_F_LOCAL)) {
		if (b->npods == b->cappods) {
			b->cappods = b->cappods ? b->cappods * 2 : 64;
			b->pods = xrealloc(b->pods, b->cappods * sizeof(*b->pods));
		}
		memset(&b->pods[b->npods], 0, sizeof(b->pods[0]));
		b->pods[b->npods].family = family;
		memcpy(b->pods[b->npods].addr, key, (size_t)alen(family));
		b->pods[b->npods].identity = ii->identity;
		b->npods++;
	}
	return 0;
}

static int known4_cb(const void *key, const void *val, void *arg)
{
	return known_cb(key, val, arg, 4);
}

static int known6_cb(const void *key, const void *val, void *arg)
{
	return known_cb(key, val, arg, 6);
}

static void mask_addr(__u8 *a, int nbytes, int plen, bool ones)
{
	for (int i = 0; i < nbytes; i++) {
		int bits = plen - 8 * i;
		__u8 m = bits >= 8 ? 0xff : bits <= 0 ? 0 : (__u8)(0xff << (8 - bits));
		a[i] = ones ? (a[i] | (__u8)~m) : (a[i] & m);
	}
}

static int net_cb(const void *key, const void *val, void *arg, int family)
{
	struct bctx *b = arg;
	const struct moat_net_info *ni = val;
	struct pfx *p;
	__u32 plen;
	const __u8 *addr;

	/* keys come unaligned from the compiler's cells: copy them */
	struct moat_net4_key k4;
	struct moat_net6_key k6;
	if (family == 4) {
		memcpy(&k4, key, sizeof(k4));
		plen = k4.prefixlen;
		addr = (const __u8 *)&k4.addr;
	} else {
		memcpy(&k6, key, sizeof(k6));
		plen = k6.prefixlen;
		addr = k6.addr;
	}
	if (plen > (__u32)alen(family) * 8)
		return 0;
	if (b->npfx == b->cappfx) {
		b->cappfx = b->cappfx ? b->cappfx * 2 : 64;
		b->pfx = xrealloc(b->pfx, b->cappfx * sizeof(*b->pfx));
	}
	p = &b->pfx[b->npfx++];
	memset(p, 0, sizeof(*p));
	p->family = family;
	p->plen = (__u8)plen;
	p->region = ni->region;
	memcpy(p->lo, addr, (size_t)alen(family));
	mask_addr(p->lo, alen(family), (int)plen, false);
	memcpy(p->hi, p->lo, 16);
	mask_addr(p->hi, alen(family), (int)plen, true);
	p->parent = -1;
	p->root = -1;
	return 0;
}

static int net4_cb(const void *key, const void *val, void *arg)
{
	return net_cb(key, val, arg, 4);
}

static int net6_cb(const void *key, const void *val, void *arg)
{
	return net_cb(key, val, arg, 6);
}

static int cmp_addr16(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

/* Sorted by family, first address, then shorter prefix first: an ancestor
 * comes before everything inside it. */
static int cmp_pfx(const void *a, const void *b)
{
	const struct pfx *x = a, *y = b;
	int r;

	if (x->family != y->family)
		return x->family - y->family;
	r = memcmp(x->lo, y->lo, 16);
	if (r)
		return r;
	return (int)x->plen - (int)y->plen;
}

static bool pfx_contains(const struct pfx *outer, const struct pfx *in)
{
	return outer->family == in->family && outer->plen <= in->plen && memcmp(outer->lo, in->lo, 16) <= 0 &&
	       memcmp(in->hi, outer->hi, 16) <= 0;
}

/* Does any cluster address fall in [lo, hi]? */
static bool holds_known(const struct bctx *b, const struct pfx *p)
{
	int f = fam_ix(p->family);
	size_t lo = 0, hi = b->nknown[f];

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (memcmp(b->known[f][mid], p->lo, 16) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->nknown[f] && memcmp(b->known[f][lo], p->hi, 16) <= 0;
}

struct portset {
	__u16 *v;
	size_t n, cap;
};

static int port_cb(__u16 port, void *arg)
{
	struct portset *ps = arg;

	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 16;
		ps->v = xrealloc(ps->v, ps->cap * sizeof(__u16));
	}
	ps->v[ps->n++] = port;
	return 0;
}

static int cmp_u16v(const void *a, const void *b)
{
	return (int)*(const __u16 *)a - (int)*(const __u16 *)b;
}

/* Every port that can decide differently for (subject, dir, proto): the
 * ports its entries name, port 0, and one port named nowhere. */
static void ports_of(const struct bctx *b, __u32 subject, int dir, __u8 proto, struct portset *ps)
{
	__u16 free_port = 1;
	size_t n = 0;

	ps->n = 0;
	moat_compiler_subject_ports(b->c, b->next, subject, dir, proto, port_cb, ps);
	port_cb(0, ps);
	qsort(ps->v, ps->n, sizeof(__u16), cmp_u16v);
	for (size_t i = 0; i < ps->n; i++)
		if (!n || ps->v[n - 1] != ps->v[i])
			ps->v[n++] = ps->v[i];
	ps->n = n;
	for (size_t i = 0; i < ps->n; i++)
		if (ps->v[i] == free_port)
			free_port++;
	if (free_port) /* 65535 named ports plus 0: then every port was listed */
		port_cb(free_port, ps);
}

struct ident_ports {
	__u32 identity;
	struct portset ps[2][3]; /* [dir][tcp, udp, sctp] */
};

static const __u8 l4[3] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP };

/* Is every port of the group denied, for this direction?  *rule: the rule
 * the full program names if it is the same for every port, else 0. */
static bool group_denied(const struct bctx *b, __u32 subject, int dir, int family, __u32 region, int group,
			 const struct portset *ps, __u32 *rule)
{
	struct moat_decide_peer peer = {
		.identity = MOAT_ID_WORLD, .region = region, .cls = MOAT_CLASS_WORLD, .family = family
	};
	struct moat_explain_side s;

	*rule = 0;
	if (group == MOAT_PF_G_OTHER) {
		moat_compiler_decide(b->c, b->next, subject, dir, &peer,
				     family == 6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP, 0, &s);
		if (s.verdict != MOAT_VERDICT_DENY)
			return false;
		*rule = s.rule;
		return true;
	}
	if (!ps) /* only MOAT_PF_G_OTHER comes without a port set */
		return false;
	for (size_t i = 0; i < ps->n; i++) {
		moat_compiler_decide(b->c, b->next, subject, dir, &peer, l4[group], ps->v[i], &s);
		if (s.verdict != MOAT_VERDICT_DENY)
			return false;
		if (!i)
			*rule = s.rule;
		else if (*rule != s.rule)
			*rule = 0;
	}
	return true;
}

static const __u8 *src_key(__u8 k[18], int family, __u8 plen, const __u8 *addr)
{
	memset(k, 0, 18);
	k[0] = (__u8)family;
	k[1] = plen;
	memcpy(k + 2, addr, (size_t)alen(family));
	return k;
}

static __u32 set_for(struct moat_pfc *p, const __u8 key[18])
{
	struct set_ent *se = hmap_get(&p->set_of, key, 18);

	if (se)
		return se->set;
	se = xcalloc(1, sizeof(*se));
	memcpy(se->key, key, 18);
	se->set = p->free_sets.n ? p->free_sets.v[--p->free_sets.n] : p->next_set++;
	hmap_put(&p->set_of, se->key, 18, se, NULL);
	return se->set;
}

/* A prefix is gone from the maps: its set may be given to another. */
static void set_release(struct moat_pfc *p, const __u8 key[18])
{
	struct set_ent *se = hmap_del(&p->set_of, key, 18);

	if (se) {
		u32vec_push(&p->free_sets, se->set);
		free(se);
	}
}

struct tree {
	int root; /* index into pfx */
	__u32 nsrc, npairs;
	__u32 lenmask[5]; /* bit per prefix length 0..128 */
};

static int cmp_tree(const void *a, const void *b)
{
	const struct tree *x = a, *y = b;

	if (x->npairs != y->npairs)
		return x->npairs > y->npairs ? -1 : 1;
	return x->root - y->root;
}

static int popcount_mask(const __u32 m[5])
{
	int n = 0;

	for (int i = 0; i < 5; i++)
		n += __builtin_popcount(m[i]);
	return n;
}

struct pair_tmp {
	int pfx;
	__u32 identity;
	__u32 deny;
	__u32 rule[MOAT_PF_G_MAX];
};

void moat_pfc_build_empty(struct moat_pfc *p, const char *why)
{
	tables_clear(&p->want);
	memset(&p->st, 0, sizeof(p->st));
	snprintf(p->st.why_empty, sizeof(p->st.why_empty), "%s", why ? why : "");
}

int moat_pfc_build(struct moat_pfc *p, const struct moat_compiler *c, bool next)
{
	struct bctx b = { .c = c, .next = next };
	struct ident_ports *ids = NULL;
	struct pair_tmp *pairs = NULL;
	struct tree *trees = NULL;
	size_t nids = 0, npairs = 0, cappairs = 0, ntrees = 0;
	__u32 lenmask[2][5] = { { 0 } }, used_src[2] = { 0 }, used_pairs = 0;
	uint64_t t0 = moat_now_ns();
	int *stack = NULL;
	size_t sp = 0;
	struct u32vec with_pairs = { 0 };

	tables_clear(&p->want);
	memset(&p->st, 0, sizeof(p->st));

	moat_compiler_table(c, next, MOAT_T_IP4, known4_cb, &b);
	moat_compiler_table(c, next, MOAT_T_IP6, known6_cb, &b);
	moat_compiler_table(c, next, MOAT_T_NET4, net4_cb, &b);
	moat_compiler_table(c, next, MOAT_T_NET6, net6_cb, &b);
	for (int f = 0; f < 2; f++)
		if (b.nknown[f])
			qsort(b.known[f], b.nknown[f], 16, cmp_addr16);
	p->st.regions = (__u32)b.npfx;
	if (b.npfx)
		qsort(b.pfx, b.npfx, sizeof(*b.pfx), cmp_pfx);

	/* the forest of listed prefixes; which hold no cluster address */
	stack = xcalloc(b.npfx + 1, sizeof(int));
	for (size_t i = 0; i < b.npfx; i++) {
		struct pfx *x = &b.pfx[i];
		while (sp && !pfx_contains(&b.pfx[stack[sp - 1]], x))
			sp--;
		x->parent = sp ? stack[sp - 1] : -1;
		stack[sp++] = (int)i;
		x->candidate = !holds_known(&b, x);
		p->st.regions_in_cluster += !x->candidate;
	}

	/* local pod identities and the ports that can decide for them */
	{
		struct u32vec uniq = { 0 };
		for (size_t i = 0; i < b.npods; i++)
			u32vec_push(&uniq, b.pods[i].identity);
		u32vec_sort_unique(&uniq);
		ids = xcalloc(uniq.n ? uniq.n : 1, sizeof(*ids));
		for (size_t k = 0; k < uniq.n; k++) {
			ids[nids].identity = uniq.v[k];
			for (int d = 0; d < 2; d++)
				for (int g = 0; g < 3; g++)
					ports_of(&b, ids[nids].identity, d, l4[g], &ids[nids].ps[d][g]);
			nids++;
		}
		u32vec_free(&uniq);
	}

	/* what each outside-the-cluster region may drop for each identity */
	for (size_t i = 0; i < b.npfx; i++) {
		struct pfx *x = &b.pfx[i];
		if (!x->candidate)
			continue;
		for (size_t k = 0; k < nids; k++) {
			struct pair_tmp pt = { .pfx = (int)i, .identity = ids[k].identity };
			for (int g = 0; g < MOAT_PF_G_MAX; g++) {
				__u32 rin, rout;
				if (!group_denied(&b, pt.identity, MOAT_DIR_INGRESS, x->family, x->region, g,
						  g < 3 ? &ids[k].ps[MOAT_DIR_INGRESS][g] : NULL, &rin))
					continue;
				if (!group_denied(&b, pt.identity, MOAT_DIR_EGRESS, x->family, x->region, g,
						  g < 3 ? &ids[k].ps[MOAT_DIR_EGRESS][g] : NULL, &rout))
					continue;
				pt.deny |= 1u << g;
				pt.rule[g] = rin; /* the packet is judged as ingress */
			}
			if (!pt.deny)
				continue;
			if (npairs == cappairs) {
				cappairs = cappairs ? cappairs * 2 : 64;
				pairs = xrealloc(pairs, cappairs * sizeof(*pairs));
			}
			pairs[npairs++] = pt;
			x->has_deny = true;
			x->npairs++;
		}
	}

	/* trees: a needed prefix and everything listed inside it */
	for (size_t i = 0; i < b.npfx; i++) {
		struct pfx *x = &b.pfx[i];
		int par = x->parent;
		if (par >= 0 && b.pfx[par].root >= 0)
			x->root = b.pfx[par].root;
		else if (x->has_deny && x->candidate)
			x->root = (int)i;
	}
	for (size_t i = 0; i < b.npfx; i++) {
		struct pfx *x = &b.pfx[i];
		struct tree *t = NULL;
		if (x->root < 0)
			continue;
		for (size_t k = ntrees; k > 0 && !t; k--)
			if (trees[k - 1].root == x->root)
				t = &trees[k - 1];
		if (!t) {
			trees = xrealloc(trees, (ntrees + 1) * sizeof(*trees));
			t = &trees[ntrees++];
			memset(t, 0, sizeof(*t));
			t->root = x->root;
		}
		t->nsrc++;
		t->npairs += x->npairs;
		t->lenmask[x->plen / 32] |= 1u << (x->plen % 32);
	}
	p->st.trees = (__u32)ntrees;
	if (ntrees)
		qsort(trees, ntrees, sizeof(*trees), cmp_tree);

	/* place whole trees while they fit */
	for (size_t t = 0; t < ntrees; t++) {
		int f = fam_ix(b.pfx[trees[t].root].family);
		__u32 m[5];
		for (int w = 0; w < 5; w++)
			m[w] = lenmask[f][w] | trees[t].lenmask[w];
		if (used_src[f] + trees[t].nsrc > p->lim.max_src ||
		    used_pairs + trees[t].npairs > p->lim.max_pairs ||
		    (__u32)popcount_mask(m) > p->lim.max_lens) {
			p->st.trees_no_room++;
			/* not placed: its prefixes must not be looked up */
			b.pfx[trees[t].root].unplaced = true;
			continue;
		}
		memcpy(lenmask[f], m, sizeof(m));
		used_src[f] += trees[t].nsrc;
		used_pairs += trees[t].npairs;
		p->st.trees_placed++;
	}

	for (size_t i = 0; i < b.npfx; i++)
		if (b.pfx[i].root >= 0 && b.pfx[b.pfx[i].root].unplaced)
			b.pfx[i].root = -2;

	/* the wanted tables */
	for (size_t i = 0; i < b.npfx; i++) {
		struct pfx *x = &b.pfx[i];
		struct src_ent *se;
		if (x->root < 0)
			continue;
		se = xcalloc(1, sizeof(*se));
		src_key(se->key, x->family, x->plen, x->lo);
		se->set = set_for(p, se->key);
		hmap_put(&p->want.src, se->key, sizeof(se->key), se, NULL);
		p->st.src[fam_ix(x->family)]++;
	}
	for (size_t i = 0; i < npairs; i++) {
		struct pfx *x = &b.pfx[pairs[i].pfx];
		struct pair_ent *pe;
		__u8 k[18];
		if (x->root < 0)
			continue;
		pe = xcalloc(1, sizeof(*pe));
		pe->key[0] = set_for(p, src_key(k, x->family, x->plen, x->lo));
		pe->key[1] = pairs[i].identity;
		pe->deny = pairs[i].deny;
		memcpy(pe->rule, pairs[i].rule, sizeof(pe->rule));
		for (int g = 0; g < MOAT_PF_G_MAX; g++)
			if ((pe->deny & (1u << g)) && !pe->rule[g]) {
				p->st.pairs_varying_rule++;
				break;
			}
		hmap_put(&p->want.pairs, pe->key, sizeof(pe->key), pe, NULL);
		p->st.pairs++;
	}
	/* destinations: the local pods of identities that have pairs */
	{
		size_t it = 0;
		void *v;
		u32vec_free(&with_pairs);
		while (hmap_next(&p->want.pairs, &it, NULL, NULL, &v))
			u32vec_push(&with_pairs, ((struct pair_ent *)v)->key[1]);
		u32vec_sort_unique(&with_pairs);
	}
	for (size_t i = 0; i < b.npods; i++) {
		struct lpod *lp = &b.pods[i];
		struct dst_ent *de;
		int f = fam_ix(lp->family);
		if (!u32vec_has(&with_pairs, lp->identity) || p->st.dst[f] >= p->lim.max_dst)
			continue; /* without its destination entry a pair never matches */
		de = xcalloc(1, sizeof(*de));
		de->key[0] = (__u8)lp->family;
		memcpy(de->key + 1, lp->addr, 16);
		de->identity = lp->identity;
		hmap_put(&p->want.dst, de->key, sizeof(de->key), de, NULL);
		p->st.dst[f]++;
	}
	for (int f = 0; f < 2; f++) {
		for (int len = 128; len >= 0; len--)
			if (lenmask[f][len / 32] & (1u << (len % 32)))
				p->want.lens[f][p->want.nlen[f]++] = (__u8)len;
		p->st.lens[f] = p->want.nlen[f];
	}
	if (!p->st.pairs)
		snprintf(p->st.why_empty, sizeof(p->st.why_empty), "%s",
			 !b.npfx                            ? "no policy names a CIDR" :
			 p->st.regions_in_cluster == b.npfx ? "every listed CIDR holds cluster addresses" :
			 !nids                              ? "no local pods" :
			 !ntrees ? "no CIDR outside the cluster is denied on every port both ways" :
				   "no tree fits the pre-filter's tables");

	/* sets of prefixes neither wanted nor written: free again */
	{
		struct ptrvec drop = { 0 };
		size_t it = 0;
		void *v;
		while (hmap_next(&p->set_of, &it, NULL, NULL, &v)) {
			const struct set_ent *se = v;
			if (!hmap_get(&p->want.src, se->key, 18) && !hmap_get(&p->cur.src, se->key, 18))
				ptrvec_push(&drop, v);
		}
		for (size_t i = 0; i < drop.n; i++)
			set_release(p, ((struct set_ent *)drop.v[i])->key);
		ptrvec_free(&drop);
	}
	for (size_t k = 0; k < nids; k++)
		for (int d = 0; d < 2; d++)
			for (int g = 0; g < 3; g++)
				free(ids[k].ps[d][g].v);
	free(ids);
	free(pairs);
	free(trees);
	u32vec_free(&with_pairs);
	free(stack);
	free(b.pfx);
	free(b.pods);
	free(b.known[0]);
	free(b.known[1]);
	p->st.build_ns = moat_now_ns() - t0;
	return 0;
}

/* ---- writing -------------------------------------------------------------------- */
static void src_bpf_key(const struct src_ent *se, enum moat_pf_tbl *t, void *key)
{
	if (se->key[0] == 4) {
		struct moat_pf_src4_key *k = key;
		memset(k, 0, sizeof(*k));
		k->plen = se->key[1];
		memcpy(&k->addr, se->key + 2, 4);
		*t = MOAT_PF_T_SRC4;
	} else {
		struct moat_pf_src6_key *k = key;
		memset(k, 0, sizeof(*k));
		k->plen = se->key[1];
		memcpy(k->addr, se->key + 2, 16);
		*t = MOAT_PF_T_SRC6;
	}
}

static void dst_bpf_key(const struct dst_ent *de, enum moat_pf_tbl *t, void *key)
{
	if (de->key[0] == 4) {
		struct moat_pf_dst4_key *k = key;
		memcpy(&k->addr, de->key + 1, 4);
		*t = MOAT_PF_T_DST4;
	} else {
		struct moat_pf_dst6_key *k = key;
		memcpy(k->addr, de->key + 1, 16);
		*t = MOAT_PF_T_DST6;
	}
}

static int src_write(struct moat_pfc *p, struct moat_pf *pf, const struct src_ent *se, bool del)
{
	__u8 key[24];
	enum moat_pf_tbl t;
	struct moat_pf_src v = { .set = se->set };
	int rc;

	src_bpf_key(se, &t, key);
	rc = del ? moat_pf_del(pf, t, key) : moat_pf_put(pf, t, key, &v);
	p->st.writes++;
	if (del && rc == -ENOENT)
		rc = 0;
	if (!rc) {
		struct src_ent *old = NULL;
		if (del) {
			old = hmap_del(&p->cur.src, se->key, sizeof(se->key));
		} else {
			struct src_ent *cp = xcalloc(1, sizeof(*cp));
			*cp = *se;
			hmap_put(&p->cur.src, cp->key, sizeof(cp->key), cp, (void **)&old);
		}
		free(old);
	}
	return rc;
}

static int dst_write(struct moat_pfc *p, struct moat_pf *pf, const struct dst_ent *de, bool del)
{
	__u8 key[24];
	enum moat_pf_tbl t;
	struct moat_pf_dst v = { .identity = de->identity };
	int rc;

	dst_bpf_key(de, &t, key);
	rc = del ? moat_pf_del(pf, t, key) : moat_pf_put(pf, t, key, &v);
	p->st.writes++;
	if (del && rc == -ENOENT)
		rc = 0;
	if (!rc) {
		struct dst_ent *old = NULL;
		if (del) {
			old = hmap_del(&p->cur.dst, de->key, sizeof(de->key));
		} else {
			struct dst_ent *cp = xcalloc(1, sizeof(*cp));
			*cp = *de;
			hmap_put(&p->cur.dst, cp->key, sizeof(cp->key), cp, (void **)&old);
		}
		free(old);
	}
	return rc;
}

/* Writes a pair's deny groups and rules; the packet and byte counters the
 * program added are carried over (a few increments between the read and
 * the write can be lost). */
static int pair_write(struct moat_pfc *p, struct moat_pf *pf, const __u32 key[2], __u32 deny,
		      const __u32 rule[MOAT_PF_G_MAX])
{
	struct moat_pf_pair_key k = { .set = key[0], .identity = key[1] };
	struct moat_pf_pair v, old;
	struct pair_ent *ce = hmap_get(&p->cur.pairs, key, 8);
	int rc;

	if (!deny) {
		if (!ce)
			return 0;
		rc = moat_pf_del(pf, MOAT_PF_T_PAIRS, &k);
		p->st.writes++;
		if (rc && rc != -ENOENT)
			return rc;
		hmap_del(&p->cur.pairs, key, 8);
		free(ce);
		return 0;
	}
	if (ce && ce->deny == deny && !memcmp(ce->rule, rule, sizeof(ce->rule)))
		return 0;
	memset(&v, 0, sizeof(v));
	v.deny = deny;
	memcpy(v.rule, rule, sizeof(v.rule));
	if (ce && moat_pf_get(pf, MOAT_PF_T_PAIRS, &k, &old) == 0) {
		v.packets = old.packets;
		v.bytes = old.bytes;
	}
	rc = moat_pf_put(pf, MOAT_PF_T_PAIRS, &k, &v);
	p->st.writes++;
	if (rc)
		return rc;
	if (!ce) {
		ce = xcalloc(1, sizeof(*ce));
		memcpy(ce->key, key, 8);
		hmap_put(&p->cur.pairs, ce->key, 8, ce, NULL);
	}
	ce->deny = deny;
	memcpy(ce->rule, rule, sizeof(ce->rule));
	return 0;
}

static int cfg_write(struct moat_pfc *p, struct moat_pf *pf)
{
	int rc = moat_pf_set_config(pf, &p->cfg);

	p->st.writes++;
	if (!rc)
		p->cfg_written = true;
	return rc;
}

/* Probe lengths: none while the slots are rewritten (nothing matches, so
 * nothing drops), then the list. */
static int lens_write(struct moat_pfc *p, struct moat_pf *pf, int f, const __u8 *lens, __u32 n)
{
	__u32 *nl = f ? &p->cfg.nlen6 : &p->cfg.nlen4;
	int rc;

	if (*nl == n && p->cur.nlen[f] == n && !memcmp(p->cur.lens[f], lens, n) && p->cfg_written)
		return 0;
	if (*nl) {
		*nl = 0;
		rc = cfg_write(p, pf);
		if (rc)
			return rc;
	}
	for (__u32 i = 0; i < n; i++) {
		struct moat_pf_len v;
		__u32 slot = (__u32)f * MOAT_PF_MAX_LENS + i;
		memset(&v, 0, sizeof(v));
		v.plen = lens[i];
		for (int w = 0; w < (f ? 4 : 1); w++) {
			int bits = lens[i] - 32 * w;
			__u32 m = bits >= 32 ? 0xffffffffu : bits <= 0 ? 0 : 0xffffffffu << (32 - bits);
			v.mask[w] = htonl(m);
		}
		rc = moat_pf_put(pf, MOAT_PF_T_LENS, &slot, &v);
		p->st.writes++;
		if (rc)
			return rc;
	}
	memcpy(p->cur.lens[f], lens, n);
	p->cur.nlen[f] = n;
	*nl = n;
	return cfg_write(p, pf);
}

/* Descending union of two descending length lists; -1 if over the limit. */
static int lens_union(const __u8 *a, __u32 na, const __u8 *b, __u32 nb, __u8 *out, __u32 max)
{
	__u32 i = 0, j = 0, n = 0;

	while (i < na || j < nb) {
		__u8 x;
		if (j >= nb || (i < na && a[i] > b[j]))
			x = a[i++];
		else if (i >= na || b[j] > a[i])
			x = b[j++];
		else {
			x = a[i++];
			j++;
		}
		if (n == max)
			return -1;
		out[n++] = x;
	}
	return (int)n;
}

static void disable(struct moat_pfc *p, struct moat_pf *pf)
{
	p->cfg.nlen4 = 0;
	p->cfg.nlen6 = 0;
	p->st.stuck = moat_pf_set_config(pf, &p->cfg) != 0;
	p->st.disabled = true;
	p->stale = true;
}

/* Empties every table the program reads (after a failure: we do not know
 * what the maps hold). */
static int wipe(struct moat_pfc *p, struct moat_pf *pf)
{
	static const enum moat_pf_tbl ts[] = { MOAT_PF_T_PAIRS, MOAT_PF_T_DST4, MOAT_PF_T_DST6,
					       MOAT_PF_T_SRC4, MOAT_PF_T_SRC6 };
	__u8 key[32];

	for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		/* bounded: a map holds at most its capacity */
		for (__u32 n = 0; n <= moat_pf_capacity(pf, ts[i]); n++) {
			int rc = moat_pf_first_key(pf, ts[i], key);
			if (rc == -ENOENT)
				break;
			if (!rc)
				rc = moat_pf_del(pf, ts[i], key);
			p->st.writes++;
			if (rc && rc != -ENOENT)
				return rc;
		}
	}
	tables_clear(&p->cur);
	p->stale = false;
	return 0;
}

int moat_pfc_apply_before(struct moat_pfc *p, struct moat_pf *pf)
{
	uint64_t t0 = moat_now_ns();
	size_t it = 0;
	void *v;
	int rc = 0;

	p->st.writes = 0;
	p->st.disabled = false;
	p->st.stuck = false;
	p->full_rewrite = false;
	if (!p->cfg_written) {
		p->cfg.nlen4 = p->cfg.nlen6 = 0;
		rc = cfg_write(p, pf);
		if (rc)
			goto fail;
	}
	if (p->stale) {
		/* nothing probed while the maps are emptied */
		p->cfg.nlen4 = p->cfg.nlen6 = 0;
		rc = cfg_write(p, pf);
		if (!rc)
			rc = wipe(p, pf);
		if (rc)
			goto fail;
		p->cur.nlen[0] = p->cur.nlen[1] = 0;
	}
	/* lengths: the union of old and new, so old and new prefixes are
	 * both found; if that does not fit, empty the pairs first and
	 * rewrite everything after the switch */
	for (int f = 0; f < 2; f++) {
		__u8 u[MOAT_PF_MAX_LENS];
		int n = lens_union(p->cur.lens[f], p->cur.nlen[f], p->want.lens[f], p->want.nlen[f], u,
				   p->lim.max_lens);
		if (n < 0) {
			p->full_rewrite = true;
			break;
		}
	}
	if (p->full_rewrite) {
		static const __u32 none[MOAT_PF_G_MAX];
		struct ptrvec todo = { 0 };
		it = 0;
		while (hmap_next(&p->cur.pairs, &it, NULL, NULL, &v))
			ptrvec_push(&todo, v);
		for (size_t i = 0; i < todo.n && !rc; i++) {
			__u32 key[2];
			memcpy(key, ((struct pair_ent *)todo.v[i])->key, sizeof(key));
			rc = pair_write(p, pf, key, 0, none);
		}
		ptrvec_free(&todo);
		if (rc)
			goto fail;
		p->st.apply_ns = moat_now_ns() - t0;
		return 0;
	}
	for (int f = 0; f < 2; f++) {
		__u8 u[MOAT_PF_MAX_LENS];
		int n = lens_union(p->cur.lens[f], p->cur.nlen[f], p->want.lens[f], p->want.nlen[f], u,
				   p->lim.max_lens);
		rc = lens_write(p, pf, f, u, (__u32)n);
		if (rc)
			goto fail;
	}
	/* new prefixes: addresses inside them find no pair yet */
	it = 0;
	while (hmap_next(&p->want.src, &it, NULL, NULL, &v)) {
		const struct src_ent *se = v;
		if (hmap_get(&p->cur.src, se->key, sizeof(se->key)))
			continue;
		rc = src_write(p, pf, se, false);
		if (rc)
			goto fail;
	}
	/* destinations that go or change: their pods find no pair */
	for (;;) {
		const struct dst_ent *gone = NULL;
		it = 0;
		while (!gone && hmap_next(&p->cur.dst, &it, NULL, NULL, &v)) {
			const struct dst_ent *de = v, *w = hmap_get(&p->want.dst, de->key, sizeof(de->key));
			if (!w || w->identity != de->identity)
				gone = de;
		}
		if (!gone)
			break;
		rc = dst_write(p, pf, gone, true);
		if (rc)
			goto fail;
	}
	/* pairs: what both generations deny */
	{
		struct ptrvec todo = { 0 };
		it = 0;
		while (hmap_next(&p->cur.pairs, &it, NULL, NULL, &v))
			ptrvec_push(&todo, v);
		for (size_t i = 0; i < todo.n && !rc; i++) {
			struct pair_ent *ce = todo.v[i];
			const struct pair_ent *w = hmap_get(&p->want.pairs, ce->key, 8);
			__u32 key[2], rule[MOAT_PF_G_MAX];
			__u32 deny = w ? (ce->deny & w->deny) : 0;
			memcpy(key, ce->key, sizeof(key));
			for (int g = 0; g < MOAT_PF_G_MAX; g++)
				rule[g] = w && ce->rule[g] == w->rule[g] ? w->rule[g] : 0;
			rc = pair_write(p, pf, key, deny, rule);
		}
		ptrvec_free(&todo);
		if (rc)
			goto fail;
	}
	p->st.apply_ns = moat_now_ns() - t0;
	return 0;
fail:
	disable(p, pf);
	return rc;
}

int moat_pfc_apply_after(struct moat_pfc *p, struct moat_pf *pf)
{
	uint64_t t0 = moat_now_ns();
	size_t it = 0;
	void *v;
	int rc = 0;

	if (p->stale) {
		rc = -ESTALE;
		goto fail;
	}
	if (p->full_rewrite) {
		/* the pairs are empty: lengths and prefixes change freely */
		for (int f = 0; f < 2; f++) {
			rc = lens_write(p, pf, f, p->want.lens[f], p->want.nlen[f]);
			if (rc)
				goto fail;
		}
		it = 0;
		while (hmap_next(&p->want.src, &it, NULL, NULL, &v)) {
			const struct src_ent *se = v;
			if (hmap_get(&p->cur.src, se->key, sizeof(se->key)))
				continue;
			rc = src_write(p, pf, se, false);
			if (rc)
				goto fail;
		}
	}
	/* pairs take the new value */
	it = 0;
	while (hmap_next(&p->want.pairs, &it, NULL, NULL, &v)) {
		const struct pair_ent *w = v;
		__u32 key[2];
		memcpy(key, w->key, sizeof(key));
		rc = pair_write(p, pf, key, w->deny, w->rule);
		if (rc)
			goto fail;
	}
	/* new and changed destinations */
	it = 0;
	while (hmap_next(&p->want.dst, &it, NULL, NULL, &v)) {
		const struct dst_ent *w = v, *ce = hmap_get(&p->cur.dst, w->key, sizeof(w->key));
		if (ce && ce->identity == w->identity)
			continue;
		rc = dst_write(p, pf, w, false);
		if (rc)
			goto fail;
	}
	/* prefixes that go: their addresses fall to the enclosing prefix,
	 * whose pairs already hold the new generation's value */
	for (;;) {
		struct src_ent *gone = NULL;
		it = 0;
		while (!gone && hmap_next(&p->cur.src, &it, NULL, NULL, &v)) {
			struct src_ent *se = v;
			if (!hmap_get(&p->want.src, se->key, sizeof(se->key)))
				gone = se;
		}
		if (!gone)
			break;
		{
			struct src_ent copy = *gone;
			rc = src_write(p, pf, &copy, true);
			if (rc)
				goto fail;
			set_release(p, copy.key);
		}
	}
	for (int f = 0; f < 2; f++) {
		rc = lens_write(p, pf, f, p->want.lens[f], p->want.nlen[f]);
		if (rc)
			goto fail;
	}
	p->full_rewrite = false;
	p->st.apply_ns += moat_now_ns() - t0;
	return 0;
fail:
	disable(p, pf);
	return rc;
}

int moat_pfc_apply(struct moat_pfc *p, struct moat_pf *pf)
{
	int rc = moat_pfc_apply_before(p, pf);

	return rc ? rc : moat_pfc_apply_after(p, pf);
}

int moat_pfc_set_flags(struct moat_pfc *p, struct moat_pf *pf, __u32 flags, __u32 sample_mask)
{
	if (p->cfg_written && p->cfg.flags == flags && p->cfg.sample_mask == sample_mask)
		return 0;
	p->cfg.flags = flags;
	p->cfg.sample_mask = sample_mask;
	return cfg_write(p, pf);
}

void moat_pfc_get_stats(const struct moat_pfc *p, struct moat_pfc_stats *st)
{
	*st = p->st;
}

int moat_pfc_pairs(const struct moat_pfc *p, int (*fn)(const struct moat_pfc_pair_view *v, void *arg),
		   void *arg)
{
	size_t it = 0, is;
	void *v, *sv;

	while (hmap_next(&p->cur.pairs, &it, NULL, NULL, &v)) {
		const struct pair_ent *pe = v;
		struct moat_pfc_pair_view pv;
		int rc;

		memset(&pv, 0, sizeof(pv));
		pv.set = pe->key[0];
		pv.identity = pe->key[1];
		pv.deny = pe->deny;
		memcpy(pv.rule, pe->rule, sizeof(pv.rule));
		is = 0;
		while (hmap_next(&p->set_of, &is, NULL, NULL, &sv)) {
			const struct set_ent *se = sv;
			if (se->set != pv.set)
				continue;
			pv.family = se->key[0];
			pv.plen = se->key[1];
			memcpy(pv.addr, se->key + 2, 16);
			break;
		}
		rc = fn(&pv, arg);
		if (rc)
			return rc;
	}
	return 0;
}
