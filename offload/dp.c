// SPDX-License-Identifier: Apache-2.0
/* Datapath loader: skeleton, pinned maps with an ABI check, configuration,
 * generation-switched tables, counters and conntrack access. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "dp.h"
#include "dp_internal.h"
#include "xdp/moat.skel.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

static const struct {
	const char *name;
	size_t key, val;
} tbl_desc[MOAT_T_PHYS] = {
	[MOAT_T_EP] = { MOAT_TBL_EP, sizeof(__u32), sizeof(struct moat_endpoint) },
	[MOAT_T_EPA] = { MOAT_TBL_EPA, sizeof(__u32), sizeof(struct moat_endpoint) },
	[MOAT_T_IP4] = { MOAT_TBL_IP4, sizeof(struct moat_ip4_key), sizeof(struct moat_ip_info) },
	[MOAT_T_IP6] = { MOAT_TBL_IP6, sizeof(struct moat_ip6_key), sizeof(struct moat_ip_info) },
	[MOAT_T_NET4] = { MOAT_TBL_NET4, sizeof(struct moat_net4_key), sizeof(struct moat_net_info) },
	[MOAT_T_NET6] = { MOAT_TBL_NET6, sizeof(struct moat_net6_key), sizeof(struct moat_net_info) },
	[MOAT_T_SUBJ] = { MOAT_TBL_SUBJ, sizeof(__u32), sizeof(struct moat_subject) },
	[MOAT_T_PORTS] = { MOAT_TBL_PORTS, sizeof(struct moat_port_key), sizeof(struct moat_port_class) },
	[MOAT_T_POL] = { MOAT_TBL_POL, sizeof(struct moat_policy_key), sizeof(struct moat_policy_val) },
};

const char *moat_tbl_name(enum moat_tbl t)
{
	return t < MOAT_T_PHYS ? tbl_desc[t].name : "?";
}

size_t moat_tbl_key_size(enum moat_tbl t)
{
	return t < MOAT_T_PHYS ? tbl_desc[t].key : 0;
}

size_t moat_tbl_value_size(enum moat_tbl t)
{
	return t < MOAT_T_PHYS ? tbl_desc[t].val : 0;
}

__u64 moat_ktime_coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int moat_dp_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

/* bpffs is not mounted at boot on every system; mount it if needed. */
int moat_bpffs_ensure(void)
{
	struct statfs st;

	if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mkdir("/sys/fs/bpf", 0700) && errno != EEXIST)
		return -errno;
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"))
		return -errno;
	return 0;
}

/* The pin directory must be on bpffs (its nearest existing ancestor, before
 * anything is created): -EMEDIUMTYPE if not. */
static int pin_dir_on_bpffs(const char *dir)
{
	char buf[PATH_MAX];
	struct statfs st;
	char *s;

	if (strlen(dir) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, dir);
	while (statfs(buf, &st)) {
		if (errno != ENOENT)
			return -errno;
		s = strrchr(buf, '/');
		if (!s)
			return -ENOENT;
		if (s == buf)
			s[1] = 0;
		else
			*s = 0;
	}
	return st.f_type == BPF_FS_MAGIC ? 0 : -EMEDIUMTYPE;
}

static const char *const prog_names[MOAT_HOOK_MAX] = {
	[MOAT_HOOK_FROM_POD] = "moat_from_pod",
	[MOAT_HOOK_TO_POD] = "moat_to_pod",
	[MOAT_HOOK_UPLINK] = "moat_uplink",
};

const char *moat_dp_pin_dir(const struct moat_dp *dp)
{
	return dp->pin_dir;
}

int moat_dp_prog_fd(const struct moat_dp *dp, int hook)
{
	if (hook < 0 || hook >= MOAT_HOOK_MAX)
		return -EINVAL;
	return bpf_program__fd(bpf_object__find_program_by_name(dp->skel->obj, prog_names[hook]));
}

int moat_dp_map_fd(const struct moat_dp *dp, const char *name)
{
	struct bpf_map *m = bpf_object__find_map_by_name(dp->skel->obj, name);

	return m ? bpf_map__fd(m) : -ENOENT;
}

struct moat_config *moat_dp_config(struct moat_dp *dp)
{
	return dp->cfg;
}

__u32 moat_dp_generation(const struct moat_dp *dp)
{
	__u32 active = __atomic_load_n(&dp->cfg->active, __ATOMIC_ACQUIRE) & 1;

	return __atomic_load_n(&dp->cfg->slot_gen[active], __ATOMIC_ACQUIRE);
}

__u32 moat_dp_tbl_capacity(const struct moat_dp *dp, enum moat_tbl t)
{
	return t < MOAT_T_MAX ? dp->tbl_cap[t] : 0;
}

static int read_meta(const char *pin_dir, struct moat_meta *meta)
{
	char path[PATH_MAX];
	__u32 zero = 0;
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/%s", pin_dir, MOAT_MAP_META);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	if (bpf_map_lookup_elem(fd, &zero, meta))
		err = -errno;
	close(fd);
	return err;
}

static int unlink_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[PATH_MAX];
	int err = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (de->d_type == DT_DIR) {
			int r = unlink_tree(path);
			if (r && !err)
				err = r;
			if (rmdir(path) && !err)
				err = -errno;
		} else if (unlink(path) && !err) {
			err = -errno;
		}
	}
	closedir(d);
	return err;
}

int moat_dp_uninstall(const char *pin_dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int err;

	/* links first: detached even if a running moatd holds them */
	snprintf(path, sizeof(path), "%s/links", pin_dir);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		int fd;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/links/%s", pin_dir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd >= 0) {
			bpf_link_detach(fd);
			close(fd);
		}
	}
	if (d)
		closedir(d);
	err = unlink_tree(pin_dir);

	if (!err && rmdir(pin_dir) && errno != ENOENT)
		err = -errno;
	return err;
}

static void set_max(struct bpf_map *m, __u32 n)
{
	if (m && n)
		bpf_map__set_max_entries(m, n);
}

/* The outer map's inner template must match the slot maps (array maps
 * compare max_entries), but libbpf (1.1) crashes resizing the template it
 * made itself: that map has no object.  So the outer map is given a
 * template of the right size, *tmpl_fd, to close after load. */
static int set_switched_max(struct moat_bpf *s, const char *base, __u32 n, int *tmpl_fd)
{
	LIBBPF_OPTS(bpf_map_create_opts, copts);
	char name[32];
	struct bpf_map *a, *outer;
	int fd;

	if (!n)
		return 0;
	snprintf(name, sizeof(name), "%s_a", base);
	a = bpf_object__find_map_by_name(s->obj, name);
	set_max(a, n);
	snprintf(name, sizeof(name), "%s_b", base);
	set_max(bpf_object__find_map_by_name(s->obj, name), n);
	outer = bpf_object__find_map_by_name(s->obj, base);
	if (!a || !outer)
		return -ENOENT;
	copts.map_flags = bpf_map__map_flags(a);
	fd = bpf_map_create(bpf_map__type(a), NULL, bpf_map__key_size(a), bpf_map__value_size(a), n, &copts);
	if (fd < 0)
		return -errno;
	if (bpf_map__set_inner_map_fd(outer, fd)) {
		close(fd);
		return -EINVAL;
	}
	*tmpl_fd = fd;
	return 0;
}

static void close_templates(int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

static void config_defaults(struct moat_config *c)
{
	memset(c, 0, sizeof(*c));
	c->flags = MOAT_CFG_REVOKE_ESTABLISHED | MOAT_CFG_ALLOW_LOCAL_NODE | MOAT_CFG_ENFORCE;
	c->ct_tcp_timeout_s = 21600;
	c->ct_tcp_close_timeout_s = 10;
	c->ct_other_timeout_s = 60;
	c->ct_syn_timeout_s = 60;
	c->deny_events_per_s = 1000;
	c->deny_events_burst = 2000;
	c->snaplen = 128;
}

void moat_dp_close(struct moat_dp *dp)
{
	if (!dp)
		return;
	moat_dp_settle(dp);
	moat_dp_held_free(dp);
	if (dp->cfg && dp->cfg != MAP_FAILED)
		munmap(dp->cfg, dp->cfg_len);
	for (int t = 0; t < MOAT_T_PHYS; t++)
		for (int s = 0; s < 2; s++)
			if (dp->arr_mem[t][s])
				munmap((void *)dp->arr_mem[t][s], dp->arr_len[t]);
	moat_bpf__destroy(dp->skel);
	free(dp->aside);
	free(dp->pin_dir);
	pthread_mutex_destroy(&dp->settle_lock);
	pthread_cond_destroy(&dp->settle_cond);
	free(dp);
}

int moat_dp_open(const struct moat_dp_opts *opts, struct moat_dp **ret_dp, bool *ret_adopted)
{
	struct moat_dp_opts def = { .events = true };
	LIBBPF_OPTS(bpf_object_open_opts, oopts);
	struct moat_dp *dp = NULL;
	struct moat_meta meta = { 0 };
	struct bpf_map *m;
	bool adopted = false;
	char path[PATH_MAX];
	int tmpl_fd[4] = { -1, -1, -1, -1 };
	int err;

	if (!opts)
		opts = &def;
	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	pthread_mutex_init(&dp->settle_lock, NULL);
	pthread_cond_init(&dp->settle_cond, NULL);
	dp->pin_dir = strdup(opts->pin_dir ? opts->pin_dir : MOAT_PIN_ROOT "/default");
	if (!dp->pin_dir) {
		err = -ENOMEM;
		goto out;
	}
	dp->no_pin = opts->no_pin;

	if (!dp->no_pin) {
		err = moat_bpffs_ensure();
		if (!err)
			err = pin_dir_on_bpffs(dp->pin_dir);
		if (err)
			goto out;
		err = read_meta(dp->pin_dir, &meta);
		if (err == 0) {
			if (meta.magic != MOAT_META_MAGIC ||
			    (opts->reset && meta.abi_version != MOAT_ABI_VERSION)) {
				if (!opts->reset) {
					err = -EPROTO;
					goto out;
				}
				err = moat_dp_uninstall(dp->pin_dir);
				if (err)
					goto out;
			} else if (meta.abi_version != MOAT_ABI_VERSION) {
				/* another version's state: aside, its links kept */
				err = moat_dp_upgrade_prepare(dp, meta.abi_version);
				if (err)
					goto out;
			} else {
				adopted = true;
			}
		} else if (err != -ENOENT) {
			goto out;
		}
		/* an upgrade interrupted after its move: finish it */
		err = moat_dp_upgrade_resume(dp);
		if (err)
			goto out;
		err = moat_dp_mkdir_p(dp->pin_dir, 0700);
		if (err)
			goto out;
		oopts.pin_root_path = dp->pin_dir;
	}

	dp->skel = moat_bpf__open_opts(&oopts);
	if (!dp->skel) {
		err = -errno;
		goto out;
	}
	dp->skel->rodata->cfg_events = opts->events;
	dp->skel->rodata->cfg_bench_no_ct = opts->bench_no_ct;

	err = set_switched_max(dp->skel, MOAT_TBL_POL, opts->max_policy, &tmpl_fd[0]);
	if (!err)
		err = set_switched_max(dp->skel, MOAT_TBL_IP4, opts->max_ips, &tmpl_fd[1]);
	if (!err)
		err = set_switched_max(dp->skel, MOAT_TBL_IP6, opts->max_ips, &tmpl_fd[2]);
	if (!err)
		err = set_switched_max(dp->skel, MOAT_TBL_SUBJ, opts->max_identities, &tmpl_fd[3]);
	if (err)
		goto out;
	set_max(dp->skel->maps.moat_ct4, opts->max_ct);
	set_max(dp->skel->maps.moat_ct6, opts->max_ct);
	set_max(dp->skel->maps.moat_rulestats, opts->max_rules);

	if (dp->no_pin) {
		bpf_object__for_each_map(m, dp->skel->obj)
			bpf_map__set_pin_path(m, NULL);
	} else if (adopted) {
		/* Every pinned map must be there, or the set is inconsistent. */
		bpf_object__for_each_map(m, dp->skel->obj) {
			if (!bpf_map__pin_path(m))
				continue;
			if (access(bpf_map__pin_path(m), F_OK)) {
				err = -EPROTO;
				goto out;
			}
		}
	}

	err = moat_bpf__load(dp->skel);
	close_templates(tmpl_fd, 4);
	if (err)
		goto out;

	for (int t = 0; t < MOAT_T_PHYS; t++) {
		char name[32];
		snprintf(name, sizeof(name), "%s_a", tbl_desc[t].name);
		m = bpf_object__find_map_by_name(dp->skel->obj, name);
		dp->tbl_fd[t][0] = bpf_map__fd(m);
		dp->tbl_cap[t] = bpf_map__max_entries(m);
		snprintf(name, sizeof(name), "%s_b", tbl_desc[t].name);
		dp->tbl_fd[t][1] = bpf_map__fd(bpf_object__find_map_by_name(dp->skel->obj, name));
		dp->outer_fd[t] = bpf_map__fd(bpf_object__find_map_by_name(dp->skel->obj, tbl_desc[t].name));
		if (bpf_map__map_flags(m) & BPF_F_MMAPABLE) {
			long pg = sysconf(_SC_PAGESIZE);

			dp->arr_len[t] = ((size_t)dp->tbl_cap[t] * tbl_desc[t].val + pg - 1) &
					 ~(size_t)(pg - 1);
			for (int s = 0; s < 2; s++) {
				void *p = mmap(NULL, dp->arr_len[t], PROT_READ, MAP_SHARED, dp->tbl_fd[t][s],
					       0);
				dp->arr_mem[t][s] = p == MAP_FAILED ? NULL : p; /* else read by syscalls */
			}
		}
	}

	dp->cfg_len = (sizeof(struct moat_config) + 4095) & ~4095ul;
	dp->cfg = mmap(NULL, dp->cfg_len, PROT_READ | PROT_WRITE, MAP_SHARED,
		       bpf_map__fd(dp->skel->maps.moat_config), 0);
	if (dp->cfg == MAP_FAILED) {
		err = -errno;
		dp->cfg = NULL;
		goto out;
	}

	if (!adopted) {
		__u32 zero = 0;
		struct moat_meta nm = { .abi_version = MOAT_ABI_VERSION, .magic = MOAT_META_MAGIC };
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		nm.created_ns = (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
		config_defaults(dp->cfg);
		for (int t = 0; t < MOAT_T_PHYS; t++) {
			for (__u32 slot = 0; slot < 2; slot++) {
				int fd = dp->tbl_fd[t][slot];
				if (bpf_map_update_elem(dp->outer_fd[t], &slot, &fd, BPF_ANY)) {
					err = -errno;
					goto out;
				}
			}
		}
		/* meta last: its presence marks a complete set */
		if (bpf_map_update_elem(bpf_map__fd(dp->skel->maps.moat_meta), &zero, &nm, BPF_ANY)) {
			err = -errno;
			goto out;
		}
	}
	dp->generation = moat_dp_generation(dp);
	if (dp->cfg->slot_gen[0] > dp->generation)
		dp->generation = dp->cfg->slot_gen[0];
	if (dp->cfg->slot_gen[1] > dp->generation)
		dp->generation = dp->cfg->slot_gen[1];
	if (!dp->no_pin) {
		snprintf(path, sizeof(path), "%s/links", dp->pin_dir);
		err = moat_dp_mkdir_p(path, 0700);
		if (err)
			goto out;
	}
	/* After an adoption the slots may differ (killed mid-update): the
	 * first commit re-levels the inactive slot from the live one. */
	dp->inactive_dirty = adopted;
	*ret_dp = dp;
	if (ret_adopted)
		*ret_adopted = adopted;
	return 0;
out:
	close_templates(tmpl_fd, 4);
	moat_dp_close(dp);
	return err < 0 ? err : -EINVAL;
}

int moat_dp_repin_maps(struct moat_dp *dp)
{
	struct bpf_map *m, *meta = dp->skel->maps.moat_meta;
	int n = 0, err;

	if (dp->no_pin)
		return 0;
	err = moat_dp_mkdir_p(dp->pin_dir, 0700);
	if (err)
		return err;
	/* meta last: its presence marks a complete set */
	bpf_object__for_each_map(m, dp->skel->obj) {
		const char *p = bpf_map__pin_path(m);
		if (!p || m == meta || !access(p, F_OK))
			continue;
		if (bpf_obj_pin(bpf_map__fd(m), p))
			return -errno;
		n++;
	}
	if (bpf_map__pin_path(meta) && access(bpf_map__pin_path(meta), F_OK)) {
		if (bpf_obj_pin(bpf_map__fd(meta), bpf_map__pin_path(meta)))
			return -errno;
		n++;
	}
	return n;
}

/* ---- counters -------------------------------------------------------------- */
static int percpu_sum(int fd, __u32 key, size_t nfield, __u64 *out)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 *vals;
	int err = 0;

	if (ncpu <= 0)
		return -EINVAL;
	vals = calloc((size_t)ncpu, nfield * sizeof(__u64));
	if (!vals)
		return -ENOMEM;
	if (bpf_map_lookup_elem(fd, &key, vals)) {
		err = -errno;
		goto out;
	}
	for (size_t f = 0; f < nfield; f++)
		out[f] = 0;
	for (int c = 0; c < ncpu; c++)
		for (size_t f = 0; f < nfield; f++)
			out[f] += vals[c * nfield + f];
out:
	free(vals);
	return err;
}

int moat_dp_stat(struct moat_dp *dp, __u32 idx, __u64 *packets, __u64 *bytes)
{
	__u64 v[2];
	int err = percpu_sum(bpf_map__fd(dp->skel->maps.moat_stats), idx, 2, v);

	if (!err) {
		*packets = v[0];
		*bytes = v[1];
	}
	return err;
}

int moat_dp_rule_stat(struct moat_dp *dp, __u32 rule, __u64 *packets, __u64 *bytes)
{
	__u64 v[2];
	int err = percpu_sum(bpf_map__fd(dp->skel->maps.moat_rulestats), rule, 2, v);

	if (!err) {
		*packets = v[0];
		*bytes = v[1];
	}
	return err;
}

int moat_dp_event_stat(struct moat_dp *dp, __u32 idx, __u64 *value)
{
	return percpu_sum(bpf_map__fd(dp->skel->maps.moat_evstats), idx, 1, value);
}

enum moat_tbl moat_tbl_route(const struct moat_dp *dp, enum moat_tbl t, const void *key)
{
	__u32 ifindex;

	if (t != MOAT_T_EP)
		return t;
	memcpy(&ifindex, key, sizeof(ifindex));
	return ifindex < dp->tbl_cap[MOAT_T_EPA] ? MOAT_T_EPA : MOAT_T_EP;
}

int moat_dp_lookup(struct moat_dp *dp, enum moat_tbl t, const void *key, void *val)
{
	__u32 active;

	if (t >= MOAT_T_MAX)
		return -EINVAL;
	t = moat_tbl_route(dp, t, key);
	active = __atomic_load_n(&dp->cfg->active, __ATOMIC_ACQUIRE) & 1;
	if (bpf_map_lookup_elem(dp->tbl_fd[t][active], key, val))
		return -errno;
	if (t == MOAT_T_EPA && !(((const struct moat_endpoint *)val)->flags & MOAT_EP_F_VALID))
		return -ENOENT; /* an empty array slot */
	return 0;
}

/* ---- conntrack ---------------------------------------------------------------- */
static int ct_walk_one(int fd, int family, int (*fn)(const struct moat_ct_view *v, void *arg), void *arg)
{
	size_t ksz = family == 4 ? sizeof(struct moat_ct4_key) : sizeof(struct moat_ct6_key);
	__u8 key[sizeof(struct moat_ct6_key)], next[sizeof(struct moat_ct6_key)];
	struct moat_ct_view v;
	void *prev = NULL;
	int rc;

	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, ksz);
		prev = key;
		memset(&v, 0, sizeof(v));
		if (bpf_map_lookup_elem(fd, key, &v.e))
			continue; /* deleted under us */
		v.family = family;
		if (family == 4) {
			struct moat_ct4_key *k = (void *)key;
			memcpy(v.a_addr, &k->a_addr, 4);
			memcpy(v.b_addr, &k->b_addr, 4);
			v.a_port = ntohs(k->a_port);
			v.b_port = ntohs(k->b_port);
			v.proto = k->proto;
		} else {
			struct moat_ct6_key *k = (void *)key;
			memcpy(v.a_addr, k->a_addr, 16);
			memcpy(v.b_addr, k->b_addr, 16);
			v.a_port = ntohs(k->a_port);
			v.b_port = ntohs(k->b_port);
			v.proto = k->proto;
		}
		rc = fn(&v, arg);
		if (rc < 0)
			return rc;
		if (rc == 1)
			bpf_map_delete_elem(fd, key);
	}
	return 0;
}

int moat_dp_ct_walk(struct moat_dp *dp, int (*fn)(const struct moat_ct_view *v, void *arg), void *arg)
{
	int err = ct_walk_one(bpf_map__fd(dp->skel->maps.moat_ct4), 4, fn, arg);

	if (err)
		return err;
	return ct_walk_one(bpf_map__fd(dp->skel->maps.moat_ct6), 6, fn, arg);
}

static int flush_cb(const struct moat_ct_view *v, void *arg)
{
	(void)v;
	(void)arg;
	return 1;
}

int moat_dp_ct_flush(struct moat_dp *dp)
{
	return moat_dp_ct_walk(dp, flush_cb, NULL);
}
