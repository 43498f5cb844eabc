// SPDX-License-Identifier: Apache-2.0
/* Replays files through a fuzz target without libFuzzer: `make check` runs
 * every target over its seed corpus and its regression inputs with the
 * ordinary build (gcc, and ASan+UBSan under SANITIZE=1), so a crash once
 * found stays fixed even where clang's libFuzzer is not installed.
 *   fuzz_NAME FILE|DIR...   exit 0 when every input ran through */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path, unsigned *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = 0;

	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -errno;
	}
	for (;;) {
		if (len == cap) {
			uint8_t *nb;
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap);
			if (!nb) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		size_t r = fread(buf + len, 1, cap - len, f);
		if (!r)
			break;
		len += r;
	}
	if (ferror(f)) {
		rc = -EIO;
		goto out;
	}
	LLVMFuzzerTestOneInput(buf, len);
	(*n)++;
out:
	free(buf);
	fclose(f);
	return rc;
}

static int run_path(const char *path, unsigned *n)
{
	struct stat st;
	struct dirent **ents;
	int k, rc = 0;

	if (stat(path, &st)) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path, n);
	k = scandir(path, &ents, NULL, alphasort);
	if (k < 0)
		return -errno;
	for (int i = 0; i < k; i++) {
		char p[4096];
		if (ents[i]->d_name[0] != '.' && !rc) {
			snprintf(p, sizeof(p), "%s/%s", path, ents[i]->d_name);
			rc = run_path(p, n);
		}
		free(ents[i]);
	}
	free(ents);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned n = 0;

	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++)
		if (run_path(argv[i], &n))
			return 1;
	printf("%s: %u inputs replayed\n", argv[0], n);
	return 0;
}
