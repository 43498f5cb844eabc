// SPDX-License-Identifier: Apache-2.0
/* NIC profiles, the interface probe and the attach planner (offload/plan.h):
 *   - every file in hw/ validates (closed schema, values, consistency) and
 *     the set is coherent (names = file names, one profile per driver, a
 *     default, hardware offload exactly where the driver has it);
 *   - malformed profiles are refused, naming the field;
 *   - the probe asks the kernel (ethtool driver info, the netdev family's
 *     XDP features) on veth and lo in a private network namespace;
 *   - the plan decision for each combination of profile, probe and options;
 *   - carrying a plan out where the hardware step must fail (a veth): the
 *     pre-filter is loaded for the device, the kernel refuses, the reason is
 *     recorded, the full program falls back to native, and no pre-filter is
 *     left behind.
 * Run from the source tree (tests/run-all does). */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <jansson.h>
#include <cmocka.h>

#include "dp.h"
#include "dpfix.h"
#include "plan.h"

/* ---- the shipped profiles -------------------------------------------------- */
static void test_profiles_validate(void **state)
{
	DIR *d = opendir("hw");
	struct dirent *de;
	struct moat_nic_profile all[32];
	char names[32][64];
	size_t n = 0;
	bool have_default = false;

	(void)state;
	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[512], err[512], stem[64];
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".json"))
			continue;
		assert_true(n < 32);
		snprintf(path, sizeof(path), "hw/%s", de->d_name);
		if (moat_nic_profile_load(path, &all[n], err, sizeof(err)))
			fail_msg("%s", err);
		snprintf(stem, sizeof(stem), "%.*s", (int)(l - 5), de->d_name);
		/* the file is named after the profile */
		assert_string_equal(all[n].name, stem);
		snprintf(names[n], sizeof(names[n]), "%s", stem);
		have_default |= !strcmp(stem, "default");
		n++;
	}
	closedir(d);
	assert_true(have_default);
	assert_true(n >= 9);
	for (size_t i = 0; i < n; i++) {
		const struct moat_nic_profile *p = &all[i];
		/* only nfp has upstream XDP hardware offload */
		assert_int_equal(p->off.supported, !strcmp(names[i], "nfp"));
		assert_true(p->modes & (1u << MOAT_MODE_GENERIC));
		assert_int_equal(!p->ndrivers, !strcmp(names[i], "default"));
		/* a driver belongs to one profile */
		for (size_t j = 0; j < i; j++)
			for (size_t a = 0; a < p->ndrivers; a++)
				for (size_t b = 0; b < all[j].ndrivers; b++)
					if (!strcmp(p->drivers[a], all[j].drivers[b]))
						fail_msg("driver %s in %s and %s", p->drivers[a], names[i],
							 names[j]);
	}
}

static void test_nfp_profile_values(void **state)
{
	struct moat_nic_profile p;
	char err[512];
	static const __u32 helpers[] = { BPF_FUNC_map_lookup_elem,   BPF_FUNC_map_update_elem,
					 BPF_FUNC_map_delete_elem,   BPF_FUNC_get_prandom_u32,
					 BPF_FUNC_perf_event_output, BPF_FUNC_xdp_adjust_head,
					 BPF_FUNC_xdp_adjust_tail };

	(void)state;
	assert_int_equal(moat_nic_profile_load("hw/nfp.json", &p, err, sizeof(err)), 0);
	/* the driver source's constraints (docs/offload.md) */
	assert_int_equal(p.off.map_types, (1ull << BPF_MAP_TYPE_HASH) | (1ull << BPF_MAP_TYPE_ARRAY));
	assert_int_equal(p.off.host_map_types, 1ull << BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	assert_int_equal(p.off.map_flags, 0);
	assert_int_equal(p.off.isa, 3);
	assert_false(p.off.tail_calls);
	assert_false(p.off.lpm);
	assert_false(p.off.percpu_maps);
	assert_false(p.off.modulo);
	assert_false(p.off.map_value_stores);
	assert_true(p.off.bpf_calls);
	assert_true(p.off.map_keys_on_stack);
	assert_int_equal(p.off.atomics, MOAT_ATOMIC_ADD);
	assert_int_equal(p.off.perf_event_output, MOAT_PERF_CURRENT_CPU);
	assert_int_equal(p.off.max_elem_size, 64);
	assert_true(p.off.ctx_write_rx_queue);
	assert_int_equal(p.off.actions,
			 (1u << XDP_ABORTED) | (1u << XDP_DROP) | (1u << XDP_PASS) | (1u << XDP_TX));
	assert_int_equal(p.off.nhelpers, sizeof(helpers) / sizeof(helpers[0]));
	for (size_t i = 0; i < p.off.nhelpers; i++)
		assert_int_equal(p.off.helpers[i], helpers[i]);
	assert_true(p.off.fw_reported & MOAT_FW_MAX_INSNS);
	assert_true(p.features & MOAT_XDP_F_HW_OFFLOAD);
}

/* ---- malformed profiles ------------------------------------------------------- */
static json_t *nfp_json(void)
{
	json_error_t je;
	json_t *j = json_load_file("hw/nfp.json", 0, &je);
	assert_non_null(j);
	return j;
}

/* Writes j to a temporary file, loads it, expects a refusal naming what. */
static void refused(json_t *j, const char *what)
{
	char path[] = "/tmp/moat-profile-XXXXXX", err[512];
	struct moat_nic_profile p;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(json_dumpfd(j, fd, 0), 0);
	close(fd);
	json_decref(j);
	assert_int_equal(moat_nic_profile_load(path, &p, err, sizeof(err)), -EINVAL);
	unlink(path);
	if (!strstr(err, what))
		fail_msg("expected \"%s\" in: %s", what, err);
}

static void test_profiles_refused(void **state)
{
	json_t *j, *off;

	(void)state;
	j = nfp_json();
	json_object_set_new(json_object_get(j, "offload"), "max_insn", json_integer(10)); /* typo */
	refused(j, "offload.max_insn: unknown key");

	j = nfp_json();
	json_object_set_new(j, "schema", json_string("moat.io/nic-profile/v2"));
	refused(j, "profile.schema");

	j = nfp_json();
	json_object_set_new(json_object_get(j, "xdp"), "modes", json_pack("[s,s]", "hw", "native"));
	refused(j, "generic");

	j = nfp_json();
	off = json_object_get(j, "offload");
	json_object_set_new(off, "supported", json_false());
	refused(j, "offload.isa: unknown key"); /* an unsupported offload has no constraints */

	j = nfp_json();
	json_object_set_new(json_object_get(j, "offload"), "lpm", json_true());
	refused(j, "offload.lpm");

	j = nfp_json();
	json_array_append_new(json_object_get(json_object_get(j, "offload"), "helpers"),
			      json_pack("{s:i,s:s}", "id", 5, "name", "map_lookup_elem"));
	refused(j, "helper 5 is \"ktime_get_ns\"");

	j = nfp_json();
	json_object_set_new(json_object_get(j, "offload"), "isa", json_string("v9"));
	refused(j, "offload.isa");

	j = nfp_json();
	json_object_set_new(json_object_get(j, "offload"), "max_stack", json_integer(4096));
	refused(j, "offload.max_stack");

	j = nfp_json();
	json_object_set_new(json_object_get(j, "offload"), "map_types",
			    json_pack("[s,s,s]", "hash", "array", "perf_event_array"));
	refused(j, "both as offloaded and as host-side");

	j = nfp_json();
	json_object_set_new(json_object_get(j, "offload"), "atomics", json_pack("[s]", "nand"));
	refused(j, "offload.atomics[0]: unknown value");

	j = nfp_json();
	json_object_set_new(json_object_get(j, "offload"), "perf_event_output", json_string("none"));
	refused(j, "helper 25");

	j = nfp_json();
	json_object_set_new(json_object_get(j, "xdp"), "features", json_pack("[s]", "basic"));
	refused(j, "hw-offload");

	j = nfp_json();
	json_object_set_new(j, "drivers", json_pack("[s,s]", "nfp", "nfp"));
	refused(j, "listed twice");

	j = nfp_json();
	json_object_set_new(j, "drivers", json_array());
	refused(j, "not the default profile");
}

static void test_profile_find(void **state)
{
	struct moat_nic_profile p;
	char path[512], err[512];

	(void)state;
	assert_int_equal(moat_nic_profile_find("hw", "mlx5_core", &p, path, sizeof(path), err, sizeof(err)),
			 0);
	assert_string_equal(p.name, "mlx5");
	assert_string_equal(path, "hw/mlx5.json");
	assert_int_equal(moat_nic_profile_find("hw", "bnxt_en", &p, NULL, 0, err, sizeof(err)), 0);
	assert_string_equal(p.name, "bnxt");
	assert_int_equal(moat_nic_profile_find("hw", "nfp", &p, NULL, 0, err, sizeof(err)), 0);
	assert_true(p.off.supported);
	assert_int_equal(moat_nic_profile_find("hw", "e1000e", &p, path, sizeof(path), err, sizeof(err)), 0);
	assert_string_equal(p.name, "default");
	assert_int_equal(moat_nic_profile_find("hw", NULL, &p, NULL, 0, err, sizeof(err)), 0);
	assert_string_equal(p.name, "default");
	assert_int_equal(moat_nic_profile_find("/nonexistent", "nfp", &p, NULL, 0, err, sizeof(err)),
			 -EINVAL);
}

/* ---- plan decisions (pure) -------------------------------------------------------- */
static void load(const char *name, struct moat_nic_profile *p)
{
	char path[128], err[512];

	snprintf(path, sizeof(path), "hw/%s.json", name);
	if (moat_nic_profile_load(path, p, err, sizeof(err)))
		fail_msg("%s", err);
}

static void test_plan_decide(void **state)
{
	struct moat_nic_profile nfp, veth, def;
	struct moat_nic_probe pr;
	struct moat_plan_opts o = { .requested = MOAT_MODE_AUTO, .prefilter = true, .prefilter_fits = true };
	struct moat_attach_plan pl;

	(void)state;
	load("nfp", &nfp);
	load("veth", &veth);
	load("default", &def);
	memset(&pr, 0, sizeof(pr));

	/* nfp with the eBPF firmware: the kernel announces hw-offload */
	pr.have_features = true;
	pr.xdp_features = MOAT_XDP_F_BASIC | MOAT_XDP_F_HW_OFFLOAD;
	moat_plan_decide(&nfp, &pr, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_HW_PREFILTER);
	assert_true(pl.try_hw_prefilter);
	assert_int_equal(pl.full_mode, MOAT_MODE_NATIVE);
	assert_true(pl.full_may_fall_back);

	/* nfp with another firmware: the probe overrides the profile */
	pr.xdp_features = MOAT_XDP_F_BASIC;
	moat_plan_decide(&nfp, &pr, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_NATIVE);
	assert_false(pl.try_hw_prefilter);
	assert_non_null(strstr(pl.why[MOAT_PLAN_HW_PREFILTER], "no XDP hardware offload"));
	assert_non_null(strstr(pl.why[MOAT_PLAN_HW_PREFILTER], "kernel"));

	/* no probe answer: the profile decides */
	pr.have_features = false;
	moat_plan_decide(&nfp, &pr, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_HW_PREFILTER);
	moat_plan_decide(&nfp, NULL, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_HW_PREFILTER);

	/* a pre-filter that does not fit is never tried */
	o.prefilter_fits = false;
	moat_plan_decide(&nfp, NULL, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_NATIVE);
	assert_non_null(strstr(pl.why[MOAT_PLAN_HW_PREFILTER], "does not fit"));
	o.prefilter_fits = true;

	/* nor one in another namespace, nor one nobody wants */
	o.foreign_netns = true;
	moat_plan_decide(&nfp, NULL, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_NATIVE);
	o.foreign_netns = false;
	o.prefilter = false;
	moat_plan_decide(&nfp, NULL, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_NATIVE);
	o.prefilter = true;

	/* operator's modes */
	o.requested = MOAT_MODE_GENERIC;
	moat_plan_decide(&nfp, NULL, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_GENERIC);
	assert_int_equal(pl.full_mode, MOAT_MODE_GENERIC);
	o.requested = MOAT_MODE_NATIVE;
	moat_plan_decide(&nfp, NULL, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_NATIVE);
	assert_false(pl.full_may_fall_back);
	o.requested = MOAT_MODE_HW;
	moat_plan_decide(&veth, NULL, &o, &pl); /* hw asked where there is none */
	assert_int_equal(pl.kind, MOAT_PLAN_NATIVE);
	assert_true(pl.full_may_fall_back);
	o.requested = MOAT_MODE_AUTO;

	/* native drivers */
	moat_plan_decide(&veth, NULL, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_NATIVE);
	assert_true(pl.full_may_fall_back);

	/* a driver the kernel says has no native XDP */
	pr.have_features = true;
	pr.xdp_features = 0;
	moat_plan_decide(&def, &pr, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_GENERIC);
	assert_non_null(strstr(pl.why[MOAT_PLAN_NATIVE], "no native XDP"));
	/* nfp + hw-offload but native missing: no pre-filter without its program */
	pr.xdp_features = MOAT_XDP_F_HW_OFFLOAD;
	moat_plan_decide(&nfp, &pr, &o, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_GENERIC);
	assert_non_null(strstr(pl.why[MOAT_PLAN_HW_PREFILTER], "native"));
}

/* ---- probe and execution (root, a private network namespace) ------------------- */
static int ifx[2];

static int netns_setup(void **state)
{
	static const char *const names[2] = { "moff0", "moff1" };

	(void)state;
	if (geteuid() != 0)
		return 0;
	return fix_private_netns(names, ifx);
}

static void test_probe(void **state)
{
	struct moat_nic_probe pr;
	struct moat_nic_profile p;
	char err[512];

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(moat_nic_probe(ifx[0], &pr), 0);
	printf("probe %s: driver %s, features 0x%llx (%s), why: %s\n", pr.ifname, pr.driver,
	       (unsigned long long)pr.xdp_features, pr.have_features ? "kernel" : "unknown", pr.why);
	assert_string_equal(pr.ifname, "moff0");
	assert_true(pr.have_driver);
	assert_string_equal(pr.driver, "veth");
	/* kernel 6.3+ answers; veth has native XDP, no hardware offload */
	assert_true(pr.have_features);
	assert_true(pr.xdp_features & MOAT_XDP_F_BASIC);
	assert_false(pr.xdp_features & MOAT_XDP_F_HW_OFFLOAD);
	assert_int_equal(moat_nic_profile_find("hw", pr.driver, &p, NULL, 0, err, sizeof(err)), 0);
	assert_string_equal(p.name, "veth");
	/* the profile's expectations agree with what the kernel says */
	assert_int_equal(pr.xdp_features & p.features & MOAT_XDP_F_BASIC, MOAT_XDP_F_BASIC);

	/* lo: no ethtool driver info, no XDP features */
	assert_int_equal(moat_nic_probe((int)if_nametoindex("lo"), &pr), 0);
	assert_false(pr.have_driver && !strcmp(pr.driver, "veth"));
	assert_true(pr.have_features);
	assert_false(pr.xdp_features & MOAT_XDP_F_BASIC);

	assert_int_equal(moat_nic_probe(999999, &pr), -ENODEV);
}

static bool xdp_attached(int ifindex, __u8 *mode)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);

	if (bpf_xdp_query(ifindex, 0, &q))
		return false;
	*mode = q.attach_mode;
	return q.attach_mode != XDP_ATTACHED_NONE;
}

static void test_execute_fallback(void **state)
{
	char pin[128];
	struct moat_dp_opts o = { .reset = true,
				  .max_policy = 1024,
				  .max_ips = 256,
				  .max_ct = 1024,
				  .max_identities = 256,
				  .max_rules = 256 };
	struct moat_nic_profile nfp;
	struct moat_nic_probe pr;
	struct moat_plan_opts po = { .requested = MOAT_MODE_AUTO, .prefilter = true, .prefilter_fits = true };
	struct moat_attach_plan pl;
	struct moat_attach_req req = {
		.hook = MOAT_HOOK_UPLINK, .netns_fd = -1, .mode = MOAT_MODE_AUTO, .name = "uplink-moff0"
	};
	struct moat_plan_result res;
	struct moat_dp *dp;
	__u8 mode = 0;
	int rc;

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(pin, sizeof(pin), "/sys/fs/bpf/moat-test-offload-%d", getpid());
	o.pin_dir = pin;
	rc = moat_dp_open(&o, &dp, NULL);
	if (rc)
		fail_msg("datapath: %s", strerror(-rc));

	/* pretend the veth were an nfp with the eBPF firmware: the plan tries
	 * the hardware pre-filter, the kernel refuses it on a veth */
	load("nfp", &nfp);
	assert_int_equal(moat_nic_probe(ifx[0], &pr), 0);
	pr.xdp_features |= MOAT_XDP_F_HW_OFFLOAD;
	moat_plan_decide(&nfp, &pr, &po, &pl);
	assert_int_equal(pl.kind, MOAT_PLAN_HW_PREFILTER);

	req.ifindex = ifx[0];
	rc = moat_plan_execute(dp, &req, &pl, NULL, &res);
	printf("executed: %s; hw: %s\n", moat_plan_kind_name(res.kind), res.why[MOAT_PLAN_HW_PREFILTER]);
	assert_int_equal(rc, 0);
	assert_int_equal(res.kind, MOAT_PLAN_NATIVE);
	assert_null(res.pf);
	assert_int_equal(res.full.mode, MOAT_MODE_NATIVE);
	assert_non_null(strstr(res.why[MOAT_PLAN_HW_PREFILTER], "pre-filter"));
	assert_non_null(strstr(res.why[MOAT_PLAN_HW_PREFILTER], "hardware offload"));
	/* the full program runs natively; nothing sits in the hardware slot */
	assert_true(xdp_attached(ifx[0], &mode));
	assert_int_equal(mode, XDP_ATTACHED_DRV);

	/* generic forced: the plan says so, the kernel does so */
	assert_int_equal(moat_dp_detach(dp, "uplink-moff0"), 0);
	po.requested = MOAT_MODE_GENERIC;
	moat_plan_decide(&nfp, &pr, &po, &pl);
	req.mode = MOAT_MODE_GENERIC;
	assert_int_equal(moat_plan_execute(dp, &req, &pl, NULL, &res), 0);
	assert_int_equal(res.kind, MOAT_PLAN_GENERIC);
	assert_true(xdp_attached(ifx[0], &mode));
	assert_int_equal(mode, XDP_ATTACHED_SKB);
	assert_int_equal(moat_dp_detach(dp, "uplink-moff0"), 0);

	/* the full program cannot attach at all (no such device): no
	 * pre-filter is left, the error comes back */
	po.requested = MOAT_MODE_AUTO;
	moat_plan_decide(&nfp, &pr, &po, &pl);
	req.ifindex = 999999;
	req.mode = MOAT_MODE_AUTO;
	assert_true(moat_plan_execute(dp, &req, &pl, NULL, &res) < 0);
	assert_null(res.pf);

	moat_dp_close(dp);
	assert_int_equal(moat_dp_uninstall(pin), 0);
}

/* The pin directory removed under a running process (rm -rf): the links it
 * holds stay attached, moat_dp_repin pins everything again; moat_dp_uninstall
 * detaches links even while they are held, and repin then lets them go. */
static void test_repin(void **state)
{
	char pin[128], path[256], cmd[300];
	struct moat_dp_opts o = { .reset = true,
				  .max_policy = 1024,
				  .max_ips = 256,
				  .max_ct = 1024,
				  .max_identities = 256,
				  .max_rules = 256 };
	struct moat_attach_req req = {
		.hook = MOAT_HOOK_FROM_POD, .netns_fd = -1, .mode = MOAT_MODE_NATIVE, .name = "h_moff1"
	};
	struct moat_attach_info info;
	struct moat_dp *dp;
	__u8 mode = 0;
	int rc;

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(pin, sizeof(pin), "/sys/fs/bpf/moat-test-repin-%d", getpid());
	o.pin_dir = pin;
	rc = moat_dp_open(&o, &dp, NULL);
	if (rc)
		fail_msg("datapath: %s", strerror(-rc));
	req.ifindex = ifx[1];
	assert_int_equal(moat_dp_attach(dp, &req, &info), 0);
	assert_int_equal(moat_dp_repin(dp), 0); /* nothing missing */

	snprintf(cmd, sizeof(cmd), "rm -rf %s", pin);
	assert_int_equal(system(cmd), 0);
	assert_true(xdp_attached(ifx[1], &mode)); /* held: still attached */
	rc = moat_dp_repin(dp);
	assert_true(rc > 2); /* the maps and the link */
	snprintf(path, sizeof(path), "%s/links/h_moff1", pin);
	assert_int_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/moat_meta", pin);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(moat_dp_repin(dp), 0);

	/* the explicit uninstall detaches what we hold; repin lets it go */
	assert_int_equal(moat_dp_uninstall(pin), 0);
	assert_false(xdp_attached(ifx[1], &mode));
	assert_true(moat_dp_repin(dp) > 0);
	snprintf(path, sizeof(path), "%s/links/h_moff1", pin);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(moat_dp_detach(dp, "h_moff1"), -ENOENT);

	/* attached again; its pin removed; detach still detaches */
	assert_int_equal(moat_dp_attach(dp, &req, &info), 0);
	assert_int_equal(unlink(path), 0);
	assert_true(xdp_attached(ifx[1], &mode));
	assert_int_equal(moat_dp_detach(dp, "h_moff1"), 0);
	assert_false(xdp_attached(ifx[1], &mode));

	moat_dp_close(dp);
	assert_int_equal(moat_dp_uninstall(pin), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_profiles_validate), cmocka_unit_test(test_nfp_profile_values),
		cmocka_unit_test(test_profiles_refused),  cmocka_unit_test(test_profile_find),
		cmocka_unit_test(test_plan_decide),       cmocka_unit_test(test_probe),
		cmocka_unit_test(test_execute_fallback),  cmocka_unit_test(test_repin),
	};

	return cmocka_run_group_tests(tests, netns_setup, NULL);
}
