// SPDX-License-Identifier: Apache-2.0
/* NIC profiles, the interface probe and the attach plan; see plan.h. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <linux/bpf.h>
#include <linux/ethtool.h>
#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <jansson.h>

#include "plan.h"
#include "pf.h"

/* include/uapi/linux/netdev.h (not in every libc's kernel headers) */
#define NETDEV_FAMILY_NAME_           "netdev"
#define NETDEV_CMD_DEV_GET_           1
#define NETDEV_A_DEV_IFINDEX_         1
#define NETDEV_A_DEV_XDP_FEATURES_    3
#define NETDEV_A_DEV_XDP_ZC_MAX_SEGS_ 4

static const char *const feature_names[MOAT_XDP_F_COUNT] = {
	"basic", "redirect", "ndo-xmit", "xsk-zerocopy", "hw-offload", "rx-sg", "ndo-xmit-sg",
};

const char *moat_xdp_feature_name(unsigned bit)
{
	return bit < MOAT_XDP_F_COUNT ? feature_names[bit] : NULL;
}

#define HELPER_NAME(x) [BPF_FUNC_##x] = #x
static const char *const helper_names[__BPF_FUNC_MAX_ID] = { __BPF_FUNC_MAPPER(HELPER_NAME) };

const char *moat_bpf_helper_name(__u32 id)
{
	return id < __BPF_FUNC_MAX_ID && id ? helper_names[id] : NULL;
}

static const char *const plan_names[MOAT_PLAN_KIND_MAX] = {
	[MOAT_PLAN_HW_PREFILTER] = "hw-prefilter+native",
	[MOAT_PLAN_NATIVE] = "native",
	[MOAT_PLAN_GENERIC] = "generic",
};

const char *moat_plan_kind_name(enum moat_plan_kind k)
{
	return k < MOAT_PLAN_KIND_MAX ? plan_names[k] : "?";
}

/* ---- profiles ---------------------------------------------------------------- */
struct named_bit {
	const char *name;
	unsigned bit;
};

static const struct named_bit map_type_names[] = { { "hash", BPF_MAP_TYPE_HASH },
						   { "array", BPF_MAP_TYPE_ARRAY },
						   { "prog_array", BPF_MAP_TYPE_PROG_ARRAY },
						   { "perf_event_array", BPF_MAP_TYPE_PERF_EVENT_ARRAY },
						   { "percpu_hash", BPF_MAP_TYPE_PERCPU_HASH },
						   { "percpu_array", BPF_MAP_TYPE_PERCPU_ARRAY },
						   { "lru_hash", BPF_MAP_TYPE_LRU_HASH },
						   { "lru_percpu_hash", BPF_MAP_TYPE_LRU_PERCPU_HASH },
						   { "lpm_trie", BPF_MAP_TYPE_LPM_TRIE },
						   { "array_of_maps", BPF_MAP_TYPE_ARRAY_OF_MAPS },
						   { "hash_of_maps", BPF_MAP_TYPE_HASH_OF_MAPS },
						   { "devmap", BPF_MAP_TYPE_DEVMAP },
						   { "cpumap", BPF_MAP_TYPE_CPUMAP },
						   { "xskmap", BPF_MAP_TYPE_XSKMAP },
						   { "ringbuf", BPF_MAP_TYPE_RINGBUF },
						   { NULL, 0 } };

static const struct named_bit map_flag_names[] = {
	{ "no_prealloc", 0 }, { "no_common_lru", 1 },  { "numa_node", 2 }, { "rdonly", 3 },
	{ "wronly", 4 },      { "stack_build_id", 5 }, { "zero_seed", 6 }, { "rdonly_prog", 7 },
	{ "wronly_prog", 8 }, { "clone", 9 },          { "mmapable", 10 }, { NULL, 0 }
};

static const struct named_bit atomic_names[] = { { "add", 0 },     { "and", 1 },   { "or", 2 },
						 { "xor", 3 },     { "fetch", 4 }, { "xchg", 5 },
						 { "cmpxchg", 6 }, { NULL, 0 } };

static const struct named_bit action_names[] = { { "aborted", XDP_ABORTED },   { "drop", XDP_DROP },
						 { "pass", XDP_PASS },         { "tx", XDP_TX },
						 { "redirect", XDP_REDIRECT }, { NULL, 0 } };

static const struct named_bit mode_names[] = {
	{ "hw", MOAT_MODE_HW }, { "native", MOAT_MODE_NATIVE }, { "generic", MOAT_MODE_GENERIC }, { NULL, 0 }
};

static const struct named_bit fw_names[] = { { "max_insns", 0 },         { "max_stack", 1 },
					     { "max_packet_offset", 2 }, { "max_maps", 3 },
					     { "max_entries", 4 },       { "max_key_size", 5 },
					     { "max_value_size", 6 },    { "max_elem_size", 7 },
					     { "helpers", 8 },           { NULL, 0 } };

struct pctx {
	char *err;
	size_t errlen;
};

/* bad(c, fmt, ...): records the error, is -EINVAL.  A macro so that the value
 * is visible to clang's static analyzer, which does not follow calls into
 * variadic functions (and would take every error path as returning 0). */
#define bad(c, ...) (bad_msg((c), __VA_ARGS__), -EINVAL)
__attribute__((format(printf, 2, 3))) static void bad_msg(struct pctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err && c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
}

/* Only the listed keys may appear. */
static int closed(struct pctx *c, const char *where, json_t *o, const char *const *keys)
{
	const char *k;
	json_t *v;

	if (!json_is_object(o))
		return bad(c, "%s: must be an object", where);
	json_object_foreach(o, k, v)
	{
		bool known = false;
		for (size_t i = 0; keys[i]; i++)
			known |= !strcmp(k, keys[i]);
		if (!known)
			return bad(c, "%s.%s: unknown key", where, k);
	}
	return 0;
}

static int get_str(struct pctx *c, json_t *o, const char *where, const char *key, bool required, char *out,
		   size_t outlen)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		if (required)
			return bad(c, "%s.%s: missing", where, key);
		return 0;
	}
	if (!json_is_string(v) || !json_string_length(v))
		return bad(c, "%s.%s: must be a non-empty string", where, key);
	if (json_string_length(v) >= outlen)
		return bad(c, "%s.%s: longer than %zu characters", where, key, outlen - 1);
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int get_bool(struct pctx *c, json_t *o, const char *where, const char *key, bool *out)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return bad(c, "%s.%s: missing", where, key);
	if (!json_is_boolean(v))
		return bad(c, "%s.%s: must be true or false", where, key);
	*out = json_is_true(v);
	return 0;
}

/* A positive integer within [1, max]; null allowed (0 = unknown) if nullok. */
static int get_uint(struct pctx *c, json_t *o, const char *where, const char *key, __u64 max, bool nullok,
		    __u64 *out)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return bad(c, "%s.%s: missing", where, key);
	if (json_is_null(v) && nullok) {
		*out = 0;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 1 || (__u64)json_integer_value(v) > max)
		return bad(c, "%s.%s: must be an integer from 1 to %llu%s", where, key,
			   (unsigned long long)max, nullok ? " (or null: unknown)" : "");
	*out = (__u64)json_integer_value(v);
	return 0;
}

/* A list of names from a table, unique, into a bit set. */
static int get_names(struct pctx *c, json_t *o, const char *where, const char *key,
		     const struct named_bit *tbl, bool nonempty, __u64 *out)
{
	json_t *v = json_object_get(o, key), *e;
	size_t i;

	*out = 0;
	if (!v)
		return bad(c, "%s.%s: missing", where, key);
	if (!json_is_array(v))
		return bad(c, "%s.%s: must be a list", where, key);
	if (nonempty && !json_array_size(v))
		return bad(c, "%s.%s: must not be empty", where, key);
	json_array_foreach(v, i, e)
	{
		const struct named_bit *nb;
		if (!json_is_string(e))
			return bad(c, "%s.%s[%zu]: must be a string", where, key, i);
		for (nb = tbl; nb->name && strcmp(nb->name, json_string_value(e)); nb++)
			;
		if (!nb->name)
			return bad(c, "%s.%s[%zu]: unknown value \"%s\"", where, key, i,
				   json_string_value(e));
		if (*out & (1ull << nb->bit))
			return bad(c, "%s.%s[%zu]: \"%s\" listed twice", where, key, i, nb->name);
		*out |= 1ull << nb->bit;
	}
	return 0;
}

static int get_text_list(struct pctx *c, json_t *o, const char *where, const char *key)
{
	json_t *v = json_object_get(o, key), *e;
	size_t i;

	if (!v)
		return 0;
	if (!json_is_array(v))
		return bad(c, "%s.%s: must be a list of strings", where, key);
	json_array_foreach(v, i, e) if (!json_is_string(e) || !json_string_length(e)) return bad(
		c, "%s.%s[%zu]: must be a non-empty string", where, key, i);
	return 0;
}

static int parse_offload(struct pctx *c, json_t *o, struct moat_nic_offload *off)
{
	static const char *const keys_off[] = { "supported", NULL };
	static const char *const keys_on[] = { "supported",
					       "isa",
					       "max_insns",
					       "max_stack",
					       "max_packet_offset",
					       "map_types",
					       "host_map_types",
					       "map_flags",
					       "max_maps",
					       "max_entries",
					       "max_key_size",
					       "max_value_size",
					       "max_elem_size",
					       "helpers",
					       "tail_calls",
					       "lpm",
					       "percpu_maps",
					       "perf_event_output",
					       "modulo",
					       "atomics",
					       "map_value_stores",
					       "bpf_calls",
					       "map_keys_on_stack",
					       "actions",
					       "ctx_writes",
					       "fw_reported",
					       "notes",
					       NULL };
	const char *w = "offload";
	json_t *v, *e;
	__u64 u, bits;
	size_t i;
	int rc;

	memset(off, 0, sizeof(*off));
	if (!json_is_object(o))
		return bad(c, "offload: must be an object");
	if ((rc = get_bool(c, o, w, "supported", &off->supported)))
		return rc;
	if (!off->supported)
		return closed(c, w, o, keys_off);
	if ((rc = closed(c, w, o, keys_on)))
		return rc;

	v = json_object_get(o, "isa");
	if (!json_is_string(v) || strlen(json_string_value(v)) != 2 || json_string_value(v)[0] != 'v' ||
	    json_string_value(v)[1] < '1' || json_string_value(v)[1] > '4')
		return bad(c, "offload.isa: must be \"v1\" .. \"v4\"");
	off->isa = json_string_value(v)[1] - '0';

	if ((rc = get_uint(c, o, w, "max_insns", 1000000, false, &u)))
		return rc;
	off->max_insns = (__u32)u;
	if ((rc = get_uint(c, o, w, "max_stack", 512, false, &u)))
		return rc;
	if (u % 8)
		return bad(c, "offload.max_stack: must be a multiple of 8");
	off->max_stack = (__u32)u;
	if ((rc = get_uint(c, o, w, "max_packet_offset", 65535, true, &u)))
		return rc;
	off->max_packet_offset = (__u32)u;
	if ((rc = get_names(c, o, w, "map_types", map_type_names, true, &off->map_types)))
		return rc;
	if ((rc = get_names(c, o, w, "host_map_types", map_type_names, false, &off->host_map_types)))
		return rc;
	if (off->map_types & off->host_map_types)
		return bad(c, "offload: a map type is listed both as offloaded and as host-side");
	if ((rc = get_names(c, o, w, "map_flags", map_flag_names, false, &bits)))
		return rc;
	off->map_flags = (__u32)bits;
	if ((rc = get_uint(c, o, w, "max_maps", 65535, false, &u)))
		return rc;
	off->max_maps = (__u32)u;
	if ((rc = get_uint(c, o, w, "max_entries", 1ull << 32, false, &off->max_entries)))
		return rc;
	if ((rc = get_uint(c, o, w, "max_key_size", 512, false, &u)))
		return rc;
	off->max_key_size = (__u32)u;
	if ((rc = get_uint(c, o, w, "max_value_size", 65536, false, &u)))
		return rc;
	off->max_value_size = (__u32)u;
	if ((rc = get_uint(c, o, w, "max_elem_size", 131072, false, &u)))
		return rc;
	off->max_elem_size = (__u32)u;
	if (off->max_elem_size < 16)
		return bad(c, "offload.max_elem_size: below the smallest entry (8-byte key and value)");

	v = json_object_get(o, "helpers");
	if (!json_is_array(v) || !json_array_size(v))
		return bad(c, "offload.helpers: must be a non-empty list of {id, name}");
	if (json_array_size(v) > MOAT_NIC_MAX_HELPERS)
		return bad(c, "offload.helpers: more than %d", MOAT_NIC_MAX_HELPERS);
	json_array_foreach(v, i, e)
	{
		static const char *const hk[] = { "id", "name", NULL };
		json_t *id = json_object_get(e, "id"), *nm = json_object_get(e, "name");
		char where[48];
		const char *known;

		snprintf(where, sizeof(where), "offload.helpers[%zu]", i);
		if ((rc = closed(c, where, e, hk)))
			return rc;
		if (!json_is_integer(id) || json_integer_value(id) < 1 ||
		    json_integer_value(id) >= __BPF_FUNC_MAX_ID)
			return bad(c, "%s.id: not a helper id of this kernel's uapi", where);
		known = moat_bpf_helper_name((__u32)json_integer_value(id));
		if (!json_is_string(nm) || !known || strcmp(known, json_string_value(nm)))
			return bad(c, "%s.name: helper %lld is \"%s\"", where,
				   (long long)json_integer_value(id), known ? known : "?");
		for (size_t j = 0; j < off->nhelpers; j++)
			if (off->helpers[j] == (__u32)json_integer_value(id))
				return bad(c, "%s: helper %s listed twice", where, known);
		off->helpers[off->nhelpers++] = (__u32)json_integer_value(id);
	}
	if ((rc = get_bool(c, o, w, "tail_calls", &off->tail_calls)) ||
	    (rc = get_bool(c, o, w, "lpm", &off->lpm)) ||
	    (rc = get_bool(c, o, w, "percpu_maps", &off->percpu_maps)) ||
	    (rc = get_bool(c, o, w, "modulo", &off->modulo)) ||
	    (rc = get_bool(c, o, w, "map_value_stores", &off->map_value_stores)) ||
	    (rc = get_bool(c, o, w, "bpf_calls", &off->bpf_calls)) ||
	    (rc = get_bool(c, o, w, "map_keys_on_stack", &off->map_keys_on_stack)))
		return rc;
	/* consistency with the map types */
	if (off->tail_calls != !!(off->map_types & (1ull << BPF_MAP_TYPE_PROG_ARRAY)))
		return bad(c, "offload.tail_calls: must match whether prog_array is a map type");
	if (off->lpm != !!(off->map_types & (1ull << BPF_MAP_TYPE_LPM_TRIE)))
		return bad(c, "offload.lpm: must match whether lpm_trie is a map type");
	if (off->percpu_maps !=
	    !!(off->map_types & ((1ull << BPF_MAP_TYPE_PERCPU_HASH) | (1ull << BPF_MAP_TYPE_PERCPU_ARRAY) |
				 (1ull << BPF_MAP_TYPE_LRU_PERCPU_HASH))))
		return bad(c, "offload.percpu_maps: must match the per-CPU map types listed");

	v = json_object_get(o, "perf_event_output");
	if (!json_is_string(v))
		return bad(c, "offload.perf_event_output: must be \"any\", \"current-cpu\" or \"none\"");
	if (!strcmp(json_string_value(v), "any"))
		off->perf_event_output = MOAT_PERF_ANY;
	else if (!strcmp(json_string_value(v), "current-cpu"))
		off->perf_event_output = MOAT_PERF_CURRENT_CPU;
	else if (!strcmp(json_string_value(v), "none"))
		off->perf_event_output = MOAT_PERF_NONE;
	else
		return bad(c, "offload.perf_event_output: must be \"any\", \"current-cpu\" or \"none\"");
	if (off->perf_event_output != MOAT_PERF_NONE &&
	    !((off->host_map_types | off->map_types) & (1ull << BPF_MAP_TYPE_PERF_EVENT_ARRAY)))
		return bad(c, "offload.perf_event_output: needs perf_event_array among the map types");
	{
		bool has_pe = false;
		for (size_t j = 0; j < off->nhelpers; j++)
			has_pe |= off->helpers[j] == BPF_FUNC_perf_event_output;
		if (has_pe != (off->perf_event_output != MOAT_PERF_NONE))
			return bad(c, "offload.perf_event_output: must match whether helper 25 is listed");
	}
	if ((rc = get_names(c, o, w, "atomics", atomic_names, false, &bits)))
		return rc;
	off->atomics = (__u32)bits;
	if ((rc = get_names(c, o, w, "actions", action_names, true, &bits)))
		return rc;
	off->actions = (__u32)bits;
	if (!(off->actions & (1u << XDP_PASS)) || !(off->actions & (1u << XDP_DROP)))
		return bad(c, "offload.actions: an XDP offload without pass and drop is useless");
	v = json_object_get(o, "ctx_writes");
	if (!json_is_array(v))
		return bad(c, "offload.ctx_writes: must be a list");
	json_array_foreach(v, i, e)
	{
		if (!json_is_string(e) || strcmp(json_string_value(e), "rx_queue_index"))
			return bad(c,
				   "offload.ctx_writes[%zu]: only \"rx_queue_index\" is writable in xdp_md",
				   i);
		off->ctx_write_rx_queue = true;
	}
	if (json_object_get(o, "fw_reported")) {
		if ((rc = get_names(c, o, w, "fw_reported", fw_names, false, &bits)))
			return rc;
		off->fw_reported = (__u32)bits;
	}
	return get_text_list(c, o, w, "notes");
}

static int parse_profile(struct pctx *c, json_t *root, struct moat_nic_profile *p)
{
	static const char *const keys[] = { "schema", "name",    "description", "drivers",
					    "xdp",    "offload", "sources",     NULL };
	static const char *const xkeys[] = { "modes", "features", "notes", NULL };
	char schema[64];
	json_t *v, *e;
	__u64 bits;
	size_t i;
	int rc;

	memset(p, 0, sizeof(*p));
	if ((rc = closed(c, "profile", root, keys)))
		return rc;
	if ((rc = get_str(c, root, "profile", "schema", true, schema, sizeof(schema))))
		return rc;
	if (strcmp(schema, MOAT_NIC_PROFILE_SCHEMA))
		return bad(c, "profile.schema: \"%s\", expected \"%s\"", schema, MOAT_NIC_PROFILE_SCHEMA);
	if ((rc = get_str(c, root, "profile", "name", true, p->name, sizeof(p->name))) ||
	    (rc = get_str(c, root, "profile", "description", true, p->description, sizeof(p->description))))
		return rc;
	for (const char *s = p->name; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return bad(c, "profile.name: only a-z, 0-9, '_' and '-'");
	v = json_object_get(root, "drivers");
	if (!json_is_array(v))
		return bad(c, "profile.drivers: must be a list (empty only for the default profile)");
	if (json_array_size(v) > MOAT_NIC_MAX_DRIVERS)
		return bad(c, "profile.drivers: more than %d", MOAT_NIC_MAX_DRIVERS);
	json_array_foreach(v, i, e)
	{
		if (!json_is_string(e) || !json_string_length(e) || json_string_length(e) >= 32)
			return bad(c, "profile.drivers[%zu]: must be a driver name (1-31 characters)", i);
		for (size_t j = 0; j < p->ndrivers; j++)
			if (!strcmp(p->drivers[j], json_string_value(e)))
				return bad(c, "profile.drivers[%zu]: listed twice", i);
		strcpy(p->drivers[p->ndrivers++], json_string_value(e));
	}
	if (!p->ndrivers && strcmp(p->name, "default"))
		return bad(c, "profile.drivers: empty, but this is not the default profile");

	v = json_object_get(root, "xdp");
	if (!v)
		return bad(c, "profile.xdp: missing");
	if ((rc = closed(c, "xdp", v, xkeys)))
		return rc;
	if ((rc = get_names(c, v, "xdp", "modes", mode_names, true, &bits)))
		return rc;
	p->modes = (__u32)bits;
	if (!(p->modes & (1u << MOAT_MODE_GENERIC)))
		return bad(c, "xdp.modes: generic XDP works on every device and must be listed");
	{
		struct named_bit fn[MOAT_XDP_F_COUNT + 1];
		for (unsigned b = 0; b < MOAT_XDP_F_COUNT; b++)
			fn[b] = (struct named_bit){ feature_names[b], b };
		fn[MOAT_XDP_F_COUNT] = (struct named_bit){ NULL, 0 };
		if ((rc = get_names(c, v, "xdp", "features", fn, false, &bits)))
			return rc;
		p->features = (__u32)bits;
	}
	if ((rc = get_text_list(c, v, "xdp", "notes")))
		return rc;
	if ((p->features & MOAT_XDP_F_BASIC) && !(p->modes & (1u << MOAT_MODE_NATIVE)))
		return bad(c, "xdp.features: \"basic\" (native XDP) without the native mode");
	if (p->features && (p->modes & (1u << MOAT_MODE_NATIVE)) && !(p->features & MOAT_XDP_F_BASIC))
		return bad(c, "xdp.modes: native listed but the features lack \"basic\"");

	v = json_object_get(root, "offload");
	if (!v)
		return bad(c, "profile.offload: missing");
	if ((rc = parse_offload(c, v, &p->off)))
		return rc;
	if (p->off.supported != !!(p->modes & (1u << MOAT_MODE_HW)))
		return bad(c, "xdp.modes: \"hw\" must be listed exactly when offload.supported");
	if (p->features && p->off.supported != !!(p->features & MOAT_XDP_F_HW_OFFLOAD))
		return bad(c, "xdp.features: \"hw-offload\" must be listed exactly when offload.supported");
	return get_text_list(c, root, "profile", "sources");
}

int moat_nic_profile_load(const char *path, struct moat_nic_profile *p, char *err, size_t errlen)
{
	struct pctx c = { err, errlen };
	json_error_t je;
	json_t *root;
	int rc;

	if (err && errlen)
		err[0] = 0;
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		snprintf(err, errlen, "%s:%d: %s", path, je.line, je.text);
		return -EINVAL;
	}
	rc = parse_profile(&c, root, p);
	json_decref(root);
	if (rc && err && errlen) {
		char tmp[256];
		snprintf(tmp, sizeof(tmp), "%s", err);
		snprintf(err, errlen, "%s: %s", path, tmp);
	}
	return rc;
}

int moat_nic_profile_find(const char *dir, const char *driver, struct moat_nic_profile *p, char *path,
			  size_t pathlen, char *err, size_t errlen)
{
	char buf[4096];
	struct dirent *de;
	DIR *d;
	int rc;

	if (!dir)
		dir = MOAT_NIC_PROFILE_DIR;
	/* the file named after the driver first, then every other one */
	if (driver && *driver && !strchr(driver, '/')) {
		snprintf(buf, sizeof(buf), "%s/%s.json", dir, driver);
		if (access(buf, R_OK) == 0 && moat_nic_profile_load(buf, p, err, errlen) == 0)
			for (size_t i = 0; i < p->ndrivers; i++)
				if (!strcmp(p->drivers[i], driver))
					goto found;
		d = opendir(dir);
		while (d && (de = readdir(d))) {
			size_t l = strlen(de->d_name);
			bool hit = false;
			if (l < 6 || strcmp(de->d_name + l - 5, ".json") ||
			    !strcmp(de->d_name, "default.json"))
				continue;
			snprintf(buf, sizeof(buf), "%s/%s", dir, de->d_name);
			if (moat_nic_profile_load(buf, p, err, errlen))
				continue; /* a broken file is no match (profiles validates them) */
			for (size_t i = 0; i < p->ndrivers; i++)
				hit |= !strcmp(p->drivers[i], driver);
			if (hit) {
				closedir(d);
				goto found;
			}
		}
		if (d)
			closedir(d);
	}
	snprintf(buf, sizeof(buf), "%s/default.json", dir);
	rc = moat_nic_profile_load(buf, p, err, errlen);
	if (rc)
		return rc;
found:
	if (path && pathlen)
		snprintf(path, pathlen, "%s", buf);
	if (err && errlen)
		err[0] = 0;
	return 0;
}

/* ---- probe ----------------------------------------------------------------------- */
static void probe_why(struct moat_nic_probe *o, const char *what, int err)
{
	size_t n = strlen(o->why);

	snprintf(o->why + n, sizeof(o->why) - n, "%s%s: %s", n ? "; " : "", what, strerror(err));
}

static int probe_drvinfo(struct moat_nic_probe *o)
{
	struct ethtool_drvinfo di = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr;
	int fd, rc = 0;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", o->ifname);
	ifr.ifr_data = (void *)&di;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) {
		rc = -errno;
	} else {
		snprintf(o->driver, sizeof(o->driver), "%.31s", di.driver);
		snprintf(o->version, sizeof(o->version), "%.31s", di.version);
		snprintf(o->fw_version, sizeof(o->fw_version), "%.31s", di.fw_version);
		snprintf(o->bus_info, sizeof(o->bus_info), "%.31s", di.bus_info);
		o->have_driver = true;
	}
	close(fd);
	return rc;
}

struct genl_req {
	struct nlmsghdr nh;
	struct genlmsghdr gh;
	/* cppcheck-suppress unusedStructMember ; room that put_attr() fills after gh */
	char attrs[64];
};

static void put_attr(struct genl_req *r, __u16 type, const void *data, __u16 len)
{
	struct nlattr *a = (void *)((char *)r + NLMSG_ALIGN(r->nh.nlmsg_len));

	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	memcpy((char *)a + NLA_HDRLEN, data, len);
	r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + NLA_ALIGN(a->nla_len);
}

/* One request, one answer: calls fn for each attribute of the reply. */
static int genl_call(int fd, struct genl_req *r, __u32 seq, void (*fn)(const struct nlattr *a, void *arg),
		     void *arg)
{
	char buf[8192];
	ssize_t n;

	r->nh.nlmsg_seq = seq;
	if (send(fd, r, r->nh.nlmsg_len, 0) < 0)
		return -errno;
	for (int tries = 0; tries < 8; tries++) {
		struct nlmsghdr *h;

		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0)
			return -errno;
		for (h = (void *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				return e->error ? e->error : -ENOMSG;
			}
			if (h->nlmsg_type == NLMSG_DONE)
				return -ENOMSG;
			{
				const struct genlmsghdr *g = NLMSG_DATA(h);
				int alen = (int)h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
				const struct nlattr *a = (const void *)((const char *)g + GENL_HDRLEN);
				while (alen >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= alen) {
					fn(a, arg);
					alen -= NLA_ALIGN(a->nla_len);
					a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len));
				}
			}
			return 0;
		}
	}
	return -ETIMEDOUT;
}

static void family_attr(const struct nlattr *a, void *arg)
{
	if ((a->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_FAMILY_ID && a->nla_len >= NLA_HDRLEN + 2)
		memcpy(arg, (const char *)a + NLA_HDRLEN, 2);
}

static void dev_attr(const struct nlattr *a, void *arg)
{
	struct moat_nic_probe *o = arg;
	const char *d = (const char *)a + NLA_HDRLEN;

	switch (a->nla_type & NLA_TYPE_MASK) {
	case NETDEV_A_DEV_XDP_FEATURES_:
		if (a->nla_len >= NLA_HDRLEN + 8) {
			memcpy(&o->xdp_features, d, 8);
			o->have_features = true;
		}
		break;
	case NETDEV_A_DEV_XDP_ZC_MAX_SEGS_:
		if (a->nla_len >= NLA_HDRLEN + 4)
			memcpy(&o->xdp_zc_max_segs, d, 4);
		break;
	}
}

static int probe_features(int ifindex, struct moat_nic_probe *o)
{
	struct timeval tv = { .tv_sec = 1 };
	struct genl_req r;
	__u16 family = 0;
	__u32 idx = (__u32)ifindex;
	int fd, rc;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	memset(&r, 0, sizeof(r));
	r.nh.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
	r.nh.nlmsg_type = GENL_ID_CTRL;
	r.nh.nlmsg_flags = NLM_F_REQUEST;
	r.gh.cmd = CTRL_CMD_GETFAMILY;
	r.gh.version = 1;
	put_attr(&r, CTRL_ATTR_FAMILY_NAME, NETDEV_FAMILY_NAME_, sizeof(NETDEV_FAMILY_NAME_));
	rc = genl_call(fd, &r, 1, family_attr, &family);
	if (!rc && !family)
		rc = -ENOENT;
	if (rc)
		goto out; /* -ENOENT: a kernel before 6.3 has no "netdev" family */

	memset(&r, 0, sizeof(r));
	r.nh.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
	r.nh.nlmsg_type = family;
	r.nh.nlmsg_flags = NLM_F_REQUEST;
	r.gh.cmd = NETDEV_CMD_DEV_GET_;
	r.gh.version = 1;
	put_attr(&r, NETDEV_A_DEV_IFINDEX_, &idx, sizeof(idx));
	rc = genl_call(fd, &r, 2, dev_attr, o);
	if (!rc && !o->have_features)
		rc = -ENODATA;
out:
	close(fd);
	return rc;
}

int moat_nic_probe(int ifindex, struct moat_nic_probe *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (ifindex <= 0 || !if_indextoname((unsigned)ifindex, out->ifname))
		return -ENODEV;
	rc = probe_drvinfo(out);
	if (rc)
		probe_why(out, "ethtool driver info", -rc);
	rc = probe_features(ifindex, out);
	if (rc == -ENODEV)
		return rc;
	if (rc)
		probe_why(out,
			  rc == -ENOENT ? "netdev genl family (kernel < 6.3)" : "netdev genl XDP features",
			  -rc);
	return 0;
}

/* ---- plan ----------------------------------------------------------------------- */
__attribute__((format(printf, 3, 4))) static void plan_why(struct moat_attach_plan *p, enum moat_plan_kind k,
							   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->why[k], sizeof(p->why[k]), fmt, ap);
	va_end(ap);
}

void moat_plan_decide(const struct moat_nic_profile *prof, const struct moat_nic_probe *probe,
		      const struct moat_plan_opts *opts, struct moat_attach_plan *plan)
{
	struct moat_plan_opts def = { .requested = MOAT_MODE_AUTO };
	bool native, hw;
	const char *src;

	memset(plan, 0, sizeof(*plan));
	if (!opts)
		opts = &def;
	/* what the interface can do: the probe's word over the profile's */
	if (probe && probe->have_features) {
		native = probe->xdp_features & MOAT_XDP_F_BASIC;
		hw = probe->xdp_features & MOAT_XDP_F_HW_OFFLOAD;
		src = "the kernel's XDP features for this interface";
	} else {
		native = prof->modes & (1u << MOAT_MODE_NATIVE);
		hw = prof->off.supported && (prof->modes & (1u << MOAT_MODE_HW));
		src = "the profile";
	}

	/* hardware pre-filter */
	if (opts->requested == MOAT_MODE_GENERIC || opts->requested == MOAT_MODE_NATIVE)
		plan_why(plan, MOAT_PLAN_HW_PREFILTER, "mode %s requested", moat_mode_name(opts->requested));
	else if (!opts->prefilter)
		plan_why(plan, MOAT_PLAN_HW_PREFILTER, "no pre-filter wanted");
	else if (!hw)
		plan_why(plan, MOAT_PLAN_HW_PREFILTER, "no XDP hardware offload (%s, profile %s)", src,
			 prof->name);
	else if (!native)
		plan_why(plan, MOAT_PLAN_HW_PREFILTER,
			 "the full program needs native XDP beside the offload (%s)", src);
	else if (!opts->prefilter_fits)
		plan_why(plan, MOAT_PLAN_HW_PREFILTER,
			 "the pre-filter does not fit profile %s (moatctl offload check)", prof->name);
	else if (opts->foreign_netns)
		plan_why(plan, MOAT_PLAN_HW_PREFILTER, "the interface is in another network namespace");
	else
		plan->try_hw_prefilter = true;

	/* the full program */
	if (opts->requested == MOAT_MODE_GENERIC)
		plan_why(plan, MOAT_PLAN_NATIVE, "mode generic requested");
	else if (!native && opts->requested != MOAT_MODE_NATIVE)
		plan_why(plan, MOAT_PLAN_NATIVE, "the driver has no native XDP (%s)", src);

	if (plan->try_hw_prefilter) {
		plan->kind = MOAT_PLAN_HW_PREFILTER;
		plan->full_mode = MOAT_MODE_NATIVE;
	} else if (!plan->why[MOAT_PLAN_NATIVE][0]) {
		plan->kind = MOAT_PLAN_NATIVE;
		plan->full_mode = MOAT_MODE_NATIVE;
	} else {
		plan->kind = MOAT_PLAN_GENERIC;
		plan->full_mode = MOAT_MODE_GENERIC;
	}
	/* an operator's forced mode is final; otherwise native falls back */
	plan->full_may_fall_back = plan->full_mode == MOAT_MODE_NATIVE && opts->requested != MOAT_MODE_NATIVE;
	if (opts->requested == MOAT_MODE_HW && !plan->try_hw_prefilter)
		plan->full_may_fall_back = true; /* hw asked of the pre-filter only */
}

int moat_plan_execute(struct moat_dp *dp, const struct moat_attach_req *req,
		      const struct moat_attach_plan *plan, const struct moat_pf_opts *pfo,
		      struct moat_plan_result *res)
{
	struct moat_attach_req full = *req;
	struct moat_pf_opts po = { 0 };
	struct moat_pf *pf = NULL;
	char err[128];
	int rc;

	memset(res, 0, sizeof(*res));
	memcpy(res->why, plan->why, sizeof(res->why));
	res->kind = plan->kind;

	if (plan->try_hw_prefilter) {
		if (pfo)
			po = *pfo;
		po.ifindex = req->ifindex;
		rc = moat_pf_open(&po, &pf, err, sizeof(err));
		if (!rc)
			rc = moat_pf_attach_hw(pf, err, sizeof(err));
		if (rc) {
			snprintf(res->why[MOAT_PLAN_HW_PREFILTER], sizeof(res->why[0]),
				 "loading the pre-filter for the device failed: %s", err);
			moat_pf_close(pf);
			pf = NULL;
			res->kind = MOAT_PLAN_NATIVE;
		}
	}

	/* The full program: never in hardware (hw_capable false), native
	 * first when planned, generic as the fallback. */
	full.hw_capable = false;
	full.mode = plan->full_mode == MOAT_MODE_NATIVE && plan->full_may_fall_back ? MOAT_MODE_AUTO :
										      plan->full_mode;
	rc = moat_dp_attach(dp, &full, &res->full);
	if (rc) {
		if (res->full.why[MOAT_MODE_NATIVE][0] && !res->why[MOAT_PLAN_NATIVE][0])
			snprintf(res->why[MOAT_PLAN_NATIVE], sizeof(res->why[0]), "%s",
				 res->full.why[MOAT_MODE_NATIVE]);
		if (res->full.why[MOAT_MODE_GENERIC][0])
			snprintf(res->why[MOAT_PLAN_GENERIC], sizeof(res->why[0]), "%s",
				 res->full.why[MOAT_MODE_GENERIC]);
		moat_pf_close(pf); /* never a pre-filter without the program behind it */
		return rc;
	}
	if (res->full.mode == MOAT_MODE_GENERIC) {
		if (res->full.why[MOAT_MODE_NATIVE][0] && !res->why[MOAT_PLAN_NATIVE][0])
			snprintf(res->why[MOAT_PLAN_NATIVE], sizeof(res->why[0]), "%s",
				 res->full.why[MOAT_MODE_NATIVE]);
		res->kind = pf ? MOAT_PLAN_HW_PREFILTER : MOAT_PLAN_GENERIC;
	} else if (!pf) {
		res->kind = MOAT_PLAN_NATIVE;
	}
	res->pf = pf;
	return 0;
}
