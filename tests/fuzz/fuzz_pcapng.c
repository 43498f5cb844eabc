// SPDX-License-Identifier: Apache-2.0
/* pcapng files as the reader, the archive's crash recovery and its queries
 * meet them.  The input is a whole file.
 *
 * Reader (from a memory file): every block it hands out lies inside the
 * input, at the offset it claims, right after the previous one, with a sane
 * length (>= 12, 4-aligned, <= PCAPNG_MAX_BLOCK, trailer = header), and its
 * bytes are the input's; the walk ends with 0 only at the end of the input
 * and the valid prefix ends after the last block.  Every block's body parses
 * (SHB, IDB, EPB, ISB, custom) to fields and options that lie inside the
 * body.  The input cut at two places reads as the same blocks up to the
 * cut, then ends: cleanly exactly at a block's end, torn (-ENODATA) inside
 * a block the whole input has whole.
 *
 * Recovery: the input as a segment a crash left open (a/T0-open.pcapng);
 * opening the archive keeps its whole blocks (the closed segment is the
 * reader's valid prefix, byte for byte, torn bytes counted) or removes a
 * file without one, and says so in its log.  Queries over the recovered
 * directory (pcapng with flows, or pcap) produce output that reads back
 * cleanly; replay's record reader walks it without error. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "archive.h"
#include "pcapng.h"
#include "util.h"

#define T0  1795849200000000000ull /* 2026-11-28T07:00:00Z */
#define SEC 1000000000ull

struct blk {
	uint64_t off;
	uint32_t type, len;
};

struct walk {
	struct blk *v;
	size_t n;
	int rc;
	uint64_t valid_end;
};

static char root[64];

static void cleanup(void)
{
	umount2(root, MNT_DETACH);
	rmdir(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(root, sizeof(root), "/tmp/moat-fuzz-pcapng.XXXXXX");
	if (!mkdtemp(root))
		abort();
	/* where it can (root): a memory file system over the directory, in a
	 * mount namespace of our own (gone with the process), so recovery's
	 * fdatasync costs nothing; elsewhere the directory as it is */
	if (!unshare(CLONE_NEWNS) && !mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		(void)mount("moat-fuzz", root, "tmpfs", 0, "size=256m,mode=0700");
	atexit(cleanup);
	return 0;
}

static int memfile(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-pcapng", MFD_CLOEXEC);
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

/* An option area: every option inside it. */
static void check_opts(const uint8_t *area, size_t len)
{
	struct pcapng_opt o;
	size_t pos = 0, prev = 0;
	int rc, n = 0;

	while ((rc = pcapng_opt_next(area, len, &pos, &o)) > 0) {
		assert(o.val >= area + 4 && o.val + o.len <= area + len);
		assert(pos > prev && pos <= len); /* progress, bounded */
		prev = pos;
		n++;
		assert(n <= 65536);
	}
	assert(rc == 0 || rc == -EBADMSG);
}

static bool inside(const struct pcapng_block *b, const void *p, size_t len)
{
	const uint8_t *q = p;
	return q >= b->body && q + len <= b->body + b->body_len;
}

static void check_block(const struct pcapng_block *b)
{
	const uint8_t *opts, *d;
	size_t opts_len, l;
	uint32_t u;

	switch (b->type) {
	case PCAPNG_BT_SHB:
		if (!pcapng_parse_shb(b, &opts, &opts_len)) {
			assert(inside(b, opts, opts_len));
			check_opts(opts, opts_len);
		}
		break;
	case PCAPNG_BT_IDB: {
		struct pcapng_idb_view v;
		if (!pcapng_parse_idb(b, &v)) {
			assert(inside(b, v.opts, v.opts_len));
			assert(memchr(v.name, 0, sizeof(v.name)) &&
			       memchr(v.description, 0, sizeof(v.description)));
			assert(v.ts_div_num && v.ts_div_den);
			(void)pcapng_ts_ns(&v, UINT64_MAX);
			check_opts(v.opts, v.opts_len);
		}
		break;
	}
	case PCAPNG_BT_EPB: {
		struct pcapng_epb_view v;
		if (!pcapng_parse_epb(b, &v)) {
			assert(inside(b, v.data, v.caplen));
			assert(inside(b, v.opts, v.opts_len));
			assert(!v.comment || inside(b, v.comment, v.comment_len));
			check_opts(v.opts, v.opts_len);
			if (v.comment) {
				struct moat_rec r;
				if (!moat_rec_parse(v.comment, v.comment_len, &r)) {
					char *s = moat_rec_format(&r);
					struct moat_rec r2;
					/* what the query writes back parses to the same record */
					assert(!moat_rec_parse(s, strlen(s), &r2) && r2.n == r.n);
					for (size_t i = 0; i < r.n; i++)
						assert(!strcmp(r.key[i], r2.key[i]) &&
						       !strcmp(r.val[i], r2.val[i]));
					moat_rec_free(&r2);
					free(s);
					moat_rec_free(&r);
				}
			}
		}
		break;
	}
	case PCAPNG_BT_ISB:
		if (!pcapng_parse_isb(b, &u, &opts, &opts_len)) {
			assert(inside(b, opts, opts_len));
			check_opts(opts, opts_len);
		}
		break;
	case PCAPNG_BT_CUSTOM:
	case PCAPNG_BT_CUSTOM_NC:
		if (!pcapng_parse_custom(b, &u, &d, &l))
			assert(inside(b, d, l));
		break;
	}
}

/* Walks data[0..size) with the reader; checks every block against it. */
static void walk(const uint8_t *data, size_t size, struct walk *w)
{
	struct pcapng_reader *r;
	struct pcapng_block b;
	uint64_t end = 0;
	int fd = memfile(data, size);

	memset(w, 0, sizeof(*w));
	assert(!pcapng_reader_new(fd, &r));
	while ((w->rc = pcapng_next(r, &b)) > 0) {
		assert(b.offset == end);
		assert(b.total_len >= 12 && b.total_len % 4 == 0 && b.total_len <= PCAPNG_MAX_BLOCK);
		assert(b.offset + b.total_len <= size);
		assert(!memcmp(b.raw, data + b.offset, b.total_len));
		assert(b.body == b.raw + 8 && b.body_len == b.total_len - 12);
		assert(w->n || b.type == PCAPNG_BT_SHB);
		check_block(&b);
		end = b.offset + b.total_len;
		assert(pcapng_reader_valid_end(r) == end);
		w->v = xrealloc(w->v, (w->n + 1) * sizeof(*w->v));
		w->v[w->n++] = (struct blk){ b.offset, b.type, b.total_len };
	}
	assert(w->rc == 0 || w->rc == -ENODATA || w->rc == -EBADMSG);
	/* the walk is over after its end */
	assert(pcapng_next(r, &b) < 0 || w->rc == 0);
	w->valid_end = pcapng_reader_valid_end(r);
	assert(w->valid_end == end);
	if (w->rc == 0)
		assert(end == size && size > 0);
	else
		assert(end < size || size == 0);
	pcapng_reader_free(r);
	close(fd);
}

/* The input cut at `cut`: the same blocks up to the cut. */
static void check_cut(const uint8_t *data, const struct walk *full, size_t cut)
{
	struct walk w;
	size_t k = 0;

	while (k < full->n && full->v[k].off + full->v[k].len <= cut)
		k++;
	walk(data, cut, &w);
	assert(w.n == k);
	for (size_t i = 0; i < k; i++)
		assert(w.v[i].off == full->v[i].off && w.v[i].len == full->v[i].len &&
		       w.v[i].type == full->v[i].type);
	if (cut == 0)
		assert(w.rc == -ENODATA);
	else if (k && cut == full->v[k - 1].off + full->v[k - 1].len)
		assert(w.rc == 0);
	else if (k < full->n)
		assert(w.rc == -ENODATA); /* inside a block the whole input has whole */
	else
		assert(w.rc < 0);
	free(w.v);
}

/* ---- the archive ------------------------------------------------------------ */
struct logbuf {
	char text[4096];
	size_t len;
};

static void logger(void *arg, int level, const char *msg)
{
	struct logbuf *l = arg;
	(void)level;
	l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "%s\n", msg);
	if (l->len >= sizeof(l->text))
		l->len = sizeof(l->text) - 1;
}

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return T0 + 10 * SEC;
}

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (!d) {
		unlink(path);
		return;
	}
	while ((de = readdir(d))) {
		char p[1024];
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
		rm_rf(p);
	}
	closedir(d);
	rmdir(path);
}

static int count_rec(json_t *rec, void *arg)
{
	(void)rec;
	(*(size_t *)arg)++;
	return 0;
}

static void query(const char *dir, int format, const char *filter)
{
	struct moat_archive_query q = {
		.verdict = -1, .format = format, .flows = true, .all = true, .node = "n1", .filter = filter
	};
	struct moat_aq *aq;
	struct moat_aq_stats st;
	struct pcapng_buf out = { 0 };
	char err[256];
	uint8_t buf[4096];
	ssize_t n;

	assert(!moat_aq_open(dir, &q, &aq, err, sizeof(err)));
	while ((n = moat_aq_read(aq, buf, sizeof(buf))) > 0) {
		if (out.len + (size_t)n > out.cap) {
			out.cap = (out.len + (size_t)n) * 2;
			out.p = xrealloc(out.p, out.cap);
		}
		memcpy(out.p + out.len, buf, (size_t)n);
		out.len += (size_t)n;
	}
	assert(n == 0);
	moat_aq_stats(aq, &st);
	assert(st.segments <= 1);
	if (format == MOAT_AQ_PCAPNG) {
		/* the result is a pcapng file the reader takes whole */
		struct walk w;
		walk(out.p, out.len, &w);
		assert(w.rc == 0);
		free(w.v);
	} else {
		assert(out.len >= 24 && !memcmp(out.p, "\x4d\x3c\xb2\xa1", 4));
	}
	moat_aq_free(aq);
	pcapng_buf_free(&out);
}

static void recovery(const uint8_t *data, size_t size, const struct walk *w)
{
	static unsigned seq;
	char dir[128], p[256];
	struct moat_archive_opts o;
	struct moat_archive *a;
	struct moat_archive_stats st;
	struct moat_segment *v;
	struct logbuf log = { .len = 0 };
	size_t n, files, bad, recs = 0;
	char err[256];
	int fd;

	snprintf(dir, sizeof(dir), "%s/%u", root, seq++);
	assert(!mkdir(dir, 0700));
	snprintf(p, sizeof(p), "%s/a", dir);
	assert(!mkdir(p, 0700));
	snprintf(p, sizeof(p), "%s/a/%llu-open.pcapng", dir, (unsigned long long)T0);
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert(fd >= 0);
	assert(write(fd, data, size) == (ssize_t)size);
	{
		/* written last just after the segment opened: the clock of the run */
		struct timespec ts[2] = { { (time_t)(T0 / SEC) + 1, 0 }, { (time_t)(T0 / SEC) + 1, 0 } };
		assert(!futimens(fd, ts));
	}
	close(fd);

	moat_archive_opts_defaults(&o);
	o.dir = dir;
	o.node = "n1";
	o.queue_bytes = 64 << 10;
	o.log = logger;
	o.log_arg = &log;
	o.clock = fake_clock;
	if (moat_archive_open(&o, &a, err, sizeof(err))) {
		fprintf(stderr, "archive: %s\n", err);
		abort();
	}
	moat_archive_stats(a, &st);
	moat_archive_close(a);
	assert(st.segments_recovered == 1);
	assert(st.torn_bytes_cut == size - (w->valid_end ? w->valid_end : 0));
	assert(!moat_archive_list(dir, &v, &n));
	if (!w->valid_end) {
		/* no whole block: removed, and said */
		assert(n == 0);
		assert(strstr(log.text, "no whole block"));
	} else {
		/* whole blocks kept, byte for byte, the segment closed */
		struct stat sb;
		uint8_t *got;
		assert(n == 1);
		assert(!strcmp(v[0].ns, "a") && v[0].start_ns == T0 && v[0].end_ns > T0);
		assert(v[0].bytes == w->valid_end);
		assert(strstr(log.text, "recovered a/"));
		snprintf(p, sizeof(p), "%s/a/%s", dir, v[0].file);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		assert(fd >= 0 && !fstat(fd, &sb) && (uint64_t)sb.st_size == w->valid_end);
		got = xcalloc(1, w->valid_end);
		assert(read(fd, got, w->valid_end) == (ssize_t)w->valid_end);
		assert(!memcmp(got, data, w->valid_end));
		free(got);
		close(fd);
	}
	free(v);
	/* queries and replay's reader over what is left */
	query(dir, size & 1 ? MOAT_AQ_PCAP : MOAT_AQ_PCAPNG, size & 2 ? "tcp or ip6" : NULL);
	assert(!moat_archive_records(dir, count_rec, &recs, &files, &bad));
	assert(files == n && bad == 0);
	rm_rf(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct walk w;
	uint32_t h = 2166136261u;

	if (size > 2 * PCAPNG_MAX_BLOCK)
		return 0;
	walk(data, size, &w);
	/* two cuts: one the input picks, one just before the valid prefix ends */
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	check_cut(data, &w, size ? h % (size + 1) : 0);
	if (w.valid_end)
		check_cut(data, &w, w.valid_end - 1);
	recovery(data, size, &w);
	free(w.v);
	return 0;
}
