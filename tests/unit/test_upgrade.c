// SPDX-License-Identifier: Apache-2.0
/* Upgrades across map ABI versions (offload/upgrade.c):
 *   - the BTF layout comparison that decides whether conntrack is carried:
 *     through typedefs, type names ignored, member names, offsets, sizes and
 *     array lengths compared;
 *   - a pinned datapath whose meta says another ABI version is set aside
 *     (not refused, not discarded), its conntrack carried with generation 0,
 *     and the old state removed by finish;
 *   - a pinned conntrack map whose entry layout differs is not carried;
 *   - the conntrack key and entry layouts and flag values are those recorded
 *     in tests/fixtures/ct_layout.txt: upgrades carry conntrack whenever
 *     names and offsets agree, so a change of meaning must rename a field,
 *     and this makes every change a deliberate one.
 * The end-to-end upgrade under traffic is tests/e2e/upgrade.sh. */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <cmocka.h>

#include "dp.h"
#include "xdp/moat.skel.h"

/* struct NAME { u32 FIRST; u32 b; u64 c; u8 d[ND]; } with u32 maybe a
 * typedef; returns the struct's id */
static int add_struct(struct btf *b, const char *name, const char *first, int nd, bool typedef_u32,
		      int c_offset_bits)
{
	int u8 = btf__add_int(b, "unsigned char", 1, 0);
	int u32 = btf__add_int(b, "unsigned int", 4, 0);
	int u64 = btf__add_int(b, "long long unsigned int", 8, 0);
	int arr, s;

	if (typedef_u32)
		u32 = btf__add_typedef(b, "__u32", u32);
	arr = btf__add_array(b, u32, u8, nd);
	s = btf__add_struct(b, name, 24);
	assert_true(u8 > 0 && u32 > 0 && u64 > 0 && arr > 0 && s > 0);
	assert_int_equal(btf__add_field(b, first, u32, 0, 0), 0);
	assert_int_equal(btf__add_field(b, "b", u32, 32, 0), 0);
	assert_int_equal(btf__add_field(b, "c", u64, c_offset_bits, 0), 0);
	assert_int_equal(btf__add_field(b, "d", arr, 128, 0), 0);
	return s;
}

static bool same(const char *name, const char *first, int nd, bool td, int coff)
{
	struct btf *a = btf__new_empty(), *b = btf__new_empty();
	int ia = add_struct(a, "moat_ct_entry", "a", 4, false, 64);
	int ib = add_struct(b, name, first, nd, td, coff);
	bool r = moat_btf_same_layout(a, (__u32)ia, b, (__u32)ib);

	btf__free(a);
	btf__free(b);
	return r;
}

static void test_btf_layout_compare(void **state)
{
	(void)state;
	assert_true(same("moat_ct_entry", "a", 4, false, 64));
	assert_true(same("renamed_type", "a", 4, true, 64));      /* type names, typedefs: no matter */
	assert_false(same("moat_ct_entry", "pad", 4, false, 64)); /* a member renamed: its meaning changed */
	assert_false(same("moat_ct_entry", "a", 8, false, 64));   /* an array's length */
	assert_false(same("moat_ct_entry", "a", 4, false, 96));   /* a member moved */
	assert_false(moat_btf_same_layout(NULL, 1, NULL, 1));
}

/* "name size: member@offset:size ..." for a struct of the datapath's BTF */
static void describe_struct(const struct btf *b, const char *name, FILE *out)
{
	int id = btf__find_by_name_kind(b, name, BTF_KIND_STRUCT);
	const struct btf_type *t;
	const struct btf_member *m;

	assert_true(id > 0);
	t = btf__type_by_id(b, (__u32)id);
	fprintf(out, "%s %u:", name, t->size);
	m = btf_members(t);
	for (__u16 i = 0; i < btf_vlen(t); i++)
		fprintf(out, " %s@%u:%lld", btf__name_by_offset(b, m[i].name_off),
			btf_member_bit_offset(t, i) / 8, (long long)btf__resolve_size(b, m[i].type));
	fputc('\n', out);
}

static void test_conntrack_layout_recorded(void **state)
{
	struct moat_bpf *skel = moat_bpf__open();
	char *got = NULL, line[256], want[4096] = "";
	size_t glen = 0;
	FILE *out = open_memstream(&got, &glen), *f;

	(void)state;
	assert_non_null(skel);
	describe_struct(bpf_object__btf(skel->obj), "moat_ct4_key", out);
	describe_struct(bpf_object__btf(skel->obj), "moat_ct6_key", out);
	describe_struct(bpf_object__btf(skel->obj), "moat_ct_entry", out);
	moat_bpf__destroy(skel);
	/* the flags, as include/moat/abi.h defines them */
	f = fopen("include/moat/abi.h", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char nm[64], val[64];
		if (sscanf(line, "#define MOAT_CT_%63s %63[^/\n]", nm, val) == 2) {
			size_t n = strlen(val);
			while (n && val[n - 1] == ' ')
				val[--n] = 0;
			fprintf(out, "MOAT_CT_%s %s\n", nm, val);
		}
	}
	fclose(f);
	fclose(out);
	f = fopen("tests/fixtures/ct_layout.txt", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (line[0] != '#')
			strncat(want, line, sizeof(want) - strlen(want) - 1);
	fclose(f);
	if (strcmp(got, want))
		fail_msg("the conntrack key, entry or flags changed; upgrades carry conntrack across ABI "
			 "versions whenever member names and offsets agree, so if the meaning of a field or "
			 "flag changed, rename the field; then record the new layout in "
			 "tests/fixtures/ct_layout.txt:\n%s",
			 got);
	free(got);
}

static char pin[128];

static struct moat_dp *open_dp(bool *adopted)
{
	struct moat_dp_opts o = { .pin_dir = pin, .events = false, .max_ct = 1024, .max_policy = 1024 };
	struct moat_dp *dp = NULL;
	int rc = moat_dp_open(&o, &dp, adopted);

	if (rc)
		fail_msg("datapath under %s: %s", pin, strerror(-rc));
	return dp;
}

static void set_meta_abi(__u32 abi)
{
	char path[256];
	struct moat_meta m;
	__u32 zero = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", pin, MOAT_MAP_META);
	fd = bpf_obj_get(path);
	assert_true(fd >= 0);
	assert_int_equal(bpf_map_lookup_elem(fd, &zero, &m), 0);
	m.abi_version = abi;
	assert_int_equal(bpf_map_update_elem(fd, &zero, &m, BPF_ANY), 0);
	close(fd);
}

static struct moat_ct4_key ct_key(__u32 i)
{
	struct moat_ct4_key k;

	memset(&k, 0, sizeof(k));
	k.a_addr = htobe32(0x0a000001);
	k.b_addr = htobe32(0x0a000002);
	k.a_port = htobe16((__u16)(1000 + i));
	k.b_port = htobe16(80);
	k.proto = 6;
	return k;
}

static bool exists(const char *fmt, __u32 abi)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), fmt, pin, abi);
	return stat(path, &st) == 0;
}

static void test_upgrade_carries_conntrack(void **state)
{
	struct moat_ct_entry e, got;
	struct moat_ct4_key k;
	struct moat_dp *dp;
	bool adopted = true;
	__u64 carried = 0;
	int fd;

	(void)state;
	if (geteuid() != 0)
		skip();
	dp = open_dp(&adopted);
	assert_false(adopted);
	assert_int_equal(moat_dp_upgrading(dp), 0);
	fd = moat_dp_map_fd(dp, "moat_ct4");
	memset(&e, 0, sizeof(e));
	e.generation = 7;
	e.packets = 3;
	for (__u32 i = 0; i < 5; i++) {
		k = ct_key(i);
		assert_int_equal(bpf_map_update_elem(fd, &k, &e, BPF_ANY), 0);
	}
	moat_dp_close(dp);

	/* what an older moatd would have left */
	set_meta_abi(MOAT_ABI_VERSION - 1);
	dp = open_dp(&adopted);
	assert_false(adopted);
	assert_int_equal(moat_dp_upgrading(dp), MOAT_ABI_VERSION - 1);
	assert_true(exists("%s/abi%u/moat_ct4", MOAT_ABI_VERSION - 1));
	assert_true(exists("%s/abi%u/" MOAT_MAP_META, MOAT_ABI_VERSION - 1));
	assert_int_equal(moat_dp_upgrade_carry(dp, &carried), 0);
	assert_int_equal(carried, 5);
	fd = moat_dp_map_fd(dp, "moat_ct4");
	k = ct_key(3);
	assert_int_equal(bpf_map_lookup_elem(fd, &k, &got), 0);
	assert_int_equal(got.generation, 0); /* judged again on its next packet */
	assert_int_equal(got.packets, 3);
	/* a second pass adds only what is new */
	assert_int_equal(moat_dp_upgrade_carry(dp, &carried), 0);
	assert_int_equal(carried, 0);
	assert_int_equal(moat_dp_upgrade_finish(dp), 0);
	assert_false(exists("%s/abi%u", MOAT_ABI_VERSION - 1));
	assert_int_equal(moat_dp_upgrading(dp), 0);
	moat_dp_close(dp);

	dp = open_dp(&adopted);
	assert_true(adopted);
	moat_dp_close(dp);
	assert_int_equal(moat_dp_uninstall(pin), 0);
}

/* An old conntrack map whose entry has another layout: nothing carried. */
static void test_upgrade_other_layout_not_carried(void **state)
{
	LIBBPF_OPTS(bpf_map_create_opts, mo);
	struct btf *b = btf__new_empty();
	struct moat_dp *dp;
	char path[256];
	bool adopted;
	__u64 carried = 99;
	int key, val, u8, u32, karr, varr, fd;
	unsigned char kbuf[sizeof(struct moat_ct4_key)] = { 1 }, vbuf[sizeof(struct moat_ct_entry)] = { 0 };

	(void)state;
	if (geteuid() != 0)
		skip();
	dp = open_dp(&adopted);
	moat_dp_close(dp);
	set_meta_abi(MOAT_ABI_VERSION + 1);

	/* moat_ct4 replaced by a map of the same sizes but a different entry
	 * (every type before the structs: members go to the last type added) */
	u8 = btf__add_int(b, "unsigned char", 1, 0);
	u32 = btf__add_int(b, "unsigned int", 4, 0);
	karr = btf__add_array(b, u32, u8, sizeof(struct moat_ct4_key));
	varr = btf__add_array(b, u32, u8, sizeof(struct moat_ct_entry));
	key = btf__add_struct(b, "moat_ct4_key", sizeof(struct moat_ct4_key));
	assert_int_equal(btf__add_field(b, "raw", karr, 0, 0), 0);
	val = btf__add_struct(b, "moat_ct_entry", sizeof(struct moat_ct_entry));
	assert_int_equal(btf__add_field(b, "blob", varr, 0, 0), 0);
	assert_int_equal(btf__load_into_kernel(b), 0);
	mo.btf_fd = btf__fd(b);
	mo.btf_key_type_id = key;
	mo.btf_value_type_id = val;
	fd = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "moat_ct4", sizeof(kbuf), sizeof(vbuf), 1024, &mo);
	assert_true(fd >= 0);
	assert_int_equal(bpf_map_update_elem(fd, kbuf, vbuf, BPF_ANY), 0);
	snprintf(path, sizeof(path), "%s/moat_ct4", pin);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(bpf_obj_pin(fd, path), 0);
	close(fd);
	btf__free(b);

	dp = open_dp(&adopted);
	assert_int_equal(moat_dp_upgrading(dp), MOAT_ABI_VERSION + 1);
	assert_int_equal(moat_dp_upgrade_carry(dp, &carried), -EPROTOTYPE);
	assert_int_equal(carried, 0);
	assert_int_equal(moat_dp_upgrade_finish(dp), 0);
	moat_dp_close(dp);
	assert_int_equal(moat_dp_uninstall(pin), 0);
}

/* A move interrupted after it began: the next open finishes the job. */
static void test_upgrade_interrupted_resumes(void **state)
{
	char from[256], to[256];
	struct moat_dp *dp;
	bool adopted;

	(void)state;
	if (geteuid() != 0)
		skip();
	dp = open_dp(&adopted);
	moat_dp_close(dp);
	set_meta_abi(MOAT_ABI_VERSION - 1);
	/* as if the daemon died having moved one map: the meta still says
	 * the old version */
	snprintf(from, sizeof(from), "%s/abi%u", pin, (unsigned)MOAT_ABI_VERSION - 1);
	assert_int_equal(mkdir(from, 0700), 0);
	snprintf(from, sizeof(from), "%s/moat_ct6", pin);
	snprintf(to, sizeof(to), "%s/abi%u/moat_ct6", pin, (unsigned)MOAT_ABI_VERSION - 1);
	assert_int_equal(rename(from, to), 0);

	dp = open_dp(&adopted);
	assert_false(adopted);
	assert_int_equal(moat_dp_upgrading(dp), MOAT_ABI_VERSION - 1);
	assert_true(exists("%s/abi%u/moat_ct4", MOAT_ABI_VERSION - 1));
	assert_true(exists("%s/abi%u/moat_ct6", MOAT_ABI_VERSION - 1));
	moat_dp_close(dp); /* dies again before the switch */

	dp = open_dp(&adopted);
	assert_true(adopted);                                          /* the new state is complete */
	assert_int_equal(moat_dp_upgrading(dp), MOAT_ABI_VERSION - 1); /* the old one still to remove */
	assert_int_equal(moat_dp_upgrade_finish(dp), 0);
	moat_dp_close(dp);
	assert_int_equal(moat_dp_uninstall(pin), 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(pin, sizeof(pin), "/sys/fs/bpf/moat-test-upgrade-%d", getpid());
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	moat_dp_uninstall(pin);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_btf_layout_compare),
		cmocka_unit_test(test_conntrack_layout_recorded),
		cmocka_unit_test_teardown(test_upgrade_carries_conntrack, teardown),
		cmocka_unit_test_teardown(test_upgrade_other_layout_not_carried, teardown),
		cmocka_unit_test_teardown(test_upgrade_interrupted_resumes, teardown),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
