// SPDX-License-Identifier: Apache-2.0
/* pcapng writer and reader: a round trip of every block and option moat
 * writes, a torn last block cut at every byte, garbage and mutated files
 * (the reader must end cleanly and never hand out a block beyond the data),
 * and each bound (lengths too small, too large, unaligned, trailers that
 * disagree, options overrunning their block). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "pcapng.h"

/* A memory file holding buf[0..len). */
static int memfile(const void *buf, size_t len)
{
	int fd = memfd_create("pcapng", 0);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static const uint8_t pkt[60] = { 0x0a, 0, 0, 0, 0, 1, 0x0e, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45 };

/* SHB, two IDBs, three EPBs, an ISB, a custom block. */
static void sample(struct pcapng_buf *b, size_t *last_start)
{
	struct pcapng_shb_info shb = { .hardware = "n1", .os = "Linux", .userappl = "moatd", .comment = "c" };
	struct pcapng_idb_info i0 = {
		.linktype = 1, .snaplen = 65535, .name = "veth0", .description = "pod a/x"
	};
	struct pcapng_idb_info i1 = { .linktype = 1, .snaplen = 65535, .name = "veth1", .description = NULL };
	struct pcapng_isb_info isb = { .ifid = 1,
				       .ts_ns = 5,
				       .start_ns = 1,
				       .end_ns = 5,
				       .has_counters = true,
				       .ifrecv = 10,
				       .ifdrop = 2,
				       .usrdeliv = 8 };

	assert_int_equal(pcapng_put_shb(b, &shb), 0);
	assert_int_equal(pcapng_put_idb(b, &i0), 0);
	assert_int_equal(pcapng_put_idb(b, &i1), 0);
	for (int i = 0; i < 3; i++) {
		struct pcapng_epb_info e = { .ifid = (uint32_t)(i & 1),
					     .ts_ns = 1795849255705268593ull + (uint64_t)i,
					     .data = pkt,
					     .caplen = (uint32_t)(57 + i),
					     .origlen = 1500,
					     .flags = i == 0 ? PCAPNG_DIR_INBOUND : PCAPNG_DIR_OUTBOUND,
					     .has_dropcount = i == 1,
					     .dropcount = 7,
					     .has_packetid = true,
					     .packetid = 100 + (uint64_t)i,
					     .has_verdict = true,
					     .verdict_type = PCAPNG_VERDICT_XDP,
					     .verdict = i == 2 ? 1 : 2,
					     .comment = i == 2 ? "moat: verdict=deny" : NULL };
		assert_int_equal(pcapng_put_epb(b, &e), 0);
	}
	assert_int_equal(pcapng_put_isb(b, &isb), 0);
	*last_start = b->len;
	assert_int_equal(pcapng_put_custom(b, 32473, "{\"moat\":\"flow\"}", 15), 0);
}

static void test_round_trip(void **state)
{
	struct pcapng_buf b = { 0 };
	struct pcapng_reader *r;
	struct pcapng_block blk;
	struct pcapng_idb_view idb[2];
	size_t last, nidb = 0, nepb = 0, n = 0;
	int fd, rc;

	(void)state;
	sample(&b, &last);
	assert_int_equal(b.len % 4, 0);
	fd = memfile(b.p, b.len);
	assert_int_equal(pcapng_reader_new(fd, &r), 0);
	while ((rc = pcapng_next(r, &blk)) > 0) {
		n++;
		assert_true(blk.offset + blk.total_len <= b.len);
		switch (blk.type) {
		case PCAPNG_BT_SHB: {
			const uint8_t *o;
			size_t ol, pos = 0;
			struct pcapng_opt opt;
			int found = 0;
			assert_int_equal(pcapng_parse_shb(&blk, &o, &ol), 0);
			while (pcapng_opt_next(o, ol, &pos, &opt) > 0)
				if (opt.code == PCAPNG_SHB_USERAPPL && opt.len == 5 &&
				    !memcmp(opt.val, "moatd", 5))
					found++;
			assert_int_equal(found, 1);
			break;
		}
		case PCAPNG_BT_IDB:
			assert_int_equal(pcapng_parse_idb(&blk, &idb[nidb]), 0);
			nidb++;
			break;
		case PCAPNG_BT_EPB: {
			struct pcapng_epb_view e;
			assert_int_equal(pcapng_parse_epb(&blk, &e), 0);
			assert_int_equal(e.ifid, nepb & 1);
			assert_int_equal(e.caplen, 57 + nepb);
			assert_int_equal(e.origlen, 1500);
			assert_memory_equal(e.data, pkt, e.caplen);
			assert_true(pcapng_ts_ns(&idb[e.ifid], e.ts_raw) == 1795849255705268593ull + nepb);
			assert_int_equal(e.flags, nepb == 0 ? PCAPNG_DIR_INBOUND : PCAPNG_DIR_OUTBOUND);
			assert_int_equal(e.has_dropcount, nepb == 1);
			if (e.has_dropcount)
				assert_int_equal(e.dropcount, 7);
			assert_true(e.has_packetid && e.packetid == 100 + nepb);
			assert_true(e.has_verdict && e.verdict_type == PCAPNG_VERDICT_XDP);
			assert_int_equal(e.verdict, nepb == 2 ? 1 : 2);
			if (nepb == 2) {
				assert_int_equal(e.comment_len, strlen("moat: verdict=deny"));
				assert_memory_equal(e.comment, "moat: verdict=deny", e.comment_len);
			} else {
				assert_null(e.comment);
			}
			nepb++;
			break;
		}
		case PCAPNG_BT_ISB: {
			uint32_t ifid;
			const uint8_t *o;
			size_t ol, pos = 0;
			struct pcapng_opt opt;
			uint64_t drop = 0, recv = 0;
			assert_int_equal(pcapng_parse_isb(&blk, &ifid, &o, &ol), 0);
			assert_int_equal(ifid, 1);
			while (pcapng_opt_next(o, ol, &pos, &opt) > 0) {
				if (opt.code == PCAPNG_ISB_IFDROP)
					memcpy(&drop, opt.val, 8);
				if (opt.code == PCAPNG_ISB_IFRECV)
					memcpy(&recv, opt.val, 8);
			}
			assert_int_equal(drop, 2);
			assert_int_equal(recv, 10);
			break;
		}
		case PCAPNG_BT_CUSTOM: {
			uint32_t pen;
			const uint8_t *d;
			size_t l;
			assert_int_equal(pcapng_parse_custom(&blk, &pen, &d, &l), 0);
			assert_int_equal(pen, 32473);
			assert_int_equal(l, 16); /* 15 bytes padded */
			assert_memory_equal(d, "{\"moat\":\"flow\"}", 15);
			assert_int_equal(d[15], 0);
			break;
		}
		default:
			fail_msg("unexpected block type %u", blk.type);
		}
	}
	assert_int_equal(rc, 0);
	assert_int_equal(n, 8);
	assert_int_equal(nidb, 2);
	assert_string_equal(idb[0].name, "veth0");
	assert_string_equal(idb[0].description, "pod a/x");
	assert_string_equal(idb[1].name, "veth1");
	assert_string_equal(idb[1].description, "");
	assert_int_equal(pcapng_reader_valid_end(r), b.len);
	pcapng_reader_free(r);
	close(fd);
	pcapng_buf_free(&b);
}

/* Every cut inside the last block: the blocks before it come out whole,
 * then -ENODATA, and the valid prefix ends where the last block began. */
static void test_torn_last_block(void **state)
{
	struct pcapng_buf b = { 0 };
	size_t last;

	(void)state;
	sample(&b, &last);
	for (size_t cut = last; cut <= b.len; cut++) {
		struct pcapng_reader *r;
		struct pcapng_block blk;
		int fd = memfile(b.p, cut), rc;
		size_t n = 0;

		pcapng_reader_new(fd, &r);
		while ((rc = pcapng_next(r, &blk)) > 0)
			n++;
		if (cut == last || cut == b.len) {
			assert_int_equal(rc, 0);
			assert_int_equal(n, cut == last ? 7 : 8);
			assert_int_equal(pcapng_reader_valid_end(r), cut);
		} else {
			assert_int_equal(rc, -ENODATA);
			assert_int_equal(n, 7);
			assert_int_equal(pcapng_reader_valid_end(r), last);
		}
		/* after the end, the reader stays ended */
		assert_true(pcapng_next(r, &blk) <= 0);
		pcapng_reader_free(r);
		close(fd);
	}
	pcapng_buf_free(&b);
}

/* Walks a file; every block handed out lies within it and parses without
 * reading outside it (checked by the sanitizer builds). */
static int walk(const uint8_t *buf, size_t len, size_t *blocks)
{
	struct pcapng_reader *r;
	struct pcapng_block blk;
	int fd = memfile(buf, len), rc;

	*blocks = 0;
	pcapng_reader_new(fd, &r);
	while ((rc = pcapng_next(r, &blk)) > 0) {
		struct pcapng_epb_view e;
		struct pcapng_idb_view i;
		const uint8_t *p;
		size_t l;
		uint32_t u;

		(*blocks)++;
		assert_true(blk.offset + blk.total_len <= len);
		assert_true(blk.total_len >= 12 && blk.total_len % 4 == 0 &&
			    blk.total_len <= PCAPNG_MAX_BLOCK);
		if (!pcapng_parse_epb(&blk, &e)) {
			assert_true(e.data + e.caplen <= blk.body + blk.body_len);
			if (e.comment)
				assert_true((const uint8_t *)e.comment + e.comment_len <=
					    blk.body + blk.body_len);
		}
		pcapng_parse_idb(&blk, &i);
		pcapng_parse_custom(&blk, &u, &p, &l);
		pcapng_parse_isb(&blk, &u, &p, &l);
	}
	assert_true(pcapng_reader_valid_end(r) <= len);
	pcapng_reader_free(r);
	close(fd);
	return rc;
}

static void test_garbage(void **state)
{
	uint8_t buf[4096];
	struct pcapng_buf b = { 0 };
	size_t last, n;
	unsigned seed = 12345;

	(void)state;
	/* random bytes: never a valid file (no SHB) */
	for (int round = 0; round < 200; round++) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)rand_r(&seed);
		assert_true(walk(buf, (size_t)(rand_r(&seed) % sizeof(buf)), &n) < 0);
		assert_int_equal(n, 0);
	}
	/* a valid file with bytes flipped anywhere: whatever comes out is bounded */
	sample(&b, &last);
	for (int round = 0; round < 5000; round++) {
		uint8_t *m = malloc(b.len);
		memcpy(m, b.p, b.len);
		for (int k = 0; k < 1 + round % 4; k++)
			m[rand_r(&seed) % b.len] = (uint8_t)rand_r(&seed);
		walk(m, b.len, &n);
		assert_true(n <= 8);
		free(m);
	}
	/* an empty file is not pcapng either */
	assert_int_equal(walk(buf, 0, &n), -ENODATA);
	pcapng_buf_free(&b);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void test_bounds(void **state)
{
	struct pcapng_buf b = { 0 };
	uint8_t f[512];
	size_t shb_len, n;

	(void)state;
	assert_int_equal(pcapng_put_shb(&b, NULL), 0);
	shb_len = b.len;
	assert_int_equal(shb_len, 28);

	/* block length below 12, unaligned, above the maximum */
	static const uint32_t bad_len[] = { 0, 8, 13, 30, PCAPNG_MAX_BLOCK + 4, 0xfffffffc };
	for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
		memcpy(f, b.p, shb_len);
		put32(f + shb_len, PCAPNG_BT_EPB);
		put32(f + shb_len + 4, bad_len[i]);
		memset(f + shb_len + 8, 0, 64);
		assert_int_equal(walk(f, shb_len + 72, &n), -EBADMSG);
		assert_int_equal(n, 1);
	}
	/* trailing length that disagrees */
	memcpy(f, b.p, shb_len);
	put32(f + shb_len, PCAPNG_BT_IDB);
	put32(f + shb_len + 4, 20);
	memset(f + shb_len + 8, 0, 8);
	put32(f + shb_len + 16, 24);
	assert_int_equal(walk(f, shb_len + 20, &n), -EBADMSG);
	assert_int_equal(n, 1);
	/* first block not an SHB; SHB of the other byte order; SHB too short */
	memcpy(f, b.p, shb_len);
	put32(f, PCAPNG_BT_EPB);
	assert_int_equal(walk(f, shb_len, &n), -EBADMSG);
	memcpy(f, b.p, shb_len);
	put32(f + 8, 0x4D3C2B1A);
	assert_int_equal(walk(f, shb_len, &n), -EBADMSG);
	memcpy(f, b.p, shb_len);
	put32(f + 4, 24);
	put32(f + 20, 24);
	assert_int_equal(walk(f, 24, &n), -EBADMSG);

	/* an EPB whose captured length runs past its block: the block is
	 * framed right, its parse fails */
	{
		struct pcapng_epb_info e = { .data = pkt, .caplen = 8, .origlen = 8 };
		struct pcapng_reader *r;
		struct pcapng_block blk;
		struct pcapng_epb_view ev;
		int fd;
		b.len = shb_len;
		pcapng_put_epb(&b, &e);
		put32(b.p + shb_len + 20, 200); /* caplen */
		fd = memfile(b.p, b.len);
		pcapng_reader_new(fd, &r);
		assert_int_equal(pcapng_next(r, &blk), 1);
		assert_int_equal(pcapng_next(r, &blk), 1);
		assert_int_equal(pcapng_parse_epb(&blk, &ev), -EBADMSG);
		pcapng_reader_free(r);
		close(fd);
	}
	/* an option running past its area */
	{
		uint8_t area[12] = { 1, 0, 200, 0, 'a', 'b', 'c', 'd' };
		struct pcapng_opt o;
		size_t pos = 0;
		assert_int_equal(pcapng_opt_next(area, sizeof(area), &pos, &o), -EBADMSG);
	}
	/* the writer refuses blocks above the maximum and leaves the buffer as it was */
	{
		size_t before = b.len;
		char *big = calloc(1, PCAPNG_MAX_BLOCK);
		assert_int_equal(pcapng_put_custom(&b, 1, big, PCAPNG_MAX_BLOCK), -E2BIG);
		assert_int_equal(b.len, before);
		free(big);
	}
	pcapng_buf_free(&b);
}

static void test_pcap(void **state)
{
	struct pcapng_buf b = { 0 };
	uint32_t v;

	(void)state;
	pcap_put_header(&b, 65535, 1);
	pcap_put_record(&b, 1500000000123456789ull, pkt, 20, 60);
	assert_int_equal(b.len, 24 + 16 + 20);
	memcpy(&v, b.p, 4);
	assert_int_equal(v, 0xa1b23c4d);
	memcpy(&v, b.p + 24, 4);
	assert_int_equal(v, 1500000000);
	memcpy(&v, b.p + 28, 4);
	assert_int_equal(v, 123456789);
	memcpy(&v, b.p + 36, 4);
	assert_int_equal(v, 60);
	pcapng_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip), cmocka_unit_test(test_torn_last_block),
		cmocka_unit_test(test_garbage),    cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_pcap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
