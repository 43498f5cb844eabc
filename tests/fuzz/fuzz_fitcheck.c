// SPDX-License-Identifier: Apache-2.0
/* The offload fit checker (moatctl offload check --profile hw/nfp.json OBJ)
 * on object bytes: the input is the object, checked from a memory file the
 * way moatd checks its embedded pre-filter (/proc/self/fd/N).
 *
 * Whatever the bytes: no crash, leak or out-of-bounds read (ASan); a
 * failure is a negative errno with a message naming the object; a report
 * is consistent (counts per kind add up, at most MOAT_FIT_MAX_VIOLATIONS
 * kept, every message and name terminated) and every violation it places
 * is inside the object: its program is one of the report's programs, its
 * instruction inside a code section of that name (read back with libelf
 * here); checking the same bytes twice gives the same report.  The clean
 * fixture (tests/fuzz/corpus/fitcheck/fit_clean.bpf.o) fits before the
 * run, and still does whenever the input is that object. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "fitcheck.h"

static struct moat_nic_profile nfp;
static uint8_t *clean;
static size_t clean_len;

static int memfile(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz.bpf.o", MFD_CLOEXEC);
	size_t off = 0;

	assert(fd >= 0);
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);
		assert(n > 0);
		off += (size_t)n;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* Instructions in the code section called `name` (-1: none). */
static long sec_insns(const uint8_t *data, size_t size, const char *name)
{
	Elf *e = elf_memory((char *)data, size);
	Elf_Scn *scn = NULL;
	size_t shstrndx;
	long n = -1;

	if (!e)
		return -1;
	if (elf_getshdrstrndx(e, &shstrndx))
		goto out;
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		const char *nm;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS || !(sh.sh_flags & SHF_EXECINSTR))
			continue;
		nm = elf_strptr(e, shstrndx, sh.sh_name);
		if (nm && !strncmp(nm, name, 63) && (long)(sh.sh_size / 8) > n)
			n = (long)(sh.sh_size / 8);
	}
out:
	elf_end(e);
	return n;
}

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, 0, cap) != NULL;
}

static int check(const uint8_t *data, size_t size, struct moat_fit_report *r, char *err, size_t errlen)
{
	char path[64];
	int fd = memfile(data, size), rc;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rc = moat_fit_check(path, &nfp, r, err, errlen);
	close(fd);
	if (rc) {
		assert(rc < 0);
		/* a message naming the object */
		assert(terminated(err, errlen) && strstr(err, path));
	}
	return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct moat_fit_report r;
	char err[512];
	FILE *f;

	(void)argc;
	(void)argv;
	elf_version(EV_CURRENT);
	/* run from the source tree (tests/fuzz/run and make fuzz do) */
	if (moat_nic_profile_load("hw/nfp.json", &nfp, err, sizeof(err))) {
		fprintf(stderr, "fuzz_fitcheck: %s (run from the source tree)\n", err);
		exit(1);
	}
	f = fopen("tests/fuzz/corpus/fitcheck/fit_clean.bpf.o", "rb");
	if (!f) {
		perror("fuzz_fitcheck: tests/fuzz/corpus/fitcheck/fit_clean.bpf.o");
		exit(1);
	}
	clean = malloc(1 << 20);
	clean_len = fread(clean, 1, 1 << 20, f);
	fclose(f);
	if (check(clean, clean_len, &r, err, sizeof(err)) || r.nviol || r.dropped || !r.nprogs) {
		fprintf(stderr, "fuzz_fitcheck: the clean fixture does not fit: %s\n", err);
		exit(1);
	}
	moat_fit_report_free(&r);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_fit_report r, r2;
	char err[512], err2[512];
	size_t sum = 0;
	int rc, rc2;

	rc = check(data, size, &r, err, sizeof(err));
	/* the same bytes, the same answer */
	rc2 = check(data, size, &r2, err2, sizeof(err2));
	assert(rc == rc2);
	if (rc) {
		moat_fit_report_free(&r);
		moat_fit_report_free(&r2);
		return 0;
	}
	assert(r.nviol == r2.nviol && r.dropped == r2.dropped && r.nprogs == r2.nprogs &&
	       r.nmaps == r2.nmaps);
	assert(r.nviol <= MOAT_FIT_MAX_VIOLATIONS);
	assert(r.dropped == 0 || r.nviol == MOAT_FIT_MAX_VIOLATIONS);
	for (int k = 0; k < MOAT_FIT_KIND_MAX; k++)
		sum += r.nkind[k];
	assert(sum == r.nviol + r.dropped);
	if (size == clean_len && !memcmp(data, clean, size))
		assert(r.nviol == 0 && r.dropped == 0);
	for (size_t i = 0; i < r.nprogs; i++)
		assert(terminated(r.progs[i].name, sizeof(r.progs[i].name)) && r.progs[i].name[0] &&
		       r.progs[i].funcs >= 1);
	for (size_t i = 0; i < r.nmaps; i++)
		assert(terminated(r.maps[i].name, sizeof(r.maps[i].name)));
	for (size_t i = 0; i < r.nviol; i++) {
		const struct moat_fit_violation *v = &r.viol[i], *w = &r2.viol[i];
		assert((int)v->kind >= 0 && v->kind < MOAT_FIT_KIND_MAX);
		assert(v->kind == w->kind && v->insn == w->insn && !strcmp(v->msg, w->msg));
		assert(terminated(v->prog, sizeof(v->prog)) && terminated(v->func, sizeof(v->func)) &&
		       terminated(v->section, sizeof(v->section)) && terminated(v->map, sizeof(v->map)) &&
		       terminated(v->file, sizeof(v->file)) && terminated(v->src, sizeof(v->src)) &&
		       terminated(v->msg, sizeof(v->msg)));
		assert(v->msg[0]);
		if (v->prog[0]) {
			bool found = false;
			for (size_t p = 0; p < r.nprogs && !found; p++)
				found = !strcmp(r.progs[p].name, v->prog);
			assert(found);
		}
		assert(v->insn >= -1);
		if (v->insn >= 0) {
			/* inside a code section of the object */
			assert(v->section[0] && v->func[0]);
			assert(v->insn < sec_insns(data, size, v->section));
		}
	}
	moat_fit_report_free(&r);
	moat_fit_report_free(&r2);
	return 0;
}
