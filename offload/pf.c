// SPDX-License-Identifier: Apache-2.0
/* The hardware pre-filter's loader; see pf.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "pf.h"
#include "xdp/prefilter.skel.h"

struct moat_pf {
	struct prefilter_bpf *skel;
	int ifindex; /* offloaded to; 0: host */
	int fd[MOAT_PF_T_MAX];
	__u32 cap[MOAT_PF_T_MAX];
	int cfg_fd, stats_fd;
	int link_fd; /* hardware attachment, or -1 */
	__u64 writes;
	void (*hook)(void *arg); /* tests */
	void *hook_arg;
	bool fail_armed;     /* tests: fail a write */
	unsigned fail_after; /* tests: writes that still succeed */
	bool fail_stuck;     /* tests: keep failing after the first */
};

static const struct {
	const char *name;
	size_t key, val;
} pf_desc[MOAT_PF_T_MAX] = {
	[MOAT_PF_T_LENS] = { MOAT_PF_MAP_LENS, sizeof(__u32), sizeof(struct moat_pf_len) },
	[MOAT_PF_T_SRC4] = { MOAT_PF_MAP_SRC4, sizeof(struct moat_pf_src4_key), sizeof(struct moat_pf_src) },
	[MOAT_PF_T_SRC6] = { MOAT_PF_MAP_SRC6, sizeof(struct moat_pf_src6_key), sizeof(struct moat_pf_src) },
	[MOAT_PF_T_DST4] = { MOAT_PF_MAP_DST4, sizeof(struct moat_pf_dst4_key), sizeof(struct moat_pf_dst) },
	[MOAT_PF_T_DST6] = { MOAT_PF_MAP_DST6, sizeof(struct moat_pf_dst6_key), sizeof(struct moat_pf_dst) },
	[MOAT_PF_T_PAIRS] = { MOAT_PF_MAP_PAIRS, sizeof(struct moat_pf_pair_key),
			      sizeof(struct moat_pf_pair) },
};

const char *moat_pf_tbl_name(enum moat_pf_tbl t)
{
	return t < MOAT_PF_T_MAX ? pf_desc[t].name : "?";
}

size_t moat_pf_key_size(enum moat_pf_tbl t)
{
	return t < MOAT_PF_T_MAX ? pf_desc[t].key : 0;
}

size_t moat_pf_value_size(enum moat_pf_tbl t)
{
	return t < MOAT_PF_T_MAX ? pf_desc[t].val : 0;
}

void moat_pf_close(struct moat_pf *pf)
{
	if (!pf)
		return;
	moat_pf_detach(pf);
	prefilter_bpf__destroy(pf->skel);
	free(pf);
}

int moat_pf_open(const struct moat_pf_opts *opts, struct moat_pf **ret, char *err, size_t errlen)
{
	struct moat_pf_opts def = { 0 };
	struct moat_pf *pf;
	struct bpf_map *m;
	int rc;

	if (!opts)
		opts = &def;
	if (err && errlen)
		err[0] = 0;
	pf = calloc(1, sizeof(*pf));
	if (!pf)
		return -ENOMEM;
	pf->link_fd = -1;
	pf->ifindex = opts->ifindex > 0 ? opts->ifindex : 0;
	pf->skel = prefilter_bpf__open();
	if (!pf->skel) {
		rc = -errno;
		snprintf(err, errlen, "cannot open the pre-filter object: %s", strerror(-rc));
		goto fail;
	}
	if (opts->max_src) {
		bpf_map__set_max_entries(pf->skel->maps.moat_pf_src4, opts->max_src);
		bpf_map__set_max_entries(pf->skel->maps.moat_pf_src6, opts->max_src);
	}
	if (opts->max_dst) {
		bpf_map__set_max_entries(pf->skel->maps.moat_pf_dst4, opts->max_dst);
		bpf_map__set_max_entries(pf->skel->maps.moat_pf_dst6, opts->max_dst);
	}
	if (opts->max_pairs)
		bpf_map__set_max_entries(pf->skel->maps.moat_pf_pairs, opts->max_pairs);
	if (pf->ifindex) {
		/* Offloaded maps are created on the NIC; the perf event array
		 * is offload-neutral and stays on the host. */
		bpf_program__set_ifindex(pf->skel->progs.moat_prefilter, (__u32)pf->ifindex);
		bpf_object__for_each_map(m, pf->skel->obj)
			if (bpf_map__type(m) != BPF_MAP_TYPE_PERF_EVENT_ARRAY)
				bpf_map__set_ifindex(m, (__u32)pf->ifindex);
	}
	rc = prefilter_bpf__load(pf->skel);
	if (rc) {
		snprintf(err, errlen, "the kernel refused the pre-filter%s: %s",
			 pf->ifindex ? " for hardware offload" : "", strerror(-rc));
		goto fail;
	}
	for (int t = 0; t < MOAT_PF_T_MAX; t++) {
		m = bpf_object__find_map_by_name(pf->skel->obj, pf_desc[t].name);
		pf->fd[t] = bpf_map__fd(m);
		pf->cap[t] = bpf_map__max_entries(m);
	}
	pf->cfg_fd = bpf_map__fd(pf->skel->maps.moat_pf_config);
	pf->stats_fd = bpf_map__fd(pf->skel->maps.moat_pf_stats);
	*ret = pf;
	return 0;
fail:
	moat_pf_close(pf);
	return rc < 0 ? rc : -EINVAL;
}

const void *moat_pf_object(size_t *len)
{
	return prefilter_bpf__elf_bytes(len);
}

bool moat_pf_offloaded(const struct moat_pf *pf)
{
	return pf->ifindex > 0;
}

int moat_pf_prog_fd(const struct moat_pf *pf)
{
	return bpf_program__fd(pf->skel->progs.moat_prefilter);
}

int moat_pf_events_fd(const struct moat_pf *pf)
{
	return bpf_map__fd(pf->skel->maps.moat_pf_events);
}

__u32 moat_pf_capacity(const struct moat_pf *pf, enum moat_pf_tbl t)
{
	return t < MOAT_PF_T_MAX ? pf->cap[t] : 0;
}

/* Every write goes through here: counted, and the tests' hooks. */
static int write_one(struct moat_pf *pf, int fd, const void *key, const void *val)
{
	int rc;

	if (pf->fail_armed) {
		if (!pf->fail_after) {
			pf->fail_armed = pf->fail_stuck;
			return -EIO;
		}
		pf->fail_after--;
	}
	pf->writes++;
	if (val)
		rc = bpf_map_update_elem(fd, key, val, BPF_ANY) ? -errno : 0;
	else
		rc = bpf_map_delete_elem(fd, key) ? -errno : 0;
	if (pf->hook)
		pf->hook(pf->hook_arg);
	return rc;
}

int moat_pf_put(struct moat_pf *pf, enum moat_pf_tbl t, const void *key, const void *val)
{
	if (t >= MOAT_PF_T_MAX || !val)
		return -EINVAL;
	return write_one(pf, pf->fd[t], key, val);
}

int moat_pf_del(struct moat_pf *pf, enum moat_pf_tbl t, const void *key)
{
	if (t >= MOAT_PF_T_MAX || t == MOAT_PF_T_LENS)
		return -EINVAL; /* arrays have no delete (offloaded: -EINVAL too) */
	return write_one(pf, pf->fd[t], key, NULL);
}

void moat_pf_set_write_hook(struct moat_pf *pf, void (*fn)(void *arg), void *arg)
{
	pf->hook = fn;
	pf->hook_arg = arg;
}

void moat_pf_fail_after(struct moat_pf *pf, unsigned n, bool stuck)
{
	pf->fail_armed = true;
	pf->fail_after = n;
	pf->fail_stuck = stuck;
}

void moat_pf_fail_off(struct moat_pf *pf)
{
	pf->fail_armed = false;
}

int moat_pf_get(struct moat_pf *pf, enum moat_pf_tbl t, const void *key, void *val)
{
	if (t >= MOAT_PF_T_MAX)
		return -EINVAL;
	return bpf_map_lookup_elem(pf->fd[t], key, val) ? -errno : 0;
}

int moat_pf_first_key(struct moat_pf *pf, enum moat_pf_tbl t, void *key)
{
	if (t >= MOAT_PF_T_MAX)
		return -EINVAL;
	return bpf_map_get_next_key(pf->fd[t], NULL, key) ? -errno : 0;
}

int moat_pf_set_config(struct moat_pf *pf, const struct moat_pf_config *cfg)
{
	__u32 zero = 0;

	return write_one(pf, pf->cfg_fd, &zero, cfg);
}

__u64 moat_pf_writes(const struct moat_pf *pf)
{
	return pf->writes;
}

int moat_pf_stat(struct moat_pf *pf, __u32 idx, __u64 *value)
{
	return bpf_map_lookup_elem(pf->stats_fd, &idx, value) ? -errno : 0;
}

int moat_pf_attach_hw(struct moat_pf *pf, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = XDP_FLAGS_HW_MODE);
	int fd;

	if (!pf->ifindex) {
		snprintf(err, errlen, "the pre-filter was loaded for the host, not for a device");
		return -EINVAL;
	}
	if (pf->link_fd >= 0)
		return 0;
	fd = bpf_link_create(moat_pf_prog_fd(pf), pf->ifindex, BPF_XDP, &lo);
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "hardware attach refused: %s", strerror(-rc));
		return rc;
	}
	pf->link_fd = fd;
	return 0;
}

void moat_pf_detach(struct moat_pf *pf)
{
	if (pf && pf->link_fd >= 0) {
		bpf_link_detach(pf->link_fd);
		close(pf->link_fd);
		pf->link_fd = -1;
	}
}
