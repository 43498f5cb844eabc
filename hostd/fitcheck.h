/* SPDX-License-Identifier: Apache-2.0 */
/* Fit checker: does a built BPF object fit a NIC's hardware offload
 * (offload/plan.h profile)?  Reads the ELF object (libelf for code,
 * relocations and BTF line info; libbpf for the map definitions), never
 * loads anything, and reports every violation with its place.
 *
 * Per program (entry function plus every subprogram it can reach):
 * instruction count, stack over the call chain (nfp frame accounting),
 * helper calls by id, opcodes (v4 opcodes, BPF_MOD, MUL/DIV the device
 * cannot prove in range, opcodes outside the device's instruction table),
 * atomics other than add, tail calls, kfuncs, bpf-to-bpf calls; per map:
 * type (LPM tries, per-CPU, program arrays), flags, key/value/entry sizes,
 * the shared entry budget.  Register tracking (a small abstract
 * interpretation over the control flow graph, with stack spills and calls)
 * finds stores into map values, atomics not on map values, map helper keys
 * not on the stack at constant 4-byte-aligned offsets, perf output flags
 * other than BPF_F_CURRENT_CPU, variable stack and map value offsets, a map
 * value word both read and used as an atomic counter, and one instruction
 * reaching different kinds of memory.  It is sound, not complete: where it
 * cannot tell what a pointer is, it says so (a violation "in doubt").
 *
 * What only the NIC can tell is out of reach: the JIT's own instruction
 * count (BPF instructions are a lower bound), packet offsets against the
 * inline MTU, firmware capabilities.  See docs/offload.md. */
#ifndef MOAT_FITCHECK_H
#define MOAT_FITCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "plan.h"

enum moat_fit_kind {
	MOAT_FIT_MAP_TYPE = 0,  /* map type the device cannot hold */
	MOAT_FIT_LPM,           /* LPM trie */
	MOAT_FIT_PERCPU,        /* per-CPU map */
	MOAT_FIT_TAIL_CALL,     /* program array or bpf_tail_call */
	MOAT_FIT_MAP_FLAGS,     /* map_flags (incl. global data sections) */
	MOAT_FIT_MAP_SIZE,      /* key, value or entry size */
	MOAT_FIT_MAP_BUDGET,    /* shared entry budget, number of maps */
	MOAT_FIT_HELPER,        /* helper not supported */
	MOAT_FIT_PERF_FLAGS,    /* perf_event_output not on BPF_F_CURRENT_CPU */
	MOAT_FIT_MAP_ARG,       /* map helper key/value not at a constant aligned stack offset */
	MOAT_FIT_INSNS,         /* program too long */
	MOAT_FIT_STACK,         /* stack over the call chain too deep */
	MOAT_FIT_STACK_VAR,     /* stack access at a variable offset */
	MOAT_FIT_OPCODE,        /* opcode outside the device's instruction table */
	MOAT_FIT_V4,            /* ISA v4 opcode */
	MOAT_FIT_MOD,           /* BPF_MOD */
	MOAT_FIT_MULDIV,        /* MUL/DIV not provably within the device's range */
	MOAT_FIT_ATOMIC,        /* atomic operation other than add (or a fetching one) */
	MOAT_FIT_ATOMIC_TARGET, /* atomic not on a map value */
	MOAT_FIT_MAP_STORE,     /* store into a map value (or possibly one) */
	MOAT_FIT_MAP_OFFSET,    /* map value accessed at a variable offset */
	MOAT_FIT_MAP_WORD,      /* a map value word both read and an atomic counter */
	MOAT_FIT_CTX_STORE,     /* store into the context */
	MOAT_FIT_PTR_MIX,       /* one instruction reaches different kinds of memory */
	MOAT_FIT_CALL,          /* kfunc, or bpf-to-bpf call the device lacks */
	MOAT_FIT_KIND_MAX,
};
const char *moat_fit_kind_name(enum moat_fit_kind k);

struct moat_fit_violation {
	enum moat_fit_kind kind;
	char prog[64]; /* program that reaches it; "" for object-wide */
	char func[64]; /* function holding the instruction */
	char section[64];
	int insn;       /* index in its ELF section (llvm-objdump's), -1: none */
	char map[64];   /* the map concerned, if any */
	char file[128]; /* BTF line info, if the object has it */
	int line;
	char src[128]; /* the source line, trimmed */
	bool doubt;    /* could not prove it either way */
	char msg[200];
};

#define MOAT_FIT_HELPER_WORDS 4 /* helper ids < 256 */

struct moat_fit_prog {
	char name[64];
	char section[64];
	__u32 insns;                          /* BPF instructions, with reachable subprograms */
	__u32 funcs;                          /* functions (1 + subprograms) */
	__u32 stack;                          /* bytes over the deepest call chain (device frames) */
	__u64 helpers[MOAT_FIT_HELPER_WORDS]; /* bit per helper id called */
};

struct moat_fit_map {
	char name[64];
	__u32 type, key_size, value_size, max_entries, flags;
	bool internal;  /* .rodata/.data/.bss */
	bool on_device; /* would be created on the NIC */
};

#define MOAT_FIT_MAX_VIOLATIONS 512

struct moat_fit_report {
	char profile[32];
	size_t nprogs;
	struct moat_fit_prog *progs;
	size_t nmaps;
	struct moat_fit_map *maps;
	__u64 entries; /* max_entries summed over on-device maps */
	size_t nviol;
	struct moat_fit_violation *viol;
	size_t dropped; /* violations past MOAT_FIT_MAX_VIOLATIONS */
	size_t nkind[MOAT_FIT_KIND_MAX];
};

/* Checks obj against prof.  0 with the report filled (fits when
 * r->nviol == 0); a negative errno if the object cannot be read (err says
 * why).  Free the report with moat_fit_report_free() either way. */
int moat_fit_check(const char *obj, const struct moat_nic_profile *prof, struct moat_fit_report *r, char *err,
		   size_t errlen);
void moat_fit_report_free(struct moat_fit_report *r);

#endif
