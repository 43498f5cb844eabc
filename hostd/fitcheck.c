// SPDX-License-Identifier: Apache-2.0
/* Fit checker; see fitcheck.h.
 *
 * The object is read twice: libbpf (open only, nothing loaded) says which
 * functions are programs and what the maps are, including BTF-defined and
 * global-data maps; libelf gives the instructions, symbols, relocations
 * (map references, calls across sections) and the BTF line info.
 *
 * Register tracking: per program, every reachable function is interpreted
 * over abstract values (scalar with a known constant or not; pointer to the
 * context, the own stack frame, a caller's stack, a map, a map value, the
 * packet, or "unknown") until nothing changes, joining at merge points,
 * with 8-byte stack slots for spills and interprocedural entry states and
 * return values.  Violations are collected in one last pass over the fixed
 * point, so each instruction is judged on everything that can reach it. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "fitcheck.h"

#ifndef BPF_MEMSX
#define BPF_MEMSX 0x80
#endif
#ifndef BPF_JCOND
#define BPF_JCOND 0xe0
#endif
#define MAX_STACK_SLOTS     64 /* 512 bytes */
#define MAX_FUNCS           256
#define MAX_ROUNDS          32      /* interprocedural fixed point */
#define MAX_FUNC_INSNS      65536   /* per function: states cost ~1.8 KiB per insn */
#define MAX_OBJ_INSNS       1000000 /* the kernel's own limit */
#define XDP_MD_RX_QUEUE_OFF 16      /* offsetof(struct xdp_md, rx_queue_index) */

static const char *const kind_names[MOAT_FIT_KIND_MAX] = {
	[MOAT_FIT_MAP_TYPE] = "map-type",
	[MOAT_FIT_LPM] = "lpm-trie",
	[MOAT_FIT_PERCPU] = "per-cpu-map",
	[MOAT_FIT_TAIL_CALL] = "tail-call",
	[MOAT_FIT_MAP_FLAGS] = "map-flags",
	[MOAT_FIT_MAP_SIZE] = "map-size",
	[MOAT_FIT_MAP_BUDGET] = "map-budget",
	[MOAT_FIT_HELPER] = "helper",
	[MOAT_FIT_PERF_FLAGS] = "perf-output-flags",
	[MOAT_FIT_MAP_ARG] = "map-helper-arg",
	[MOAT_FIT_INSNS] = "too-many-insns",
	[MOAT_FIT_STACK] = "stack",
	[MOAT_FIT_STACK_VAR] = "variable-stack-offset",
	[MOAT_FIT_OPCODE] = "opcode",
	[MOAT_FIT_V4] = "v4-opcode",
	[MOAT_FIT_MOD] = "modulo",
	[MOAT_FIT_MULDIV] = "mul-div-range",
	[MOAT_FIT_ATOMIC] = "atomic-op",
	[MOAT_FIT_ATOMIC_TARGET] = "atomic-target",
	[MOAT_FIT_MAP_STORE] = "map-value-store",
	[MOAT_FIT_MAP_OFFSET] = "variable-map-offset",
	[MOAT_FIT_MAP_WORD] = "map-word-conflict",
	[MOAT_FIT_CTX_STORE] = "ctx-store",
	[MOAT_FIT_PTR_MIX] = "pointer-kind-mix",
	[MOAT_FIT_CALL] = "call",
};

const char *moat_fit_kind_name(enum moat_fit_kind k)
{
	return k < MOAT_FIT_KIND_MAX ? kind_names[k] : "?";
}

/* ---- the object ------------------------------------------------------------- */
struct reloc {
	size_t insn;
	size_t sym;
};

struct fsec {
	char name[64];
	size_t shndx;
	const struct bpf_insn *insns;
	size_t n;
	struct reloc *rel;
	size_t nrel;
	/* BTF line info, sorted by insn */
	struct lrec {
		__u32 insn, file_off, line_off, line;
	} * lines;
	size_t nlines;
};

struct fsym {
	char name[64];
	size_t shndx;
	__u64 value, size;
	unsigned char type, bind;
};

struct fmap {
	char name[64];
	__u32 type, ks, vs, me, flags;
	bool internal;
	__u8 *word; /* per 4-byte word: bit 0 read, bit 1 atomic, bit 2 reported */
	size_t nwords;
};

/* abstract values */
enum vt {
	V_UNINIT = 0, /* bottom: nothing reaches it yet */
	V_SCALAR,
	V_CTX,
	V_FP,  /* this frame's stack */
	V_STK, /* a caller's stack */
	V_MAPPTR,
	V_MAPVAL,
	V_PKT,
	V_PKTEND,
	V_FUNC,
	V_TOP, /* unknown: anything */
};

struct aval {
	__u8 t;
	__u8 known;    /* scalar: v is its value; pointer: v is its offset */
	__u8 null;     /* may be NULL */
	__u8 kinds;    /* V_TOP: the kinds of memory it may point to (MK_*) */
	__u8 lo_known; /* scalar: its low 32 bits are lo */
	__u8 pad[3];
	__s32 map; /* map index, -1: unknown */
	__u32 lo;
	__s64 v;
};

enum memkind {
	MK_NONE = 0,
	MK_CTX = 1,
	MK_STACK = 2,
	MK_MAP = 4,
	MK_PKT = 8,
	MK_OTHER = 16
};

struct state {
	bool live;
	struct aval r[11];
	struct aval s[MAX_STACK_SLOTS];
};

struct func {
	char name[64];
	size_t sec;
	size_t start, end; /* insns [start, end) of the section */
	bool reached;      /* by the current program */
	struct state entry;
	struct aval ret;
	struct state *st; /* per insn */
	bool *queued;
	int depth;             /* bytes of own stack */
	bool callee_saved;     /* writes R6-R9 */
	bool calls[MAX_FUNCS]; /* callees */
};

struct fctx {
	const struct moat_nic_profile *prof;
	struct moat_fit_report *r;
	int fd;
	Elf *elf;
	struct bpf_object *obj;
	struct fsec *secs;
	size_t nsecs;
	struct fsym *syms;
	size_t nsyms;
	struct fmap *maps;
	size_t nmaps;
	struct func funcs[MAX_FUNCS];
	size_t nfuncs;
	const char *btf_str;
	size_t btf_strlen;
	const void *btf_data; /* the .BTF section */
	size_t btf_size;
	/* reporting */
	bool reporting;
	const char *prog;
	__u8 *ptrkind; /* per (section, insn): kinds of memory seen, for PTR_MIX */
	size_t *ptrkind_base;
	size_t total_insns;
};

/* ---- reporting ------------------------------------------------------------ */
static void src_of(struct fctx *c, size_t sec, size_t insn, struct moat_fit_violation *v)
{
	const struct fsec *s = &c->secs[sec];
	const struct lrec *best = NULL;
	size_t lo = 0, hi = s->nlines;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->lines[mid].insn <= insn) {
			best = &s->lines[mid];
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	/* compiler-generated code has line 0: name the line before it */
	while (best && !best->line && best > s->lines)
		best--;
	if (!best || !c->btf_str)
		return;
	if (best->file_off < c->btf_strlen) {
		const char *f = c->btf_str + best->file_off, *slash = strrchr(f, '/');
		/* keep "dir/file.c" */
		if (slash && slash > f) {
			const char *p = slash - 1;
			while (p > f && *p != '/')
				p--;
			f = *p == '/' ? p + 1 : p;
		}
		snprintf(v->file, sizeof(v->file), "%s", f);
	}
	v->line = (int)best->line;
	if (!best->line) {
		v->file[0] = 0; /* compiler-generated code: no line */
		return;
	}
	if (best->line_off < c->btf_strlen) {
		const char *l = c->btf_str + best->line_off;
		size_t n;
		while (*l == ' ' || *l == '\t')
			l++;
		n = strcspn(l, "\n");
		if (n >= sizeof(v->src))
			n = sizeof(v->src) - 1;
		memcpy(v->src, l, n);
		v->src[n] = 0;
	}
}

__attribute__((format(printf, 7, 8))) static void viol(struct fctx *c, enum moat_fit_kind k,
						       const struct func *f, long insn, int map, bool doubt,
						       const char *fmt, ...)
{
	struct moat_fit_report *r = c->r;
	struct moat_fit_violation *v;
	va_list ap;

	if (f && insn >= 0) {
		/* once per instruction and kind, whichever program reaches it */
		for (size_t i = 0; i < r->nviol; i++)
			if (r->viol[i].kind == k && r->viol[i].insn == insn &&
			    !strcmp(r->viol[i].section, c->secs[f->sec].name))
				return;
	}
	r->nkind[k]++;
	if (r->nviol >= MOAT_FIT_MAX_VIOLATIONS) {
		r->dropped++;
		return;
	}
	v = &r->viol[r->nviol++];
	memset(v, 0, sizeof(*v));
	v->kind = k;
	v->insn = (int)insn;
	v->doubt = doubt;
	if (c->prog)
		snprintf(v->prog, sizeof(v->prog), "%s", c->prog);
	if (f) {
		snprintf(v->func, sizeof(v->func), "%s", f->name);
		snprintf(v->section, sizeof(v->section), "%s", c->secs[f->sec].name);
		if (insn >= 0)
			src_of(c, f->sec, (size_t)insn, v);
	}
	if (map >= 0 && (size_t)map < c->nmaps)
		snprintf(v->map, sizeof(v->map), "%s", c->maps[map].name);
	va_start(ap, fmt);
	vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
	va_end(ap);
}

/* ---- the ELF side ------------------------------------------------------------ */
static int read_elf(struct fctx *c, char *err, size_t errlen)
{
	Elf_Scn *scn = NULL;
	GElf_Ehdr eh;
	size_t shstrndx;
	Elf_Data *symdata = NULL, *btf = NULL, *btfext = NULL;
	size_t symstr = 0;

	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EINVAL;
	c->elf = elf_begin(c->fd, ELF_C_READ, NULL);
	if (!c->elf || !gelf_getehdr(c->elf, &eh) || eh.e_machine != EM_BPF) {
		snprintf(err, errlen, "not a BPF ELF object");
		return -EINVAL;
	}
	if (elf_getshdrstrndx(c->elf, &shstrndx))
		return -EINVAL;
	c->nsecs = 0;
	c->secs = calloc(eh.e_shnum ? eh.e_shnum : 1, sizeof(*c->secs));
	if (!c->secs)
		return -ENOMEM;
	/* sections: code, symbols, BTF */
	while ((scn = elf_nextscn(c->elf, scn))) {
		GElf_Shdr sh;
		const char *name;
		if (!gelf_getshdr(scn, &sh))
			continue;
		name = elf_strptr(c->elf, shstrndx, sh.sh_name);
		if (!name)
			continue;
		if (sh.sh_type == SHT_SYMTAB) {
			symdata = elf_getdata(scn, NULL);
			symstr = sh.sh_link;
		} else if (!strcmp(name, ".BTF")) {
			btf = elf_getdata(scn, NULL);
		} else if (!strcmp(name, ".BTF.ext")) {
			btfext = elf_getdata(scn, NULL);
		} else if (sh.sh_type == SHT_PROGBITS && (sh.sh_flags & SHF_EXECINSTR) && sh.sh_size) {
			Elf_Data *d = elf_getdata(scn, NULL);
			struct fsec *s = &c->secs[c->nsecs++];
			if (!d || !d->d_buf || d->d_size % sizeof(struct bpf_insn))
				return -EINVAL;
			snprintf(s->name, sizeof(s->name), "%s", name);
			s->shndx = elf_ndxscn(scn);
			s->insns = d->d_buf;
			s->n = d->d_size / sizeof(struct bpf_insn);
			c->total_insns += s->n;
			if (c->total_insns > MAX_OBJ_INSNS) {
				snprintf(err, errlen, "more than %d instructions", MAX_OBJ_INSNS);
				return -E2BIG;
			}
		}
	}
	if (!symdata) {
		snprintf(err, errlen, "no symbol table");
		return -EINVAL;
	}
	c->nsyms = symdata->d_size / sizeof(Elf64_Sym);
	c->syms = calloc(c->nsyms ? c->nsyms : 1, sizeof(*c->syms));
	if (!c->syms)
		return -ENOMEM;
	for (size_t i = 0; i < c->nsyms; i++) {
		GElf_Sym sym;
		const char *nm;
		if (!gelf_getsym(symdata, (int)i, &sym))
			continue;
		nm = elf_strptr(c->elf, symstr, sym.st_name);
		if (GELF_ST_TYPE(sym.st_info) == STT_SECTION && sym.st_shndx < eh.e_shnum) {
			Elf_Scn *ss = elf_getscn(c->elf, sym.st_shndx);
			GElf_Shdr sh;
			if (ss && gelf_getshdr(ss, &sh))
				nm = elf_strptr(c->elf, shstrndx, sh.sh_name);
		}
		snprintf(c->syms[i].name, sizeof(c->syms[i].name), "%s", nm ? nm : "");
		c->syms[i].shndx = sym.st_shndx;
		c->syms[i].value = sym.st_value;
		c->syms[i].size = sym.st_size;
		c->syms[i].type = GELF_ST_TYPE(sym.st_info);
		c->syms[i].bind = GELF_ST_BIND(sym.st_info);
	}
	/* relocations of the code sections */
	scn = NULL;
	while ((scn = elf_nextscn(c->elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *d;
		struct fsec *s = NULL;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_REL)
			continue;
		for (size_t i = 0; i < c->nsecs; i++)
			if (c->secs[i].shndx == sh.sh_info)
				s = &c->secs[i];
		d = elf_getdata(scn, NULL);
		if (!s || !d || !d->d_buf)
			continue;
		if (s->rel) {
			snprintf(err, errlen, "two relocation sections for %s", s->name);
			return -EINVAL;
		}
		s->nrel = d->d_size / sizeof(Elf64_Rel);
		s->rel = calloc(s->nrel ? s->nrel : 1, sizeof(*s->rel));
		if (!s->rel)
			return -ENOMEM;
		for (size_t i = 0; i < s->nrel; i++) {
			GElf_Rel rel;
			if (!gelf_getrel(d, (int)i, &rel))
				continue;
			s->rel[i].insn = rel.r_offset / sizeof(struct bpf_insn);
			s->rel[i].sym = GELF_R_SYM(rel.r_info);
		}
	}
	if (btf && btf->d_buf) {
		c->btf_data = btf->d_buf;
		c->btf_size = btf->d_size;
	}
	/* BTF strings and line info (absent without -g: locations without lines) */
	if (btf && btf->d_buf && btf->d_size >= 24) {
		const __u8 *b = btf->d_buf;
		__u32 hdr_len, str_off, str_len;
		memcpy(&hdr_len, b + 4, 4);
		memcpy(&str_off, b + 16, 4);
		memcpy(&str_len, b + 20, 4);
		if ((__u64)hdr_len + str_off + str_len <= btf->d_size) {
			c->btf_str = (const char *)b + hdr_len + str_off;
			c->btf_strlen = str_len;
		}
	}
	if (btfext && btfext->d_buf && btfext->d_size >= 32 && c->btf_str) {
		const __u8 *b = btfext->d_buf;
		__u32 hdr_len, li_off, li_len, recsz;
		size_t p, end;
		memcpy(&hdr_len, b + 4, 4);
		memcpy(&li_off, b + 16, 4);
		memcpy(&li_len, b + 20, 4);
		p = (size_t)hdr_len + li_off;
		end = p + li_len;
		if (end <= btfext->d_size && li_len >= 4) {
			memcpy(&recsz, b + p, 4);
			p += 4;
			while (recsz >= 16 && p + 8 <= end) {
				__u32 secoff, num;
				struct fsec *s = NULL;
				memcpy(&secoff, b + p, 4);
				memcpy(&num, b + p + 4, 4);
				p += 8;
				if (p + (size_t)num * recsz > end)
					break;
				for (size_t i = 0; secoff < c->btf_strlen && i < c->nsecs; i++)
					if (!strcmp(c->secs[i].name, c->btf_str + secoff))
						s = &c->secs[i];
				if (s && !s->lines) {
					s->lines = calloc(num ? num : 1, sizeof(*s->lines));
					if (!s->lines)
						return -ENOMEM;
					for (__u32 i = 0; i < num; i++) {
						__u32 rec[4];
						memcpy(rec, b + p + (size_t)i * recsz, 16);
						s->lines[s->nlines++] = (struct lrec){ rec[0] / 8, rec[1],
										       rec[2], rec[3] >> 10 };
					}
				}
				p += (size_t)num * recsz;
			}
		}
	}
	return 0;
}

static const struct reloc *reloc_at(const struct fsec *s, size_t insn)
{
	for (size_t i = 0; i < s->nrel; i++)
		if (s->rel[i].insn == insn)
			return &s->rel[i];
	return NULL;
}

static long sec_by_shndx(const struct fctx *c, size_t shndx)
{
	for (size_t i = 0; i < c->nsecs; i++)
		if (c->secs[i].shndx == shndx)
			return (long)i;
	return -1;
}

/* Functions: every FUNC symbol of a code section, ending where the next
 * begins (or at its size). */
static int find_funcs(struct fctx *c)
{
	for (size_t i = 0; i < c->nsyms; i++) {
		const struct fsym *y = &c->syms[i];
		long s = y->type == STT_FUNC ? sec_by_shndx(c, y->shndx) : -1;
		struct func *f;
		if (s < 0)
			continue;
		if (c->nfuncs >= MAX_FUNCS)
			return -E2BIG;
		f = &c->funcs[c->nfuncs++];
		memset(f, 0, sizeof(*f));
		snprintf(f->name, sizeof(f->name), "%s", y->name);
		f->sec = (size_t)s;
		f->start = y->value / sizeof(struct bpf_insn);
		f->end = y->size ? f->start + y->size / sizeof(struct bpf_insn) : c->secs[s].n;
	}
	for (size_t i = 0; i < c->nfuncs; i++) {
		struct func *f = &c->funcs[i];
		for (size_t j = 0; j < c->nfuncs; j++) {
			const struct func *g = &c->funcs[j];
			if (g->sec == f->sec && g->start > f->start && g->start < f->end)
				f->end = g->start;
		}
		if (f->end > c->secs[f->sec].n)
			f->end = c->secs[f->sec].n;
		if (f->end <= f->start)
			f->end = f->start + 1 <= c->secs[f->sec].n ? f->start + 1 : f->start;
		if (f->end - f->start > MAX_FUNC_INSNS)
			return -E2BIG;
	}
	return 0;
}

static long func_at(const struct fctx *c, size_t sec, size_t insn)
{
	for (size_t i = 0; i < c->nfuncs; i++)
		if (c->funcs[i].sec == sec && insn >= c->funcs[i].start && insn < c->funcs[i].end)
			return (long)i;
	return -1;
}

static int map_by_name(const struct fctx *c, const char *name)
{
	for (size_t i = 0; i < c->nmaps; i++)
		if (!strcmp(c->maps[i].name, name))
			return (int)i;
	return -1;
}

/* The internal map of a data section (libbpf names it "<obj>.rodata"...). */
static int map_of_section(const struct fctx *c, const char *secname)
{
	for (size_t i = 0; i < c->nmaps; i++) {
		const char *dot;
		if (!c->maps[i].internal)
			continue;
		dot = strchr(c->maps[i].name, '.');
		if (dot && !strncmp(dot, secname, strlen(dot)))
			return (int)i;
	}
	return -1;
}

/* ---- abstract values ------------------------------------------------------- */
static const struct aval A_SCALAR = { .t = V_SCALAR, .map = -1 };
static const struct aval A_TOP = { .t = V_TOP, .map = -1 };
static const struct aval A_UNINIT = { .t = V_UNINIT, .map = -1 };

static struct aval scalar_const(__s64 v)
{
	struct aval a = { .t = V_SCALAR, .known = 1, .map = -1, .v = v, .lo_known = 1, .lo = (__u32)v };
	return a;
}

static struct aval ptr(enum vt t, int map, bool known, __s64 off)
{
	struct aval a = { .t = (__u8)t, .known = known, .map = map, .v = known ? off : 0 };
	return a;
}

static bool is_ptr(const struct aval *a)
{
	return a->t >= V_CTX && a->t <= V_FUNC;
}

static bool aval_eq(const struct aval *a, const struct aval *b)
{
	return a->t == b->t && a->known == b->known && a->null == b->null && a->map == b->map &&
	       (!a->known || a->v == b->v) && a->kinds == b->kinds && a->lo_known == b->lo_known &&
	       (!a->lo_known || a->lo == b->lo);
}

static __u8 memkind_of(const struct aval *a)
{
	switch (a->t) {
	case V_CTX:
		return MK_CTX;
	case V_FP:
	case V_STK:
		return MK_STACK;
	case V_MAPVAL:
		return MK_MAP;
	case V_PKT:
		return MK_PKT;
	default:
		return MK_NONE;
	}
}

/* What an unknown value may point to: the kinds of memory joined into it. */
static __u8 kinds_of(const struct aval *a)
{
	if (a->t == V_TOP)
		return a->kinds ? a->kinds : MK_OTHER;
	if (a->t == V_SCALAR || a->t == V_UNINIT)
		return 0;
	return memkind_of(a) ? memkind_of(a) : MK_OTHER;
}

static struct aval top_of(const struct aval *a, const struct aval *b)
{
	struct aval t = A_TOP;

	t.kinds = kinds_of(a) | kinds_of(b);
	if (!t.kinds || (a->t == V_SCALAR && !(a->known && a->v == 0)) ||
	    (b->t == V_SCALAR && !(b->known && b->v == 0)))
		t.kinds |= MK_OTHER; /* a scalar may be anything */
	return t;
}

static struct aval join(struct aval a, struct aval b)
{
	if (a.t == V_UNINIT)
		return b;
	if (b.t == V_UNINIT)
		return a;
	if (a.t == V_TOP || b.t == V_TOP)
		return top_of(&a, &b);
	/* NULL meets a pointer that may be NULL */
	if (a.t == V_SCALAR && a.known && a.v == 0 && (b.t == V_MAPVAL || b.t == V_MAPPTR)) {
		b.null = 1;
		return b;
	}
	if (b.t == V_SCALAR && b.known && b.v == 0 && (a.t == V_MAPVAL || a.t == V_MAPPTR)) {
		a.null = 1;
		return a;
	}
	if ((a.t == V_FP && b.t == V_STK) || (a.t == V_STK && b.t == V_FP))
		return ptr(V_STK, -1, false, 0);
	if (a.t != b.t)
		return top_of(&a, &b);
	if (a.map != b.map)
		a.map = -1;
	if (!a.known || !b.known || a.v != b.v) {
		a.known = 0;
		a.v = 0;
	}
	if (!a.lo_known || !b.lo_known || a.lo != b.lo) {
		a.lo_known = 0;
		a.lo = 0;
	}
	a.null |= b.null;
	return a;
}

static bool state_join(struct state *dst, const struct state *src)
{
	bool changed = !dst->live;

	if (!dst->live) {
		*dst = *src;
		dst->live = true;
		return true;
	}
	for (int i = 0; i < 11; i++) {
		struct aval j = join(dst->r[i], src->r[i]);
		if (!aval_eq(&j, &dst->r[i])) {
			dst->r[i] = j;
			changed = true;
		}
	}
	for (int i = 0; i < MAX_STACK_SLOTS; i++) {
		struct aval j = join(dst->s[i], src->s[i]);
		if (!aval_eq(&j, &dst->s[i])) {
			dst->s[i] = j;
			changed = true;
		}
	}
	return changed;
}

/* ---- the device's instruction table (nfp JIT's instr_cb[]) -------------------- */
static bool nfp_opcode(__u8 code)
{
	__u8 cls = BPF_CLASS(code), op = BPF_OP(code), src = BPF_SRC(code);

	switch (cls) {
	case BPF_ALU64:
	case BPF_ALU:
		if (op == BPF_MOD)
			return false;
		if (op == BPF_END)
			return cls == BPF_ALU && src == BPF_TO_BE;
		if (op == BPF_NEG)
			return src == BPF_K;
		return op == BPF_MOV || op == BPF_XOR || op == BPF_AND || op == BPF_OR || op == BPF_ADD ||
		       op == BPF_SUB || op == BPF_MUL || op == BPF_DIV || op == BPF_LSH || op == BPF_RSH ||
		       op == BPF_ARSH;
	case BPF_LD:
		return code == (BPF_LD | BPF_IMM | BPF_DW) ||
		       ((BPF_MODE(code) == BPF_ABS || BPF_MODE(code) == BPF_IND) && BPF_SIZE(code) != BPF_DW);
	case BPF_LDX:
	case BPF_ST:
		return BPF_MODE(code) == BPF_MEM;
	case BPF_STX:
		return BPF_MODE(code) == BPF_MEM || (BPF_MODE(code) == BPF_ATOMIC &&
						     (BPF_SIZE(code) == BPF_W || BPF_SIZE(code) == BPF_DW));
	case BPF_JMP:
		if (op == BPF_JA)
			return src == BPF_K;
		if (op == BPF_CALL || op == BPF_EXIT)
			return true;
		return op != BPF_JCOND;
	case BPF_JMP32:
		return op != BPF_JA && op != BPF_CALL && op != BPF_EXIT && op != BPF_JCOND;
	}
	return false;
}

/* v4 forms (clang -mcpu=v4): sign-extending loads, movsx, sdiv/smod,
 * 64-bit bswap, gotol. */
static bool v4_insn(const struct bpf_insn *in)
{
	__u8 code = in->code, cls = BPF_CLASS(code), op = BPF_OP(code);

	if (cls == BPF_LDX && BPF_MODE(code) == BPF_MEMSX)
		return true;
	if ((cls == BPF_ALU || cls == BPF_ALU64) && op == BPF_MOV && in->off)
		return true;
	if ((cls == BPF_ALU || cls == BPF_ALU64) && (op == BPF_DIV || op == BPF_MOD) && in->off == 1)
		return true;
	if (cls == BPF_ALU64 && op == BPF_END)
		return true;
	if (cls == BPF_JMP32 && op == BPF_JA)
		return true;
	return false;
}

/* ---- transfer ------------------------------------------------------------------ */
static int slot_of(__s64 off)
{
	if (off >= 0 || off < -8 * MAX_STACK_SLOTS)
		return -1;
	return (int)((-off - 1) / 8);
}

static void note_depth(struct func *f, const struct aval *a, __s64 extra)
{
	if (a->t == V_FP && a->known && -(a->v + extra) > f->depth && a->v + extra < 0)
		f->depth = (int)-(a->v + extra);
}

static void mix_check(struct fctx *c, struct func *f, size_t i, const struct aval *base)
{
	__u8 *pk = &c->ptrkind[c->ptrkind_base[f->sec] + i], k = memkind_of(base), kinds;

	if (!k)
		return;
	*pk |= k;
	kinds = *pk & 0x0f;
	if ((kinds & (kinds - 1)) && !(*pk & 0x80)) {
		*pk |= 0x80;
		viol(c, MOAT_FIT_PTR_MIX, f, (long)i, -1, false,
		     "one instruction reaches different kinds of memory (stack, map value, "
		     "packet, context) on different paths; the device fixes one per instruction");
	}
}

static void map_word(struct fctx *c, struct func *f, size_t i, const struct aval *base, int off, int size,
		     bool atomic)
{
	struct fmap *m;
	__s64 at;

	if (base->map < 0 || (size_t)base->map >= c->nmaps || !base->known)
		return;
	m = &c->maps[base->map];
	at = base->v + off;
	for (__s64 b = at; b < at + size; b += 4 - (b & 3)) {
		size_t w;
		if (b < 0 || (size_t)(b / 4) >= m->nwords)
			return;
		w = (size_t)(b / 4);
		m->word[w] |= atomic ? 2 : 1;
		if ((m->word[w] & 3) == 3 && !(m->word[w] & 4)) {
			m->word[w] |= 4;
			viol(c, MOAT_FIT_MAP_WORD, f, (long)i, base->map, false,
			     "word at offset %lld of %s is both read and an atomic counter "
			     "(the device keeps counters big-endian)",
			     (long long)w * 4, m->name);
		}
	}
}

/* Checks of one instruction in the reporting pass. */
static void check_mem(struct fctx *c, struct func *f, size_t i, const struct bpf_insn *in,
		      const struct state *s, bool store, bool atomic)
{
	const struct moat_nic_offload *o = &c->prof->off;
	const struct aval *base = &s->r[store ? in->dst_reg : in->src_reg];
	int size = BPF_SIZE(in->code) == BPF_DW ? 8 :
		   BPF_SIZE(in->code) == BPF_W  ? 4 :
		   BPF_SIZE(in->code) == BPF_H  ? 2 :
						  1;

	mix_check(c, f, i, base);
	switch (base->t) {
	case V_FP:
		if (!base->known)
			viol(c, MOAT_FIT_STACK_VAR, f, (long)i, -1, false,
			     "stack access at a variable offset");
		if (atomic)
			viol(c, MOAT_FIT_ATOMIC_TARGET, f, (long)i, -1, false,
			     "atomic operation on the stack, not on a map value");
		break;
	case V_STK:
		if (atomic)
			viol(c, MOAT_FIT_ATOMIC_TARGET, f, (long)i, -1, false,
			     "atomic operation on a caller's stack, not on a map value");
		break;
	case V_MAPVAL:
		if (!base->known)
			viol(c, MOAT_FIT_MAP_OFFSET, f, (long)i, base->map, false,
			     "map value accessed at a variable offset");
		if (store && !atomic && !o->map_value_stores)
			viol(c, MOAT_FIT_MAP_STORE, f, (long)i, base->map, false,
			     "store into a value of map %s (use an atomic add, or a map update)",
			     base->map >= 0 ? c->maps[base->map].name : "?");
		if (atomic || !store)
			map_word(c, f, i, base, in->off, size, atomic);
		break;
	case V_CTX:
		if (store && !(o->ctx_write_rx_queue && in->off == XDP_MD_RX_QUEUE_OFF && size == 4))
			viol(c, MOAT_FIT_CTX_STORE, f, (long)i, -1, false,
			     "store into the context at offset %d", in->off);
		if (atomic)
			viol(c, MOAT_FIT_ATOMIC_TARGET, f, (long)i, -1, false,
			     "atomic operation on the context");
		break;
	case V_PKT:
		if (atomic)
			viol(c, MOAT_FIT_ATOMIC_TARGET, f, (long)i, -1, false,
			     "atomic operation on packet data");
		break;
	default: {
		__u8 k = base->t == V_TOP ? base->kinds : MK_OTHER, mem = k & 0x0f;

		if (mem & (mem - 1))
			viol(c, MOAT_FIT_PTR_MIX, f, (long)i, -1, false,
			     "one instruction reaches different kinds of memory (%s%s%s%s) on "
			     "different paths; the device fixes one per instruction",
			     mem & MK_STACK ? "stack " : "", mem & MK_MAP ? "map-value " : "",
			     mem & MK_PKT ? "packet " : "", mem & MK_CTX ? "context " : "");
		if (store && !atomic && !o->map_value_stores && (k & MK_MAP))
			viol(c, MOAT_FIT_MAP_STORE, f, (long)i, -1, false,
			     "store through a pointer that is a map value on some paths");
		else if (store && !atomic && !o->map_value_stores && (k & MK_OTHER || !k))
			viol(c, MOAT_FIT_MAP_STORE, f, (long)i, -1, true,
			     "store through a pointer of unknown origin: it may be a map value");
		else if (atomic && (k & ~MK_MAP))
			viol(c, MOAT_FIT_ATOMIC_TARGET, f, (long)i, -1, (k & ~MK_MAP & 0x0f) == 0,
			     "atomic operation through a pointer that may not be a map value");
		break;
	}
	}
}

static void check_stack_arg(struct fctx *c, struct func *f, size_t i, const struct aval *a, const char *what,
			    __u32 helper)
{
	if (!c->prof->off.map_keys_on_stack)
		return;
	if (a->t != V_FP && a->t != V_STK)
		viol(c, MOAT_FIT_MAP_ARG, f, (long)i, a->map, a->t == V_TOP, "%s of %s is not on the stack",
		     what, moat_bpf_helper_name(helper));
	else if (!a->known)
		viol(c, MOAT_FIT_MAP_ARG, f, (long)i, -1, true,
		     "%s of %s: stack offset not provably constant", what, moat_bpf_helper_name(helper));
	else if (-a->v % 4)
		viol(c, MOAT_FIT_MAP_ARG, f, (long)i, -1, false,
		     "%s of %s at stack offset %lld: not 4-byte aligned", what, moat_bpf_helper_name(helper),
		     (long long)a->v);
}

static void check_helper(struct fctx *c, struct func *f, size_t i, __u32 id, const struct state *s)
{
	const struct moat_nic_offload *o = &c->prof->off;
	const char *name = moat_bpf_helper_name(id);
	bool ok = false;

	for (size_t k = 0; k < o->nhelpers; k++)
		ok |= o->helpers[k] == id;
	if (id == BPF_FUNC_tail_call && !o->tail_calls)
		viol(c, MOAT_FIT_TAIL_CALL, f, (long)i, -1, false, "bpf_tail_call: no tail calls");
	else if (!ok)
		viol(c, MOAT_FIT_HELPER, f, (long)i, -1, false, "helper %s (%u) not supported",
		     name ? name : "?", id);
	switch (id) {
	case BPF_FUNC_map_lookup_elem:
	case BPF_FUNC_map_delete_elem:
		check_stack_arg(c, f, i, &s->r[2], "key", id);
		break;
	case BPF_FUNC_map_update_elem:
		check_stack_arg(c, f, i, &s->r[2], "key", id);
		check_stack_arg(c, f, i, &s->r[3], "value", id);
		break;
	case BPF_FUNC_perf_event_output: {
		const struct aval *fl = &s->r[3], *d = &s->r[4];
		if (o->perf_event_output == MOAT_PERF_CURRENT_CPU &&
		    !(fl->t == V_SCALAR && fl->lo_known && fl->lo == (__u32)BPF_F_CURRENT_CPU))
			viol(c, MOAT_FIT_PERF_FLAGS, f, (long)i, -1, !(fl->t == V_SCALAR && fl->lo_known),
			     "perf_event_output flags %s: the device reports events on the current "
			     "CPU only (BPF_F_CURRENT_CPU)",
			     fl->t == V_SCALAR && fl->lo_known ? "name a CPU index" :
								 "not provably BPF_F_CURRENT_CPU");
		if (!(d->t == V_FP || d->t == V_STK || d->t == V_MAPVAL || d->t == V_PKT ||
		      (d->t == V_SCALAR && d->known && d->v == 0)))
			viol(c, MOAT_FIT_HELPER, f, (long)i, -1, d->t == V_TOP,
			     "perf_event_output data must be stack, map value or packet");
		break;
	}
	default:
		break;
	}
}

static bool alu_pointer(__u8 op)
{
	return op == BPF_ADD || op == BPF_SUB || op == BPF_MOV;
}

static __s64 fold(__u8 op, __s64 a, __s64 b, bool is64, bool *ok)
{
	__u64 ua = (__u64)a, ub = (__u64)b, r;

	*ok = true;
	switch (op) {
	case BPF_ADD:
		r = ua + ub;
		break;
	case BPF_SUB:
		r = ua - ub;
		break;
	case BPF_AND:
		r = ua & ub;
		break;
	case BPF_OR:
		r = ua | ub;
		break;
	case BPF_XOR:
		r = ua ^ ub;
		break;
	case BPF_LSH:
		r = ub < 64 ? ua << ub : 0;
		break;
	case BPF_RSH:
		r = ub < 64 ? (is64 ? ua : (__u32)ua) >> ub : 0;
		break;
	case BPF_MUL:
		r = ua * ub;
		break;
	case BPF_MOV:
		r = ub;
		break;
	case BPF_NEG:
		r = -ua;
		break;
	default:
		*ok = false;
		return 0;
	}
	return is64 ? (__s64)r : (__s64)(__u32)r;
}

/* One instruction: updates s to the state after it; returns the number of
 * instructions it takes (2 for a 64-bit immediate load).  In the reporting
 * pass it also checks. */
static int step(struct fctx *c, struct func *f, size_t i, struct state *s)
{
	const struct fsec *sec = &c->secs[f->sec];
	const struct bpf_insn *in = &sec->insns[i];
	const struct moat_nic_offload *o = &c->prof->off;
	__u8 code = in->code, cls = BPF_CLASS(code), op = BPF_OP(code);
	bool rep = c->reporting;

	if (in->dst_reg > 10 || in->src_reg > 10) {
		if (rep)
			viol(c, MOAT_FIT_OPCODE, f, (long)i, -1, false, "register beyond r10");
		return 1;
	}
	/* as the nfp verifier counts it: any instruction naming R6-R9 as dst */
	if (in->dst_reg >= 6 && in->dst_reg <= 9)
		f->callee_saved = true;
	if (rep) {
		if (v4_insn(in) && o->isa < 4)
			viol(c, MOAT_FIT_V4, f, (long)i, -1, false,
			     "ISA v4 instruction (opcode 0x%02x%s): build with -mcpu=v3", code,
			     in->off ? ", signed/sign-extending form" : "");
		else if ((cls == BPF_ALU || cls == BPF_ALU64) && op == BPF_MOD)
			viol(c, MOAT_FIT_MOD, f, (long)i, -1, false, "modulo (BPF_MOD) not supported");
		else if (o->supported && !nfp_opcode(code))
			viol(c, MOAT_FIT_OPCODE, f, (long)i, -1, false,
			     "opcode 0x%02x is not in the device's instruction table", code);
	}

	switch (cls) {
	case BPF_ALU:
	case BPF_ALU64: {
		bool is64 = cls == BPF_ALU64;
		struct aval *d = &s->r[in->dst_reg];
		struct aval srcv = BPF_SRC(code) == BPF_X ?
					   s->r[in->src_reg] :
					   scalar_const(is64 ? (__s64)in->imm : (__s64)(__u32)in->imm);

		if (rep && (op == BPF_MUL || op == BPF_DIV) && !v4_insn(in)) {
			bool dk = d->t == V_SCALAR && d->known && (__u64)d->v <= 0xffffffffull;
			bool sk = srcv.t == V_SCALAR && srcv.known && (__u64)srcv.v <= 0xffffffffull;
			if (op == BPF_DIV && !(srcv.t == V_SCALAR && srcv.known))
				viol(c, MOAT_FIT_MULDIV, f, (long)i, -1, false,
				     "division by a non-constant: the device divides by constants only");
			else if (op == BPF_DIV && BPF_SRC(code) == BPF_K && in->imm < 0)
				viol(c, MOAT_FIT_MULDIV, f, (long)i, -1, false,
				     "division by a negative constant");
			else if (!(dk && (op == BPF_DIV || sk)))
				viol(c, MOAT_FIT_MULDIV, f, (long)i, -1, true,
				     "%s: operands not provably within u32",
				     op == BPF_MUL ? "multiplication" : "division");
		}
		if (op == BPF_MOV) {
			if (!is64 || in->off)
				*d = srcv.t == V_SCALAR && srcv.known && !in->off ?
					     scalar_const((__s64)(__u32)srcv.v) :
					     A_SCALAR;
			else
				*d = srcv;
		} else if (is64 && is_ptr(d) && alu_pointer(op) && srcv.t == V_SCALAR) {
			if (d->known && srcv.known)
				d->v = op == BPF_ADD ? d->v + srcv.v : d->v - srcv.v;
			else
				d->known = 0, d->v = 0;
		} else if (is64 && op == BPF_ADD && d->t == V_SCALAR && is_ptr(&srcv)) {
			struct aval p = srcv;
			if (p.known && d->known)
				p.v += d->v;
			else
				p.known = 0, p.v = 0;
			*d = p;
		} else if (is64 && op == BPF_SUB && is_ptr(d) &&
			   is_ptr(&srcv)) { /* NOLINT(bugprone-branch-clone): before the pointer-arithmetic branch */
			*d = A_SCALAR;
		} else if (d->t == V_SCALAR && srcv.t == V_SCALAR && d->known && srcv.known) {
			bool ok;
			__s64 v = fold(op, d->v, srcv.v, is64, &ok);
			*d = ok ? scalar_const(v) : A_SCALAR;
		} else if (op == BPF_NEG && d->t == V_SCALAR && d->known) {
			bool ok;
			*d = scalar_const(fold(op, d->v, 0, is64, &ok));
		} else if (op == BPF_OR && d->t == V_SCALAR && srcv.t == V_SCALAR &&
			   ((srcv.lo_known && srcv.lo == 0xffffffffu) ||
			    (d->lo_known && d->lo == 0xffffffffu))) {
			/* e.g. (len << 32) | BPF_F_CURRENT_CPU: the index bits are known */
			*d = A_SCALAR;
			d->lo_known = 1;
			d->lo = 0xffffffffu;
		} else if (is64 && (op == BPF_ADD || op == BPF_SUB) &&
			   (is_ptr(d) || d->t == V_TOP || is_ptr(&srcv) || srcv.t == V_TOP)) {
			*d = top_of(d, &srcv); /* pointer arithmetic we cannot follow */
		} else {
			*d = A_SCALAR;
		}
		if (in->dst_reg == 10)
			s->r[10] = ptr(V_FP, -1, true, 0);
		note_depth(f, d, 0);
		return 1;
	}
	case BPF_LD:
		if (code == (BPF_LD | BPF_IMM | BPF_DW)) {
			const struct reloc *rl = reloc_at(sec, i);
			struct aval *d = &s->r[in->dst_reg];
			if (i + 1 >= sec->n)
				return 1;
			if (rl && rl->sym < c->nsyms) {
				const struct fsym *y = &c->syms[rl->sym];
				long ysec = sec_by_shndx(c, y->shndx);
				Elf_Scn *ss = y->shndx && y->shndx < 0xff00 ? elf_getscn(c->elf, y->shndx) :
									      NULL;
				GElf_Shdr sh;
				size_t shstr;
				const char *secname = NULL;
				if (ss && gelf_getshdr(ss, &sh) && !elf_getshdrstrndx(c->elf, &shstr))
					secname = elf_strptr(c->elf, shstr, sh.sh_name);
				if (ysec >= 0) {
					*d = ptr(V_FUNC, -1, false, 0);
				} else if (secname && !strcmp(secname, ".maps")) {
					*d = ptr(V_MAPPTR, map_by_name(c, y->name), true, 0);
				} else if (secname) {
					*d = ptr(V_MAPVAL, map_of_section(c, secname), true,
						 (__s64)(y->type == STT_SECTION ? 0 : y->value) + in->imm);
				} else {
					*d = A_TOP; /* an extern */
				}
			} else {
				*d = scalar_const((__s64)(((__u64)(__u32)in[1].imm << 32) | (__u32)in->imm));
			}
			return 2;
		}
		/* LD_ABS / LD_IND */
		s->r[0] = A_SCALAR;
		for (int r = 1; r <= 5; r++)
			s->r[r] = A_UNINIT;
		return 1;
	case BPF_LDX: {
		const struct aval *b = &s->r[in->src_reg];
		struct aval res = A_SCALAR;
		int size = BPF_SIZE(code) == BPF_DW ? 8 :
			   BPF_SIZE(code) == BPF_W  ? 4 :
			   BPF_SIZE(code) == BPF_H  ? 2 :
						      1;

		if (rep)
			check_mem(c, f, i, in, s, false, false);
		note_depth(f, b, in->off);
		if (b->t == V_FP && b->known) {
			int sl = slot_of(b->v + in->off);
			if (size == 8 && sl >= 0 && !((b->v + in->off) % 8))
				res = s->s[sl].t == V_UNINIT ? A_SCALAR : s->s[sl];
		} else if (b->t == V_CTX) {
			__s64 off = (b->known ? b->v : 0) + in->off;
			if (off == 0 || off == 8)
				res = ptr(V_PKT, -1, true, 0);
			else if (off == 4)
				res = ptr(V_PKTEND, -1, true, 0);
		} else if ((b->t == V_STK || b->t == V_TOP || b->t == V_FP) && size == 8) {
			res = A_TOP; /* a spilled pointer, perhaps */
			res.kinds = MK_OTHER;
		}
		s->r[in->dst_reg] = res;
		return 1;
	}
	case BPF_ST:
	case BPF_STX: {
		const struct aval *b = &s->r[in->dst_reg];
		bool atomic = cls == BPF_STX && BPF_MODE(code) == BPF_ATOMIC;
		int size = BPF_SIZE(code) == BPF_DW ? 8 :
			   BPF_SIZE(code) == BPF_W  ? 4 :
			   BPF_SIZE(code) == BPF_H  ? 2 :
						      1;

		if (rep) {
			check_mem(c, f, i, in, s, true, atomic);
			if (atomic && (in->imm != BPF_ADD || !(o->atomics & MOAT_ATOMIC_ADD))) {
				const char *what = in->imm == (BPF_ADD | BPF_FETCH) ? "fetch-and-add" :
						   in->imm == BPF_XCHG              ? "exchange" :
						   in->imm == BPF_CMPXCHG           ? "compare-and-exchange" :
						   (in->imm & ~BPF_FETCH) == BPF_OR ? "or" :
						   (in->imm & ~BPF_FETCH) == BPF_AND ? "and" :
						   (in->imm & ~BPF_FETCH) == BPF_XOR ? "xor" :
										       "add";
				viol(c, MOAT_FIT_ATOMIC, f, (long)i, b->map, false,
				     "atomic %s: only atomic add without fetch is supported", what);
			}
			if (atomic && s->r[in->src_reg].t != V_SCALAR)
				viol(c, MOAT_FIT_ATOMIC, f, (long)i, -1, s->r[in->src_reg].t == V_TOP,
				     "atomic operand is not a scalar");
		}
		note_depth(f, b, in->off);
		if (b->t == V_FP && b->known) {
			__s64 at = b->v + in->off;
			int sl = slot_of(at);
			if (sl >= 0) {
				if (size == 8 && !(at % 8) && !atomic)
					s->s[sl] = cls == BPF_ST ? scalar_const(in->imm) : s->r[in->src_reg];
				else
					s->s[sl] = A_SCALAR;
			}
		} else if (b->t == V_FP || b->t == V_TOP) {
			for (int k = 0; k < MAX_STACK_SLOTS; k++)
				if (s->s[k].t != V_UNINIT)
					s->s[k] = A_TOP;
		}
		if (atomic && (in->imm & BPF_FETCH)) {
			if (in->imm == BPF_CMPXCHG)
				s->r[0] = A_SCALAR;
			else
				s->r[in->src_reg] = A_SCALAR;
		}
		return 1;
	}
	case BPF_JMP:
	case BPF_JMP32:
		if (op == BPF_CALL) {
			const struct reloc *rl = reloc_at(sec, i);
			if (in->src_reg == BPF_PSEUDO_KFUNC_CALL ||
			    (rl && rl->sym < c->nsyms && c->syms[rl->sym].shndx == SHN_UNDEF)) {
				if (rep)
					viol(c, MOAT_FIT_CALL, f, (long)i, -1, false,
					     "kfunc call: not available offloaded");
				s->r[0] = A_TOP;
			} else if (in->src_reg == BPF_PSEUDO_CALL) {
				long tsec = (long)f->sec, tgt = (long)i + in->imm + 1, callee;
				if (rl && rl->sym < c->nsyms) {
					tsec = sec_by_shndx(c, c->syms[rl->sym].shndx);
					tgt = (long)(c->syms[rl->sym].value / 8) + in->imm + 1;
				}
				callee = tsec >= 0 ? func_at(c, (size_t)tsec, (size_t)tgt) : -1;
				if (rep && !o->bpf_calls)
					viol(c, MOAT_FIT_CALL, f, (long)i, -1, false,
					     "bpf-to-bpf call: not supported by the device");
				if (callee >= 0) {
					struct func *g = &c->funcs[callee];
					struct state e;
					memset(&e, 0, sizeof(e));
					for (int r = 1; r <= 5; r++) {
						e.r[r] = s->r[r];
						if (e.r[r].t == V_FP)
							e.r[r].t = V_STK;
					}
					e.r[10] = ptr(V_FP, -1, true, 0);
					f->calls[callee] = true;
					if (!rep && state_join(&g->entry, &e))
						g->reached = true, g->entry.live = true;
					s->r[0] = g->ret.t == V_UNINIT ? A_SCALAR : g->ret;
				} else {
					s->r[0] = A_TOP;
				}
				/* the callee may write what the caller's stack pointers
				 * reach: from the lowest such pointer up */
				{
					__s64 low = 0;
					bool any = false;
					for (int r = 1; r <= 5; r++)
						if (s->r[r].t == V_FP) {
							any = true;
							if (!s->r[r].known)
								low = -8 * MAX_STACK_SLOTS;
							else if (s->r[r].v < low)
								low = s->r[r].v;
						}
					for (int k = 0; any && k < MAX_STACK_SLOTS; k++)
						if (-8 * (k + 1) >= low && s->s[k].t != V_UNINIT &&
						    s->s[k].t != V_SCALAR)
							s->s[k] = A_TOP;
				}
			} else {
				__u32 id = (__u32)in->imm;
				if (rep)
					check_helper(c, f, i, id, s);
				if (id == BPF_FUNC_map_lookup_elem && s->r[1].t == V_MAPPTR) {
					int m = s->r[1].map;
					bool outer = m >= 0 &&
						     (c->maps[m].type == BPF_MAP_TYPE_ARRAY_OF_MAPS ||
						      c->maps[m].type == BPF_MAP_TYPE_HASH_OF_MAPS);
					s->r[0] = outer ? ptr(V_MAPPTR, -1, true, 0) :
							  ptr(V_MAPVAL, m, true, 0);
					s->r[0].null = 1;
				} else if (id == BPF_FUNC_map_lookup_elem) {
					s->r[0] = ptr(V_MAPVAL, -1, true, 0);
					s->r[0].null = 1;
				} else {
					s->r[0] = A_SCALAR;
				}
				if (c->r && id < 64 * MOAT_FIT_HELPER_WORDS && rep && c->prog) {
					for (size_t p = 0; p < c->r->nprogs; p++)
						if (!strcmp(c->r->progs[p].name, c->prog))
							c->r->progs[p].helpers[id / 64] |= 1ull << (id % 64);
				}
			}
			for (int r = 1; r <= 5; r++)
				s->r[r] = A_UNINIT;
			return 1;
		}
		return 1;
	}
	return 1;
}

/* Successors of instruction i (after step), -1 for none. */
static int succs(const struct fsec *sec, size_t i, int width, long out[2])
{
	const struct bpf_insn *in = &sec->insns[i];
	__u8 cls = BPF_CLASS(in->code), op = BPF_OP(in->code);
	int n = 0;

	if (cls == BPF_JMP || cls == BPF_JMP32) {
		if (op == BPF_EXIT && cls == BPF_JMP)
			return 0;
		if (op == BPF_JA) {
			out[n++] = (long)i + 1 + (cls == BPF_JMP32 ? in->imm : in->off);
			return n;
		}
		if (op != BPF_CALL)
			out[n++] = (long)i + 1 + in->off;
	}
	out[n++] = (long)i + width;
	return n;
}

static int analyze_func(struct fctx *c, struct func *f)
{
	const struct fsec *sec = &c->secs[f->sec];
	size_t n = f->end - f->start, *work, nw = 0;
	int rc = 0;

	work = calloc(n + 1, sizeof(*work));
	if (!work)
		return -ENOMEM;
	memset(f->queued, 0, n);
	if (state_join(&f->st[0], &f->entry)) {
		work[nw++] = 0;
		f->queued[0] = true;
	}
	/* a changed entry re-runs everything reachable; otherwise only what
	 * changed: push every live insn once so callee summaries propagate */
	for (size_t k = 0; k < n; k++)
		if (f->st[k].live && !f->queued[k]) {
			work[nw++] = k;
			f->queued[k] = true;
		}
	while (nw) {
		size_t k = work[--nw];
		struct state s = f->st[k];
		long nx[2];
		int width, ns;

		f->queued[k] = false;
		width = step(c, f, f->start + k, &s);
		ns = succs(sec, f->start + k, width, nx);
		for (int j = 0; j < ns; j++) {
			long t = nx[j] - (long)f->start;
			if (t < 0 || (size_t)t >= n)
				continue; /* leaves the function: the verifier would refuse */
			if (BPF_CLASS(sec->insns[f->start + k].code) == BPF_JMP &&
			    BPF_OP(sec->insns[f->start + k].code) == BPF_EXIT)
				continue;
			if (state_join(&f->st[t], &s) && !f->queued[t]) {
				f->queued[t] = true;
				work[nw++] = (size_t)t;
			}
		}
		/* return value of a subprogram */
		if (BPF_CLASS(sec->insns[f->start + k].code) == BPF_JMP &&
		    BPF_OP(sec->insns[f->start + k].code) == BPF_EXIT)
			f->ret = join(f->ret, s.r[0]);
	}
	free(work);
	return rc;
}

static void report_func(struct fctx *c, struct func *f)
{
	size_t n = f->end - f->start;

	for (size_t k = 0; k < n; k++) {
		struct state s;
		if (!f->st[k].live)
			continue;
		s = f->st[k];
		if (step(c, f, f->start + k, &s) == 2)
			k++;
	}
}

static int stack_chain(const struct fctx *c, size_t fi, int level)
{
	const struct func *f = &c->funcs[fi];
	int own = f->depth, best = 0;

	if (level > 0)
		own += 4 + (f->callee_saved ? 32 : 0); /* return address, saved R6-R9 */
	own = (own + 63) / 64 * 64;
	if (level > 8)
		return own;
	for (size_t g = 0; g < c->nfuncs; g++)
		if (f->calls[g] && g != fi) {
			int d = stack_chain(c, g, level + 1);
			if (d > best)
				best = d;
		}
	return own + best;
}

static int check_prog(struct fctx *c, size_t pi, struct moat_fit_prog *p)
{
	struct func *main = &c->funcs[pi];
	bool again = true;
	int rounds = 0, rc = 0;

	for (size_t i = 0; i < c->nfuncs; i++) {
		struct func *f = &c->funcs[i];
		size_t n = f->end - f->start;
		memset(&f->entry, 0, sizeof(f->entry));
		memset(&f->ret, 0, sizeof(f->ret));
		memset(f->calls, 0, sizeof(f->calls));
		f->reached = false;
		f->depth = 0;
		f->callee_saved = false;
		free(f->st);
		free(f->queued);
		f->st = calloc(n ? n : 1, sizeof(*f->st));
		f->queued = calloc(n ? n : 1, 1);
		if (!f->st || !f->queued)
			return -ENOMEM;
	}
	main->reached = true;
	main->entry.live = true;
	main->entry.r[1] = ptr(V_CTX, -1, true, 0);
	main->entry.r[10] = ptr(V_FP, -1, true, 0);

	c->reporting = false;
	while (again && rounds++ < MAX_ROUNDS) {
		again = false;
		for (size_t i = 0; i < c->nfuncs; i++) {
			struct func *f = &c->funcs[i];
			struct aval ret = f->ret;
			if (!f->reached)
				continue;
			rc = analyze_func(c, f);
			if (rc)
				return rc;
			if (!aval_eq(&ret, &f->ret))
				again = true;
		}
		/* entries that grew since their last analysis */
		for (size_t i = 0; i < c->nfuncs; i++) {
			struct func *f = &c->funcs[i];
			if (f->reached && f->entry.live) {
				struct state tmp = f->st[0];
				if (state_join(&tmp, &f->entry))
					again = true;
			}
		}
	}

	if (again)
		return -ELOOP; /* no fixed point: the results would not be sound */
	c->reporting = true;
	p->insns = 0;
	p->funcs = 0;
	for (size_t i = 0; i < c->nfuncs; i++) {
		struct func *f = &c->funcs[i];
		if (!f->reached)
			continue;
		p->insns += (__u32)(f->end - f->start);
		p->funcs++;
		report_func(c, f);
	}
	p->stack = (__u32)stack_chain(c, pi, 0);
	if (c->prof->off.max_insns && p->insns > c->prof->off.max_insns)
		viol(c, MOAT_FIT_INSNS, main, -1, -1, false,
		     "%u BPF instructions, more than the device's %u%s", p->insns, c->prof->off.max_insns,
		     c->prof->off.fw_reported & MOAT_FW_MAX_INSNS ? " (firmware-reported limit)" : "");
	if (p->stack > c->prof->off.max_stack)
		viol(c, MOAT_FIT_STACK, main, -1, -1, false,
		     "%u bytes of stack over the call chain (64-byte frames), more than %u", p->stack,
		     c->prof->off.max_stack);
	return 0;
}

/* ---- maps ------------------------------------------------------------------------ */
static bool percpu_type(__u32 t)
{
	return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       t == BPF_MAP_TYPE_LRU_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

static int read_maps(struct fctx *c)
{
	struct bpf_map *m;
	size_t n = 0;

	bpf_object__for_each_map(m, c->obj)
		n++;
	c->maps = calloc(n ? n : 1, sizeof(*c->maps));
	if (!c->maps)
		return -ENOMEM;
	bpf_object__for_each_map(m, c->obj) {
		struct fmap *fm = &c->maps[c->nmaps++];
		snprintf(fm->name, sizeof(fm->name), "%s", bpf_map__name(m));
		fm->type = bpf_map__type(m);
		fm->ks = bpf_map__key_size(m);
		fm->vs = bpf_map__value_size(m);
		fm->me = bpf_map__max_entries(m);
		fm->flags = bpf_map__map_flags(m);
		fm->internal = bpf_map__is_internal(m);
		fm->nwords = (fm->vs + 3) / 4;
		fm->word = calloc(fm->nwords ? fm->nwords : 1, 1);
		if (!fm->word)
			return -ENOMEM;
	}
	return 0;
}

static void check_maps(struct fctx *c)
{
	const struct moat_nic_offload *o = &c->prof->off;
	struct moat_fit_report *r = c->r;
	__u32 ndev = 0;

	c->prog = NULL;
	r->maps = calloc(c->nmaps ? c->nmaps : 1, sizeof(*r->maps));
	if (!r->maps)
		return;
	for (size_t i = 0; i < c->nmaps; i++) {
		const struct fmap *m = &c->maps[i];
		struct moat_fit_map *rm = &r->maps[r->nmaps++];
		const char *tn = libbpf_bpf_map_type_str(m->type);
		bool host = m->type < 64 && (o->host_map_types & (1ull << m->type));
		bool dev = m->type < 64 && (o->map_types & (1ull << m->type));

		snprintf(rm->name, sizeof(rm->name), "%s", m->name);
		rm->type = m->type;
		rm->key_size = m->ks;
		rm->value_size = m->vs;
		rm->max_entries = m->me;
		rm->flags = m->flags;
		rm->internal = m->internal;
		rm->on_device = !host;
		if (!tn)
			tn = "?";
		if (!dev && !host) {
			if (m->type == BPF_MAP_TYPE_LPM_TRIE)
				viol(c, MOAT_FIT_LPM, NULL, -1, (int)i, false,
				     "map %s: LPM trie (use one hash per prefix length)", m->name);
			else if (percpu_type(m->type))
				viol(c, MOAT_FIT_PERCPU, NULL, -1, (int)i, false,
				     "map %s: per-CPU map type %s", m->name, tn);
			else if (m->type == BPF_MAP_TYPE_PROG_ARRAY)
				viol(c, MOAT_FIT_TAIL_CALL, NULL, -1, (int)i, false,
				     "map %s: program array (tail calls)", m->name);
			else
				viol(c, MOAT_FIT_MAP_TYPE, NULL, -1, (int)i, false,
				     "map %s: type %s cannot be offloaded (hash and array only)", m->name,
				     tn);
		}
		if (host)
			continue;
		ndev++;
		r->entries += m->me;
		if (m->flags & ~o->map_flags)
			viol(c, MOAT_FIT_MAP_FLAGS, NULL, -1, (int)i, false,
			     "map %s: map_flags 0x%x%s not allowed", m->name, m->flags & ~o->map_flags,
			     m->internal ? " (global data: .rodata/.data/.bss become maps with flags; "
					   "use a config map)" :
					   "");
		if (m->ks > o->max_key_size)
			viol(c, MOAT_FIT_MAP_SIZE, NULL, -1, (int)i, false,
			     "map %s: key of %u bytes, more than %u", m->name, m->ks, o->max_key_size);
		if (m->vs > o->max_value_size)
			viol(c, MOAT_FIT_MAP_SIZE, NULL, -1, (int)i, false,
			     "map %s: value of %u bytes, more than %u", m->name, m->vs, o->max_value_size);
		if ((m->ks + 7) / 8 * 8 + (m->vs + 7) / 8 * 8 > o->max_elem_size)
			viol(c, MOAT_FIT_MAP_SIZE, NULL, -1, (int)i, false,
			     "map %s: entry of %u bytes (key and value rounded up to 8), more than %u",
			     m->name, (m->ks + 7) / 8 * 8 + (m->vs + 7) / 8 * 8, o->max_elem_size);
	}
	if (ndev > o->max_maps)
		viol(c, MOAT_FIT_MAP_BUDGET, NULL, -1, -1, false, "%u maps on the device, more than %u", ndev,
		     o->max_maps);
	if (r->entries > o->max_entries)
		viol(c, MOAT_FIT_MAP_BUDGET, NULL, -1, -1, false,
		     "%llu entries over all device maps, more than the shared budget of %llu",
		     (unsigned long long)r->entries, (unsigned long long)o->max_entries);
}

/* ---- BTF sanity ------------------------------------------------------------------ */
/* libbpf 1.1 (Debian 12's) follows BTF type ids and name offsets without
 * checking them: a malformed object crashes bpf_object__open (libbpf 1.3
 * checks the same as here, btf_sanity_check()).  Every type's name and
 * every id it refers to must exist before libbpf sees the object. */
static int btf_type_ok(const struct btf *b, __u32 id, char *err, size_t errlen)
{
	const struct btf_type *t = btf__type_by_id(b, id);
	__u32 n = btf__type_cnt(b), ref[2] = { 0, 0 };
	int nref = 0;

#define BAD_STR(off) (!btf__str_by_offset(b, (off)))
#define BAD_ID(x)    ((x) >= n)
	if (!t || BAD_STR(t->name_off))
		goto bad;
	switch (btf_kind(t)) {
	case BTF_KIND_UNKN:
	case BTF_KIND_INT:
	case BTF_KIND_FWD:
	case BTF_KIND_FLOAT:
		break;
	case BTF_KIND_PTR:
	case BTF_KIND_TYPEDEF:
	case BTF_KIND_VOLATILE:
	case BTF_KIND_CONST:
	case BTF_KIND_RESTRICT:
	case BTF_KIND_VAR:
	case BTF_KIND_DECL_TAG:
	case BTF_KIND_TYPE_TAG:
		ref[nref++] = t->type;
		break;
	case BTF_KIND_ARRAY:
		ref[nref++] = btf_array(t)->type;
		ref[nref++] = btf_array(t)->index_type;
		break;
	case BTF_KIND_STRUCT:
	case BTF_KIND_UNION:
		for (__u16 i = 0; i < btf_vlen(t); i++)
			if (BAD_STR(btf_members(t)[i].name_off) || BAD_ID(btf_members(t)[i].type))
				goto bad;
		break;
	case BTF_KIND_ENUM:
		for (__u16 i = 0; i < btf_vlen(t); i++)
			if (BAD_STR(btf_enum(t)[i].name_off))
				goto bad;
		break;
	case BTF_KIND_ENUM64:
		for (__u16 i = 0; i < btf_vlen(t); i++)
			if (BAD_STR(btf_enum64(t)[i].name_off))
				goto bad;
		break;
	case BTF_KIND_FUNC:
		if (BAD_ID(t->type) || !btf_is_func_proto(btf__type_by_id(b, t->type)))
			goto bad;
		break;
	case BTF_KIND_FUNC_PROTO:
		ref[nref++] = t->type;
		for (__u16 i = 0; i < btf_vlen(t); i++)
			if (BAD_STR(btf_params(t)[i].name_off) || BAD_ID(btf_params(t)[i].type))
				goto bad;
		break;
	case BTF_KIND_DATASEC:
		for (__u16 i = 0; i < btf_vlen(t); i++)
			if (BAD_ID(btf_var_secinfos(t)[i].type))
				goto bad;
		break;
	default:
		goto bad;
	}
	for (int i = 0; i < nref; i++)
		if (BAD_ID(ref[i]))
			goto bad;
	return 0;
#undef BAD_STR
#undef BAD_ID
bad:
	snprintf(err, errlen, "BTF type [%u] has a name or a reference that does not exist", id);
	return -EINVAL;
}

static int btf_check(struct fctx *c, char *err, size_t errlen)
{
	struct btf *b;
	int rc = 0;

	if (!c->btf_data)
		return 0;
	b = btf__new(c->btf_data, (__u32)c->btf_size);
	if (!b) {
		snprintf(err, errlen, "its BTF does not parse");
		return -EINVAL;
	}
	for (__u32 id = 1; id < btf__type_cnt(b) && !rc; id++)
		rc = btf_type_ok(b, id, err, errlen);
	btf__free(b);
	return rc;
}

/* ---- entry ----------------------------------------------------------------------- */
static int silent(enum libbpf_print_level l, const char *fmt, va_list ap)
{
	(void)l;
	(void)fmt;
	(void)ap;
	return 0;
}

int moat_fit_check(const char *path, const struct moat_nic_profile *prof, struct moat_fit_report *r,
		   char *err, size_t errlen)
{
	struct fctx *c;
	struct bpf_program *bp;
	libbpf_print_fn_t old;
	size_t nprog = 0, base = 0;
	char why[160];
	int rc = 0;

	memset(r, 0, sizeof(*r));
	if (err && errlen)
		err[0] = 0;
	snprintf(r->profile, sizeof(r->profile), "%s", prof->name);
	if (!prof->off.supported) {
		snprintf(err, errlen, "profile %s: the NIC has no XDP hardware offload", prof->name);
		return -EOPNOTSUPP;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->prof = prof;
	c->r = r;
	c->fd = -1;
	r->viol = calloc(MOAT_FIT_MAX_VIOLATIONS, sizeof(*r->viol));
	if (!r->viol) {
		rc = -ENOMEM;
		goto out;
	}
	c->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		goto out;
	}
	/* our own reading first: libbpf 1.1 trusts what it is given */
	why[0] = 0;
	rc = read_elf(c, why, sizeof(why));
	if (!rc)
		rc = btf_check(c, why, sizeof(why));
	if (!rc) {
		old = libbpf_set_print(silent);
		c->obj = bpf_object__open_file(path, NULL);
		libbpf_set_print(old);
	}
	if (!rc && !c->obj) {
		char lerr[128];
		rc = -errno;
		libbpf_strerror(rc, lerr, sizeof(lerr));
		snprintf(err, errlen, "%s: not a BPF object libbpf can open: %s", path, lerr);
		if (rc <= -4000) /* libbpf's own codes: a malformed object */
			rc = -EINVAL;
		goto out;
	}
	if (!rc)
		rc = read_maps(c);
	if (!rc)
		rc = find_funcs(c);
	if (rc) {
		snprintf(err, errlen, "%s: cannot read the object: %s", path,
			 why[0]       ? why :
			 rc == -E2BIG ? "too large (a function of more than 65,536 or an object of "
					"more than 1,000,000 instructions, or more than 256 functions)" :
					strerror(-rc));
		goto out;
	}
	c->ptrkind = calloc(c->total_insns + 1, 1);
	c->ptrkind_base = calloc(c->nsecs + 1, sizeof(*c->ptrkind_base));
	if (!c->ptrkind || !c->ptrkind_base) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < c->nsecs; i++) {
		c->ptrkind_base[i] = base;
		base += c->secs[i].n;
	}
	bpf_object__for_each_program(bp, c->obj)
		nprog++;
	r->progs = calloc(nprog ? nprog : 1, sizeof(*r->progs));
	if (!r->progs) {
		rc = -ENOMEM;
		goto out;
	}
	check_maps(c);
	bpf_object__for_each_program(bp, c->obj) {
		struct moat_fit_prog *p = &r->progs[r->nprogs];
		long fi = -1;
		for (size_t i = 0; i < c->nfuncs; i++)
			if (!strcmp(c->funcs[i].name, bpf_program__name(bp)) &&
			    !strcmp(c->secs[c->funcs[i].sec].name, bpf_program__section_name(bp)))
				fi = (long)i;
		if (fi < 0)
			continue;
		r->nprogs++;
		snprintf(p->name, sizeof(p->name), "%s", bpf_program__name(bp));
		snprintf(p->section, sizeof(p->section), "%s", bpf_program__section_name(bp));
		c->prog = p->name;
		rc = check_prog(c, (size_t)fi, p);
		if (rc) {
			snprintf(err, errlen, "%s: program %s: %s", path, p->name,
				 rc == -ELOOP ? "the register analysis did not converge" : strerror(-rc));
			goto out;
		}
	}
out:
	if (c->elf)
		elf_end(c->elf);
	if (c->fd >= 0)
		close(c->fd);
	bpf_object__close(c->obj);
	for (size_t i = 0; i < c->nsecs; i++) {
		free(c->secs[i].rel);
		free(c->secs[i].lines);
	}
	for (size_t i = 0; i < c->nmaps; i++)
		free(c->maps[i].word);
	for (size_t i = 0; i < c->nfuncs; i++) {
		free(c->funcs[i].st);
		free(c->funcs[i].queued);
	}
	free(c->secs);
	free(c->syms);
	free(c->maps);
	free(c->ptrkind);
	free(c->ptrkind_base);
	free(c);
	return rc;
}

void moat_fit_report_free(struct moat_fit_report *r)
{
	if (!r)
		return;
	free(r->progs);
	free(r->maps);
	free(r->viol);
	memset(r, 0, sizeof(*r));
}
