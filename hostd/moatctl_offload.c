// SPDX-License-Identifier: Apache-2.0
/* moatctl offload: the NIC side of the datapath, offline (no daemon).
 *
 *   moatctl offload check --profile hw/nfp.json OBJECT [--json]
 *       does a built BPF object fit the profile's hardware offload?
 *       exit 0: fits, 1: violations (each with program, instruction,
 *       source line), 2: usage or unreadable input.
 *   moatctl offload probe IFNAME [--profiles DIR] [--object OBJECT] [--json]
 *       what the kernel says of the interface (driver, XDP features), the
 *       profile that applies, and the attach plan moatd would try.
 *   moatctl offload profiles [DIR]
 *       validates every profile file (exit 1 on the first bad one).
 *
 * Wired into moatctl.c by one dispatch line:
 *   else if (!strcmp(argv[0], "offload")) rc = moatctl_offload_main(argc, argv);
 * (argv[0] is "offload").  JSON: --json (moatctl's main takes "-o json" for
 * itself; "-o json" reaches here only when it is not the last option). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>

#include "fitcheck.h"
#include "plan.h"

int moatctl_offload_main(int argc, char **argv);

static void usage(FILE *f)
{
	fprintf(f, "usage: moatctl offload check --profile FILE OBJECT [--json]\n"
		   "       moatctl offload probe IFNAME [--profiles DIR] [--object OBJECT] [--json]\n"
		   "       moatctl offload profiles [DIR]\n");
}

static const char *type_name(__u32 t)
{
	const char *n = libbpf_bpf_map_type_str(t);
	return n ? n : "?";
}

static json_t *report_json(const char *obj, const struct moat_fit_report *r)
{
	json_t *j = json_object(), *progs = json_array(), *maps = json_array(), *vs = json_array();

	json_object_set_new(j, "object", json_string(obj));
	json_object_set_new(j, "profile", json_string(r->profile));
	json_object_set_new(j, "fits", json_boolean(r->nviol == 0));
	for (size_t i = 0; i < r->nprogs; i++) {
		const struct moat_fit_prog *p = &r->progs[i];
		json_t *h = json_array();
		for (__u32 id = 0; id < 64 * MOAT_FIT_HELPER_WORDS; id++)
			if (p->helpers[id / 64] & (1ull << (id % 64)))
				json_array_append_new(h, json_pack("{s:i,s:s}", "id", (int)id, "name",
								   moat_bpf_helper_name(id) ?
									   moat_bpf_helper_name(id) :
									   "?"));
		json_array_append_new(progs,
				      json_pack("{s:s,s:s,s:i,s:i,s:i,s:o}", "name", p->name, "section",
						p->section, "insns", (int)p->insns, "functions",
						(int)p->funcs, "stack", (int)p->stack, "helpers", h));
	}
	for (size_t i = 0; i < r->nmaps; i++) {
		const struct moat_fit_map *m = &r->maps[i];
		json_array_append_new(
			maps, json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:b,s:b}", "name", m->name, "type",
					type_name(m->type), "key_size", (int)m->key_size, "value_size",
					(int)m->value_size, "max_entries", (int)m->max_entries, "flags",
					(int)m->flags, "internal", m->internal, "on_device", m->on_device));
	}
	for (size_t i = 0; i < r->nviol; i++) {
		const struct moat_fit_violation *v = &r->viol[i];
		json_t *o = json_pack("{s:s,s:s,s:b}", "kind", moat_fit_kind_name(v->kind), "message", v->msg,
				      "doubt", v->doubt);
		if (v->prog[0])
			json_object_set_new(o, "program", json_string(v->prog));
		if (v->func[0])
			json_object_set_new(o, "function", json_string(v->func));
		if (v->section[0])
			json_object_set_new(o, "section", json_string(v->section));
		if (v->insn >= 0)
			json_object_set_new(o, "insn", json_integer(v->insn));
		if (v->map[0])
			json_object_set_new(o, "map", json_string(v->map));
		if (v->file[0]) {
			json_object_set_new(o, "file", json_string(v->file));
			json_object_set_new(o, "line", json_integer(v->line));
			json_object_set_new(o, "source", json_string(v->src));
		}
		json_array_append_new(vs, o);
	}
	json_object_set_new(j, "entries", json_integer((json_int_t)r->entries));
	json_object_set_new(j, "programs", progs);
	json_object_set_new(j, "maps", maps);
	json_object_set_new(j, "violations", vs);
	json_object_set_new(j, "violations_not_listed", json_integer((json_int_t)r->dropped));
	return j;
}

static void report_text(FILE *o, const char *obj, const struct moat_nic_profile *prof,
			const struct moat_fit_report *r)
{
	fprintf(o, "%s against profile %s: %s\n", obj, prof->name, r->nviol ? "DOES NOT FIT" : "fits");
	for (size_t i = 0; i < r->nprogs; i++) {
		const struct moat_fit_prog *p = &r->progs[i];
		bool first = true;
		fprintf(o,
			"  program %s (%s): %u insns (limit %u), %u function%s, stack %u B (limit %u), helpers:",
			p->name, p->section, p->insns, prof->off.max_insns, p->funcs,
			p->funcs == 1 ? "" : "s", p->stack, prof->off.max_stack);
		for (__u32 id = 0; id < 64 * MOAT_FIT_HELPER_WORDS; id++)
			if (p->helpers[id / 64] & (1ull << (id % 64))) {
				const char *n = moat_bpf_helper_name(id);
				fprintf(o, "%s %s(%u)", first ? "" : ",", n ? n : "?", id);
				first = false;
			}
		fprintf(o, "%s\n", first ? " none" : "");
	}
	for (size_t i = 0; i < r->nmaps; i++) {
		const struct moat_fit_map *m = &r->maps[i];
		fprintf(o, "  map %s: %s, key %u B, value %u B, %u entries, flags 0x%x%s%s\n", m->name,
			type_name(m->type), m->key_size, m->value_size, m->max_entries, m->flags,
			m->on_device ? "" : " (stays on the host)", m->internal ? " (global data)" : "");
	}
	fprintf(o, "  device entries: %llu of the shared budget of %llu\n", (unsigned long long)r->entries,
		(unsigned long long)prof->off.max_entries);
	if (r->nviol) {
		fprintf(o, "  %zu violation%s%s:\n", r->nviol + r->dropped,
			r->nviol + r->dropped == 1 ? "" : "s", r->dropped ? " (the first ones listed)" : "");
		for (int k = 0; k < MOAT_FIT_KIND_MAX; k++)
			if (r->nkind[k])
				fprintf(o, "    %-22s %zu\n", moat_fit_kind_name(k), r->nkind[k]);
	}
	for (size_t i = 0; i < r->nviol; i++) {
		const struct moat_fit_violation *v = &r->viol[i];
		fprintf(o, "  [%s]%s ", moat_fit_kind_name(v->kind), v->doubt ? " (in doubt)" : "");
		if (v->prog[0])
			fprintf(o, "%s", v->prog);
		if (v->func[0] && strcmp(v->func, v->prog))
			fprintf(o, " -> %s()", v->func);
		if (v->insn >= 0)
			fprintf(o, " insn %d (section %s)", v->insn, v->section);
		if (v->file[0])
			fprintf(o, " %s:%d", v->file, v->line);
		fprintf(o, "%s%s\n", v->prog[0] ? ": " : "", v->msg);
		if (v->src[0])
			fprintf(o, "        | %s\n", v->src);
	}
	if (!r->nviol && prof->off.fw_reported)
		fprintf(o, "  limits marked firmware-reported are typical values: the NIC's own "
			   "figures decide (docs/offload.md)\n");
}

static int cmd_check(int argc, char **argv, bool json)
{
	static const struct option lo[] = { { "profile", required_argument, NULL, 'p' },
					    { "output", required_argument, NULL, 'o' },
					    { 0 } };
	const char *profile = NULL, *obj;
	struct moat_nic_profile prof;
	struct moat_fit_report r;
	char err[512];
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:o:", lo, NULL)) != -1) {
		if (c == 'p')
			profile = optarg;
		else if (c == 'o')
			json = !strcmp(optarg, "json");
		else
			return usage(stderr), 2;
	}
	if (!profile || optind != argc - 1)
		return usage(stderr), 2;
	obj = argv[optind];
	if (moat_nic_profile_load(profile, &prof, err, sizeof(err))) {
		fprintf(stderr, "moatctl offload check: %s\n", err);
		return 2;
	}
	rc = moat_fit_check(obj, &prof, &r, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "moatctl offload check: %s\n", err);
		moat_fit_report_free(&r);
		return 2;
	}
	if (json) {
		json_t *j = report_json(obj, &r);
		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		report_text(stdout, obj, &prof, &r);
	}
	rc = r.nviol ? 1 : 0;
	moat_fit_report_free(&r);
	return rc;
}

static int cmd_probe(int argc, char **argv, bool json)
{
	static const struct option lo[] = { { "profiles", required_argument, NULL, 'd' },
					    { "object", required_argument, NULL, 'b' },
					    { "output", required_argument, NULL, 'o' },
					    { 0 } };
	const char *dir = MOAT_NIC_PROFILE_DIR, *obj = NULL;
	struct moat_nic_profile prof;
	struct moat_nic_probe pr;
	struct moat_plan_opts po = { .requested = MOAT_MODE_AUTO, .prefilter = true };
	struct moat_attach_plan plan;
	char err[512], path[4096];
	int c, ifindex;

	optind = 1;
	while ((c = getopt_long(argc, argv, "d:b:o:", lo, NULL)) != -1) {
		if (c == 'd')
			dir = optarg;
		else if (c == 'b')
			obj = optarg;
		else if (c == 'o')
			json = !strcmp(optarg, "json");
		else
			return usage(stderr), 2;
	}
	if (optind != argc - 1)
		return usage(stderr), 2;
	ifindex = (int)if_nametoindex(argv[optind]);
	if (!ifindex || moat_nic_probe(ifindex, &pr)) {
		fprintf(stderr, "moatctl offload probe: %s: no such interface\n", argv[optind]);
		return 2;
	}
	if (moat_nic_profile_find(dir, pr.have_driver ? pr.driver : NULL, &prof, path, sizeof(path), err,
				  sizeof(err))) {
		fprintf(stderr, "moatctl offload probe: %s\n", err);
		return 2;
	}
	if (obj && prof.off.supported) {
		struct moat_fit_report r;
		if (moat_fit_check(obj, &prof, &r, err, sizeof(err)) == 0)
			po.prefilter_fits = r.nviol == 0;
		moat_fit_report_free(&r);
	} else if (!obj) {
		po.prefilter_fits = true; /* assume the shipped pre-filter (CI checks it) */
	}
	moat_plan_decide(&prof, &pr, &po, &plan);
	if (json) {
		json_t *j = json_object(), *feat = json_array(), *why = json_object();
		for (unsigned b = 0; b < MOAT_XDP_F_COUNT; b++)
			if (pr.xdp_features & (1ull << b))
				json_array_append_new(feat, json_string(moat_xdp_feature_name(b)));
		for (int k = 0; k < MOAT_PLAN_KIND_MAX; k++)
			if (plan.why[k][0])
				json_object_set_new(why, moat_plan_kind_name(k), json_string(plan.why[k]));
		json_object_set_new(j, "interface", json_string(pr.ifname));
		if (pr.have_driver) {
			json_object_set_new(j, "driver", json_string(pr.driver));
			json_object_set_new(j, "firmware", json_string(pr.fw_version));
			json_object_set_new(j, "bus", json_string(pr.bus_info));
		}
		if (pr.have_features)
			json_object_set_new(j, "xdp_features", feat);
		else
			json_decref(feat);
		if (pr.why[0])
			json_object_set_new(j, "probe_incomplete", json_string(pr.why));
		json_object_set_new(j, "profile", json_string(prof.name));
		json_object_set_new(j, "profile_file", json_string(path));
		json_object_set_new(j, "plan", json_string(moat_plan_kind_name(plan.kind)));
		json_object_set_new(j, "full_program_mode", json_string(moat_mode_name(plan.full_mode)));
		json_object_set_new(j, "not_chosen", why);
		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
		return 0;
	}
	printf("interface %s: driver %s%s%s\n", pr.ifname, pr.have_driver ? pr.driver : "?",
	       pr.have_driver && pr.fw_version[0] ? ", firmware " : "", pr.have_driver ? pr.fw_version : "");
	printf("  XDP features (kernel): ");
	if (pr.have_features) {
		bool first = true;
		for (unsigned b = 0; b < MOAT_XDP_F_COUNT; b++)
			if (pr.xdp_features & (1ull << b)) {
				printf("%s%s", first ? "" : ", ", moat_xdp_feature_name(b));
				first = false;
			}
		printf("%s\n", first ? "none" : "");
	} else {
		printf("not known\n");
	}
	if (pr.why[0])
		printf("  probe incomplete: %s\n", pr.why);
	printf("  profile: %s (%s)%s\n", prof.name, path,
	       pr.have_features ? ", overridden by the kernel's features" : "");
	printf("  plan: %s (full program %s%s)\n", moat_plan_kind_name(plan.kind),
	       moat_mode_name(plan.full_mode), plan.full_may_fall_back ? ", generic if refused" : "");
	for (int k = 0; k < MOAT_PLAN_KIND_MAX; k++)
		if (plan.why[k][0])
			printf("  not %s: %s\n", moat_plan_kind_name(k), plan.why[k]);
	return 0;
}

static int cmd_profiles(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : MOAT_NIC_PROFILE_DIR;
	struct dirent *de;
	DIR *d = opendir(dir);
	int bad = 0, n = 0;

	if (!d) {
		fprintf(stderr, "moatctl offload profiles: %s: %s\n", dir, strerror(errno));
		return 2;
	}
	while ((de = readdir(d))) {
		struct moat_nic_profile p;
		char path[4096], err[512];
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n++;
		if (moat_nic_profile_load(path, &p, err, sizeof(err))) {
			printf("BAD  %s\n", err);
			bad++;
			continue;
		}
		printf("ok   %-18s %-12s modes:%s%s%s%s\n", de->d_name, p.name,
		       p.modes & (1u << MOAT_MODE_HW) ? " hw" : "",
		       p.modes & (1u << MOAT_MODE_NATIVE) ? " native" : "",
		       p.modes & (1u << MOAT_MODE_GENERIC) ? " generic" : "",
		       p.off.supported ? " (hardware offload)" : "");
	}
	closedir(d);
	printf("%d profile%s, %d bad\n", n, n == 1 ? "" : "s", bad);
	return bad ? 1 : 0;
}

int moatctl_offload_main(int argc, char **argv)
{
	bool json = false;

	/* "-o json" or "--json" anywhere (moatctl's main keeps a trailing
	 * "-o json" for itself: --json always reaches here) */
	for (int i = 1; i < argc; i++) {
		int n = 0;
		if (!strcmp(argv[i], "--json"))
			n = 1, json = true;
		else if (!strcmp(argv[i], "-o") && i + 1 < argc)
			n = 2, json = !strcmp(argv[i + 1], "json");
		if (n) {
			memmove(&argv[i], &argv[i + n], (size_t)(argc - i - n) * sizeof(char *));
			argc -= n;
			break;
		}
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1, json);
	if (!strcmp(argv[1], "probe"))
		return cmd_probe(argc - 1, argv + 1, json);
	if (!strcmp(argv[1], "profiles"))
		return cmd_profiles(argc - 1, argv + 1);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
