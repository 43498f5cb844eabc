// SPDX-License-Identifier: Apache-2.0
/* Upgrades (and rollbacks) across map ABI versions without a gap.
 *
 * moat_dp_open() finds pinned state of another ABI version: it moves
 * everything but the links aside to PIN_DIR/abiN and creates fresh maps.
 * The old links stay where attaching looks for them, so the first attach
 * after a generation was committed updates each link to the new program in
 * place (bpf_link_update): until that moment the old programs, holding the
 * old maps, enforce the old state; from it the new ones enforce the new
 * state.  No interface is ever without a program.
 *
 * Conntrack is carried over when the old and new maps lay out their keys
 * and entries identically (BTF: kinds, sizes, member names and offsets),
 * once just before the links switch and once just after (the flows the old
 * programs opened in between).  Carried entries get generation 0, which is
 * never live, so each is judged again under the new policy on its next
 * packet, as after any policy change.  Then the old state is removed. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "dp.h"
#include "dp_internal.h"
#include "xdp/moat.skel.h"

static bool btf_same(const struct btf *a, __u32 ia, const struct btf *b, __u32 ib, int depth)
{
	const struct btf_type *ta, *tb;
	int ra, rb;

	if (depth > 8)
		return false;
	ra = btf__resolve_type(a, ia);
	rb = btf__resolve_type(b, ib);
	if (ra < 0 || rb < 0)
		return false;
	ta = btf__type_by_id(a, (__u32)ra);
	tb = btf__type_by_id(b, (__u32)rb);
	if (!ta || !tb || btf_kind(ta) != btf_kind(tb) || btf_vlen(ta) != btf_vlen(tb))
		return false;
	switch (btf_kind(ta)) {
	case BTF_KIND_INT:
		return ta->size == tb->size && *(const __u32 *)(ta + 1) == *(const __u32 *)(tb + 1);
	case BTF_KIND_ENUM:
		return ta->size == tb->size;
	case BTF_KIND_ARRAY: {
		const struct btf_array *aa = btf_array(ta), *ab = btf_array(tb);
		return aa->nelems == ab->nelems && btf_same(a, aa->type, b, ab->type, depth + 1);
	}
	case BTF_KIND_STRUCT:
	case BTF_KIND_UNION: {
		const struct btf_member *ma = btf_members(ta), *mb = btf_members(tb);

		if (ta->size != tb->size)
			return false;
		for (__u16 i = 0; i < btf_vlen(ta); i++) {
			const char *na = btf__name_by_offset(a, ma[i].name_off);
			const char *nb = btf__name_by_offset(b, mb[i].name_off);

			if (!na || !nb || strcmp(na, nb) ||
			    btf_member_bit_offset(ta, i) != btf_member_bit_offset(tb, i) ||
			    btf_member_bitfield_size(ta, i) != btf_member_bitfield_size(tb, i) ||
			    !btf_same(a, ma[i].type, b, mb[i].type, depth + 1))
				return false;
		}
		return true;
	}
	default:
		return false; /* pointers, functions: nothing a map entry holds */
	}
}

bool moat_btf_same_layout(const struct btf *a, __u32 ida, const struct btf *b, __u32 idb)
{
	return a && b && btf_same(a, ida, b, idb, 0);
}

/* The PIN_DIR/abiN an interrupted upgrade left, if any.  (Inside the pin
 * directory: bpffs refuses names with a dot, and no map is named abiN.) */
static int find_aside(const char *pin_dir, char *buf, size_t len, __u32 *abi)
{
	struct dirent *de;
	DIR *d;
	int err = -ENOENT;

	d = opendir(pin_dir);
	if (!d)
		return errno == ENOENT ? -ENOENT : -errno;
	while ((de = readdir(d))) {
		char *end;
		unsigned long v;

		if (strncmp(de->d_name, "abi", 3) || !isdigit((unsigned char)de->d_name[3]))
			continue;
		v = strtoul(de->d_name + 3, &end, 10);
		if (*end || v > UINT32_MAX)
			continue;
		if (snprintf(buf, len, "%s/%s", pin_dir, de->d_name) >= (int)len) {
			err = -ENAMETOOLONG;
			break;
		}
		*abi = (__u32)v;
		err = 0;
		break;
	}
	closedir(d);
	return err;
}

static int move_one(const char *dir, const char *aside, const char *name, char from[PATH_MAX],
		    char to[PATH_MAX])
{
	if (snprintf(from, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX ||
	    snprintf(to, PATH_MAX, "%s/%s", aside, name) >= PATH_MAX)
		return -ENAMETOOLONG;
	return rename(from, to) ? -errno : 0;
}

int moat_dp_upgrade_prepare(struct moat_dp *dp, __u32 old_abi)
{
	char aside[PATH_MAX], from[PATH_MAX], to[PATH_MAX];
	char(*names)[NAME_MAX + 1] = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int err = 0;

	if (snprintf(aside, sizeof(aside), "%s/abi%u", dp->pin_dir, old_abi) >= (int)sizeof(aside))
		return -ENAMETOOLONG;
	if (mkdir(aside, 0700) && errno != EEXIST)
		return -errno;
	/* names first: renaming while reading the directory could skip some */
	d = opendir(dp->pin_dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !strcmp(de->d_name, "links") ||
		    !strcmp(de->d_name, MOAT_MAP_META) || !strncmp(de->d_name, "abi", 3))
			continue;
		if (n == cap) {
			void *v = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*names));
			if (!v) {
				err = -ENOMEM;
				break;
			}
			names = v;
		}
		snprintf(names[n++], sizeof(names[0]), "%s", de->d_name);
	}
	closedir(d);
	for (size_t i = 0; !err && i < n; i++)
		err = move_one(dp->pin_dir, aside, names[i], from, to);
	free(names);
	/* the meta last: until it moves, a new start sees the old version and
	 * continues here */
	if (!err)
		err = move_one(dp->pin_dir, aside, MOAT_MAP_META, from, to);
	if (err)
		return err;
	free(dp->aside);
	dp->aside = strdup(aside);
	if (!dp->aside)
		return -ENOMEM;
	dp->upgraded_from = old_abi;
	return 0;
}

int moat_dp_upgrade_resume(struct moat_dp *dp)
{
	char aside[PATH_MAX];
	__u32 abi = 0;
	int err;

	if (dp->no_pin || dp->aside)
		return 0;
	err = find_aside(dp->pin_dir, aside, sizeof(aside), &abi);
	if (err)
		return err == -ENOENT ? 0 : err;
	dp->aside = strdup(aside);
	if (!dp->aside)
		return -ENOMEM;
	dp->upgraded_from = abi;
	return 0;
}

__u32 moat_dp_upgrading(const struct moat_dp *dp)
{
	return dp && dp->aside ? (dp->upgraded_from ? dp->upgraded_from : 1) : 0;
}

/* Whether the pinned map fd holds keys and values laid out as m's. */
static int same_map_layout(int fd, const struct bpf_map *m, const struct btf *nb)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	struct btf *ob;
	int err = 0;

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	if (info.type != (__u32)bpf_map__type(m) || info.key_size != bpf_map__key_size(m) ||
	    info.value_size != bpf_map__value_size(m) || !info.btf_id)
		return -EPROTOTYPE;
	ob = btf__load_from_kernel_by_id(info.btf_id);
	if (!ob)
		return -errno;
	if (!moat_btf_same_layout(ob, info.btf_key_type_id, nb, bpf_map__btf_key_type_id(m)) ||
	    !moat_btf_same_layout(ob, info.btf_value_type_id, nb, bpf_map__btf_value_type_id(m)))
		err = -EPROTOTYPE;
	btf__free(ob);
	return err;
}

/* Copies every entry of ofd not yet in nfd, its generation cleared. */
static int copy_ct(int ofd, int nfd, __u32 key_size, __u64 *carried)
{
	enum {
		BATCH = 1024
	};
	LIBBPF_OPTS(bpf_map_batch_opts, bo);
	struct moat_ct_entry *vals;
	__u32 in = 0, out = 0;
	bool first = true, done = false;
	char *keys;
	int err = 0;

	keys = calloc(BATCH, key_size);
	vals = calloc(BATCH, sizeof(*vals));
	if (!keys || !vals) {
		err = -ENOMEM;
		goto out;
	}
	while (!done) {
		__u32 count = BATCH;

		if (bpf_map_lookup_batch(ofd, first ? NULL : &in, &out, keys, vals, &count, &bo)) {
			if (errno != ENOENT) {
				err = -errno;
				goto out;
			}
			done = true; /* the last batch, count entries or none */
		}
		first = false;
		in = out;
		for (__u32 i = 0; i < count; i++) {
			vals[i].generation = 0; /* never live: judged again */
			if (!bpf_map_update_elem(nfd, keys + (size_t)i * key_size, &vals[i], BPF_NOEXIST))
				(*carried)++;
			else if (errno != EEXIST) {
				err = -errno;
				goto out;
			}
		}
	}
out:
	free(keys);
	free(vals);
	return err;
}

int moat_dp_upgrade_carry(struct moat_dp *dp, __u64 *ret_carried)
{
	static const char *const maps[] = { "moat_ct4", "moat_ct6" };
	const struct btf *nb = bpf_object__btf(dp->skel->obj);
	char path[PATH_MAX];
	__u64 carried = 0;
	int err = 0;

	if (!dp->aside)
		return 0;
	for (size_t i = 0; !err && i < sizeof(maps) / sizeof(maps[0]); i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(dp->skel->obj, maps[i]);
		int fd;

		if (snprintf(path, sizeof(path), "%s/%s", dp->aside, maps[i]) >= (int)sizeof(path)) {
			err = -ENAMETOOLONG;
			break;
		}
		fd = bpf_obj_get(path);
		if (fd < 0) {
			if (errno != ENOENT)
				err = -errno;
			continue;
		}
		err = m ? same_map_layout(fd, m, nb) : -ENOENT;
		if (!err)
			err = copy_ct(fd, bpf_map__fd(m), bpf_map__key_size(m), &carried);
		close(fd);
	}
	if (ret_carried)
		*ret_carried = carried;
	return err;
}

int moat_dp_upgrade_finish(struct moat_dp *dp)
{
	int err;

	if (!dp->aside)
		return 0;
	err = moat_dp_uninstall(dp->aside);
	if (err)
		return err;
	free(dp->aside);
	dp->aside = NULL;
	return 0;
}
