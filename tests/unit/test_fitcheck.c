// SPDX-License-Identifier: Apache-2.0
/* The offload fit checker (hostd/fitcheck.h) against hw/nfp.json:
 *   - the pre-filter (build/xdp/prefilter.bpf.o) fits, with nothing in
 *     doubt: CI fails the moment it stops fitting;
 *   - the full enforcer (build/xdp/moat.bpf.o) does not, for the reasons
 *     docs/offload.md gives;
 *   - every kind of violation is caught on small purpose-built objects
 *     (tests/fixtures/bpf/fit_*.bpf.c, built by make tests), each at its
 *     program, instruction and source line, and a clean one is not flagged.
 * Run from the source tree (tests/run-all does); O names the build dir. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <cmocka.h>

#include "fitcheck.h"

static struct moat_nic_profile nfp;

static const char *obj_path(const char *rel)
{
	static char buf[4][512];
	static int n;
	const char *o = getenv("O") ? getenv("O") : "build";
	char *b = buf[n++ & 3];

	snprintf(b, sizeof(buf[0]), "%s/%s", o, rel);
	return b;
}

static int setup(void **state)
{
	char err[512];

	(void)state;
	if (moat_nic_profile_load("hw/nfp.json", &nfp, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static void check(const char *rel, const struct moat_nic_profile *p, struct moat_fit_report *r)
{
	char err[512];
	const char *path = obj_path(rel);

	if (access(path, R_OK))
		fail_msg("%s missing: run make tests first", path);
	if (moat_fit_check(path, p, r, err, sizeof(err)))
		fail_msg("%s", err);
}

static size_t count(const struct moat_fit_report *r, enum moat_fit_kind k, const char *prog)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nviol; i++)
		if (r->viol[i].kind == k && (!prog || !strcmp(r->viol[i].prog, prog)))
			n++;
	return n;
}

static void dump(const char *what, const struct moat_fit_report *r)
{
	printf("%s: %zu violations\n", what, r->nviol + r->dropped);
	for (size_t i = 0; i < r->nviol && i < 40; i++) {
		const struct moat_fit_violation *v = &r->viol[i];
		printf("  [%s]%s %s %s insn %d %s:%d %s\n", moat_fit_kind_name(v->kind),
		       v->doubt ? " (doubt)" : "", v->prog, v->func, v->insn, v->file, v->line, v->msg);
	}
}

/* Every instruction-level violation names its place in the source. */
static void assert_located(const struct moat_fit_report *r)
{
	for (size_t i = 0; i < r->nviol; i++) {
		const struct moat_fit_violation *v = &r->viol[i];
		if (v->insn < 0)
			continue;
		if (!v->prog[0] || !v->func[0] || !v->section[0] || !v->file[0] || v->line <= 0)
			fail_msg("[%s] %s insn %d: no program, function or source line",
				 moat_fit_kind_name(v->kind), v->prog, v->insn);
	}
}

static void test_prefilter_fits(void **state)
{
	struct moat_fit_report r;
	bool events = false;

	(void)state;
	check("xdp/prefilter.bpf.o", &nfp, &r);
	dump("prefilter", &r);
	assert_int_equal(r.nviol + r.dropped, 0);
	assert_int_equal(r.nprogs, 1);
	assert_string_equal(r.progs[0].name, "moat_prefilter");
	assert_true(r.progs[0].insns > 100 && r.progs[0].insns <= nfp.off.max_insns);
	assert_true(r.progs[0].stack <= nfp.off.max_stack);
	assert_int_equal(r.progs[0].funcs, 1);
	/* only helpers of the profile */
	for (__u32 id = 0; id < 64 * MOAT_FIT_HELPER_WORDS; id++) {
		bool used = r.progs[0].helpers[id / 64] & (1ull << (id % 64)), ok = false;
		for (size_t k = 0; k < nfp.off.nhelpers; k++)
			ok |= nfp.off.helpers[k] == id;
		assert_true(!used || ok);
	}
	assert_true(r.progs[0].helpers[0] & (1ull << BPF_FUNC_map_lookup_elem));
	assert_true(r.progs[0].helpers[0] & (1ull << BPF_FUNC_perf_event_output));
	/* hash and array maps on the device, the perf array on the host */
	for (size_t i = 0; i < r.nmaps; i++) {
		const struct moat_fit_map *m = &r.maps[i];
		assert_false(m->internal);
		if (m->type == BPF_MAP_TYPE_PERF_EVENT_ARRAY) {
			assert_false(m->on_device);
			events = true;
		} else {
			assert_true(m->type == BPF_MAP_TYPE_HASH || m->type == BPF_MAP_TYPE_ARRAY);
			assert_true(m->on_device);
			assert_int_equal(m->flags, 0);
		}
	}
	assert_true(events);
	assert_true(r.entries > 0 && r.entries <= nfp.off.max_entries);
	moat_fit_report_free(&r);
}

static void test_enforcer_does_not_fit(void **state)
{
	struct moat_fit_report r;

	(void)state;
	check("xdp/moat.bpf.o", &nfp, &r);
	dump("moat", &r);
	assert_true(r.nviol > 0);
	/* the reasons docs/offload.md gives */
	assert_true(r.nkind[MOAT_FIT_LPM] > 0);       /* CIDR regions, port classes */
	assert_true(r.nkind[MOAT_FIT_PERCPU] > 0);    /* counters, scratch */
	assert_true(r.nkind[MOAT_FIT_MAP_TYPE] > 0);  /* LRU conntrack, map-in-map slots */
	assert_true(r.nkind[MOAT_FIT_MAP_FLAGS] > 0); /* NO_PREALLOC, mmapable config, .rodata */
	assert_true(r.nkind[MOAT_FIT_MAP_SIZE] > 0);  /* 64-byte conntrack entries + keys */
	assert_true(r.nkind[MOAT_FIT_MAP_BUDGET] > 0);
	assert_true(r.nkind[MOAT_FIT_HELPER] > 0);    /* timestamps */
	assert_true(r.nkind[MOAT_FIT_MAP_STORE] > 0); /* counters and conntrack written in place */
	assert_true(r.nkind[MOAT_FIT_INSNS] > 0);
	assert_int_equal(r.nprogs, 3);
	for (size_t i = 0; i < r.nprogs; i++)
		assert_true(r.progs[i].insns > nfp.off.max_insns);
	assert_located(&r);
	moat_fit_report_free(&r);
}

static void test_clean_fixture(void **state)
{
	struct moat_fit_report r;

	(void)state;
	check("tests/fixtures/bpf/fit_clean.bpf.o", &nfp, &r);
	dump("fit_clean", &r);
	assert_int_equal(r.nviol, 0);
	assert_int_equal(r.progs[0].funcs, 2); /* the bpf-to-bpf call is allowed */
	moat_fit_report_free(&r);
}

static void test_maps_fixture(void **state)
{
	struct moat_fit_report r;
	bool rodata = false;

	(void)state;
	check("tests/fixtures/bpf/fit_maps.bpf.o", &nfp, &r);
	dump("fit_maps", &r);
	assert_int_equal(r.nkind[MOAT_FIT_LPM], 1);
	assert_int_equal(r.nkind[MOAT_FIT_PERCPU], 1);
	assert_int_equal(r.nkind[MOAT_FIT_MAP_TYPE], 1);   /* the LRU hash */
	assert_int_equal(r.nkind[MOAT_FIT_MAP_SIZE], 1);   /* 40 + 40 bytes */
	assert_int_equal(r.nkind[MOAT_FIT_MAP_BUDGET], 1); /* 4,000,000 entries */
	assert_true(r.nkind[MOAT_FIT_MAP_FLAGS] >= 2);
	for (size_t i = 0; i < r.nviol; i++)
		if (r.viol[i].kind == MOAT_FIT_MAP_FLAGS && strstr(r.viol[i].map, ".rodata"))
			rodata = true;
	assert_true(rodata); /* global data is a map with flags */
	moat_fit_report_free(&r);
}

static void test_calls_fixture(void **state)
{
	struct moat_fit_report r;

	(void)state;
	check("tests/fixtures/bpf/fit_calls.bpf.o", &nfp, &r);
	dump("fit_calls", &r);
	assert_int_equal(count(&r, MOAT_FIT_TAIL_CALL, "fit_tail"), 1); /* bpf_tail_call */
	assert_int_equal(count(&r, MOAT_FIT_TAIL_CALL, ""), 1);         /* the program array */
	assert_int_equal(count(&r, MOAT_FIT_HELPER, "fit_helpers"), 2); /* ktime_get_ns, redirect */
	assert_int_equal(count(&r, MOAT_FIT_PERF_FLAGS, "fit_helpers"), 1);
	assert_false(r.viol[0].doubt && r.viol[0].kind == MOAT_FIT_PERF_FLAGS);
	assert_int_equal(count(&r, MOAT_FIT_MAP_ARG, "fit_keys"), 2); /* map value key, unaligned */
	assert_int_equal(count(&r, MOAT_FIT_CALL, "fit_kfunc"), 1);
	assert_located(&r);
	moat_fit_report_free(&r);
}

static void test_insns_fixture(void **state)
{
	struct moat_fit_report r;

	(void)state;
	check("tests/fixtures/bpf/fit_insns.bpf.o", &nfp, &r);
	dump("fit_insns", &r);
	assert_int_equal(count(&r, MOAT_FIT_MOD, "fit_mod"), 1);
	assert_int_equal(count(&r, MOAT_FIT_MULDIV, "fit_div"), 1);
	assert_int_equal(count(&r, MOAT_FIT_ATOMIC, "fit_atomics"), 4);        /* fetch, xchg, cmpxchg, or */
	assert_int_equal(count(&r, MOAT_FIT_ATOMIC_TARGET, "fit_atomics"), 1); /* on the stack */
	assert_int_equal(count(&r, MOAT_FIT_V4, "fit_v4"), 1);
	assert_int_equal(count(&r, MOAT_FIT_OPCODE, "fit_v4"), 1); /* le16 */
	assert_located(&r);
	moat_fit_report_free(&r);
}

static void test_stores_fixture(void **state)
{
	struct moat_fit_report r;
	size_t doubts = 0;

	(void)state;
	check("tests/fixtures/bpf/fit_stores.bpf.o", &nfp, &r);
	dump("fit_stores", &r);
	assert_int_equal(count(&r, MOAT_FIT_MAP_STORE, "fit_store"), 1);
	assert_int_equal(count(&r, MOAT_FIT_MAP_STORE, "fit_spill"), 1);
	assert_int_equal(count(&r, MOAT_FIT_MAP_STORE, "fit_mix"), 1);
	assert_int_equal(count(&r, MOAT_FIT_PTR_MIX, "fit_mix"), 1);
	assert_int_equal(count(&r, MOAT_FIT_MAP_STORE, "fit_doubt"), 1);
	for (size_t i = 0; i < r.nviol; i++) {
		if (r.viol[i].kind != MOAT_FIT_MAP_STORE)
			continue;
		doubts += r.viol[i].doubt;
		/* only the pointer read from the caller's stack is in doubt */
		assert_true(r.viol[i].doubt == !strcmp(r.viol[i].prog, "fit_doubt"));
	}
	assert_int_equal(doubts, 1);
	assert_int_equal(count(&r, MOAT_FIT_CTX_STORE, "fit_ctx"), 1);
	assert_int_equal(count(&r, MOAT_FIT_MAP_WORD, "fit_words"), 1);
	assert_int_equal(count(&r, MOAT_FIT_MAP_OFFSET, "fit_words"), 1);
	assert_int_equal(count(&r, MOAT_FIT_STACK_VAR, "fit_words"), 1);
	assert_located(&r);
	moat_fit_report_free(&r);

	/* a device that took stores into map values would not mind them */
	{
		struct moat_nic_profile p = nfp;
		p.off.map_value_stores = true;
		check("tests/fixtures/bpf/fit_stores.bpf.o", &p, &r);
		assert_int_equal(r.nkind[MOAT_FIT_MAP_STORE], 0);
		assert_int_equal(r.nkind[MOAT_FIT_PTR_MIX], 1);
		moat_fit_report_free(&r);
	}
}

static void test_limits_fixture(void **state)
{
	struct moat_fit_report r;

	(void)state;
	check("tests/fixtures/bpf/fit_limits.bpf.o", &nfp, &r);
	dump("fit_limits", &r);
	assert_int_equal(count(&r, MOAT_FIT_INSNS, "fit_long"), 1);
	assert_int_equal(count(&r, MOAT_FIT_STACK, "fit_stack"), 1);
	assert_int_equal(r.nviol, 2);
	for (size_t i = 0; i < r.nprogs; i++)
		if (!strcmp(r.progs[i].name, "fit_stack")) {
			/* two 320-byte frames: 320 -> 320, 320 + 4 + 32 -> 384 */
			assert_int_equal(r.progs[i].stack, 704);
			assert_int_equal(r.progs[i].funcs, 2);
		}
	moat_fit_report_free(&r);
}

/* Together the fixtures exercise every kind the checker knows. */
static void test_every_kind_exercised(void **state)
{
	static const char *const fx[] = { "maps", "calls", "insns", "stores", "limits" };
	size_t seen[MOAT_FIT_KIND_MAX] = { 0 };
	char rel[128];

	(void)state;
	for (size_t i = 0; i < sizeof(fx) / sizeof(fx[0]); i++) {
		struct moat_fit_report r;
		snprintf(rel, sizeof(rel), "tests/fixtures/bpf/fit_%s.bpf.o", fx[i]);
		check(rel, &nfp, &r);
		for (int k = 0; k < MOAT_FIT_KIND_MAX; k++)
			seen[k] += r.nkind[k];
		moat_fit_report_free(&r);
	}
	for (int k = 0; k < MOAT_FIT_KIND_MAX; k++)
		if (!seen[k])
			fail_msg("no fixture shows violation kind %s", moat_fit_kind_name(k));
}

static void test_errors(void **state)
{
	struct moat_nic_profile veth;
	struct moat_fit_report r;
	char err[512];

	(void)state;
	assert_int_equal(moat_fit_check("/nonexistent.bpf.o", &nfp, &r, err, sizeof(err)), -ENOENT);
	assert_true(strstr(err, "/nonexistent.bpf.o") != NULL);
	moat_fit_report_free(&r);
	assert_int_equal(moat_fit_check("hw/nfp.json", &nfp, &r, err, sizeof(err)) < 0, 1);
	moat_fit_report_free(&r);
	assert_int_equal(moat_nic_profile_load("hw/veth.json", &veth, err, sizeof(err)), 0);
	assert_int_equal(moat_fit_check(obj_path("xdp/prefilter.bpf.o"), &veth, &r, err, sizeof(err)),
			 -EOPNOTSUPP);
	assert_true(strstr(err, "no XDP hardware offload") != NULL);
	moat_fit_report_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefilter_fits),       cmocka_unit_test(test_enforcer_does_not_fit),
		cmocka_unit_test(test_clean_fixture),        cmocka_unit_test(test_maps_fixture),
		cmocka_unit_test(test_calls_fixture),        cmocka_unit_test(test_insns_fixture),
		cmocka_unit_test(test_stores_fixture),       cmocka_unit_test(test_limits_fixture),
		cmocka_unit_test(test_every_kind_exercised), cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
