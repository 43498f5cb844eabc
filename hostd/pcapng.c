// SPDX-License-Identifier: Apache-2.0
/* pcapng writer and reader.  See pcapng.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pcapng.h"
#include "util.h"

/* ---- writer ------------------------------------------------------------ */
void pcapng_buf_free(struct pcapng_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static void reserve(struct pcapng_buf *b, size_t add)
{
	if (b->len + add <= b->cap)
		return;
	b->cap = b->cap ? b->cap : 4096;
	while (b->cap < b->len + add)
		b->cap *= 2;
	b->p = xrealloc(b->p, b->cap);
}

static size_t pad4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

/* A block is built in place: header, body, options, trailer.  `start` is
 * the block's offset; the length fields are filled by block_end(). */
struct blk {
	struct pcapng_buf *b;
	size_t start;
};

static void put(struct pcapng_buf *b, const void *p, size_t n)
{
	reserve(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void put32(struct pcapng_buf *b, uint32_t v)
{
	put(b, &v, 4);
}

static void put16(struct pcapng_buf *b, uint16_t v)
{
	put(b, &v, 2);
}

static void put_zero(struct pcapng_buf *b, size_t n)
{
	reserve(b, n);
	memset(b->p + b->len, 0, n);
	b->len += n;
}

static void block_begin(struct blk *k, struct pcapng_buf *b, uint32_t type)
{
	k->b = b;
	k->start = b->len;
	put32(b, type);
	put32(b, 0); /* length, filled at the end */
}

static void opt(struct blk *k, uint16_t code, const void *v, size_t len)
{
	if (len > 0xffff)
		len = 0xffff;
	put16(k->b, code);
	put16(k->b, (uint16_t)len);
	put(k->b, v, len);
	put_zero(k->b, pad4(len) - len);
}

static void opt_str(struct blk *k, uint16_t code, const char *s)
{
	if (s && *s)
		opt(k, code, s, strlen(s));
}

static void opt_u64(struct blk *k, uint16_t code, uint64_t v)
{
	opt(k, code, &v, 8);
}

/* Ends the options (if any were written since opts_at) and the block. */
static int block_end(struct blk *k, size_t opts_at)
{
	struct pcapng_buf *b = k->b;
	uint32_t total;

	if (b->len > opts_at) {
		put16(b, PCAPNG_OPT_END);
		put16(b, 0);
	}
	total = (uint32_t)(b->len - k->start + 4);
	if (b->len - k->start + 4 > PCAPNG_MAX_BLOCK) {
		b->len = k->start;
		return -E2BIG;
	}
	put32(b, total);
	memcpy(b->p + k->start + 4, &total, 4);
	return 0;
}

int pcapng_put_shb(struct pcapng_buf *b, const struct pcapng_shb_info *i)
{
	struct blk k;
	size_t o;
	int64_t section_len = -1;

	block_begin(&k, b, PCAPNG_BT_SHB);
	put32(b, PCAPNG_BYTE_ORDER_MAGIC);
	put16(b, 1);
	put16(b, 0);
	put(b, &section_len, 8);
	o = b->len;
	if (i) {
		opt_str(&k, PCAPNG_OPT_COMMENT, i->comment);
		opt_str(&k, PCAPNG_SHB_HARDWARE, i->hardware);
		opt_str(&k, PCAPNG_SHB_OS, i->os);
		opt_str(&k, PCAPNG_SHB_USERAPPL, i->userappl);
	}
	return block_end(&k, o);
}

int pcapng_put_idb(struct pcapng_buf *b, const struct pcapng_idb_info *i)
{
	struct blk k;
	size_t o;
	uint8_t res = 9; /* nanoseconds */

	block_begin(&k, b, PCAPNG_BT_IDB);
	put16(b, i->linktype);
	put16(b, 0);
	put32(b, i->snaplen);
	o = b->len;
	opt_str(&k, PCAPNG_IF_NAME, i->name);
	opt_str(&k, PCAPNG_IF_DESCRIPTION, i->description);
	opt(&k, PCAPNG_IF_TSRESOL, &res, 1);
	return block_end(&k, o);
}

int pcapng_put_epb(struct pcapng_buf *b, const struct pcapng_epb_info *i)
{
	struct blk k;
	size_t o;

	if (i->caplen > PCAPNG_MAX_BLOCK)
		return -E2BIG;
	block_begin(&k, b, PCAPNG_BT_EPB);
	put32(b, i->ifid);
	put32(b, (uint32_t)(i->ts_ns >> 32));
	put32(b, (uint32_t)i->ts_ns);
	put32(b, i->caplen);
	put32(b, i->origlen);
	put(b, i->data, i->caplen);
	put_zero(b, pad4(i->caplen) - i->caplen);
	o = b->len;
	if (i->flags)
		opt(&k, PCAPNG_EPB_FLAGS, &i->flags, 4);
	if (i->has_dropcount)
		opt_u64(&k, PCAPNG_EPB_DROPCOUNT, i->dropcount);
	if (i->has_packetid)
		opt_u64(&k, PCAPNG_EPB_PACKETID, i->packetid);
	if (i->has_verdict) {
		uint8_t v[9];
		v[0] = i->verdict_type;
		memcpy(v + 1, &i->verdict, 8);
		opt(&k, PCAPNG_EPB_VERDICT, v, sizeof(v));
	}
	opt_str(&k, PCAPNG_OPT_COMMENT, i->comment);
	return block_end(&k, o);
}

int pcapng_put_isb(struct pcapng_buf *b, const struct pcapng_isb_info *i)
{
	struct blk k;
	size_t o;
	uint32_t ts[2];

	block_begin(&k, b, PCAPNG_BT_ISB);
	put32(b, i->ifid);
	put32(b, (uint32_t)(i->ts_ns >> 32));
	put32(b, (uint32_t)i->ts_ns);
	o = b->len;
	opt_str(&k, PCAPNG_OPT_COMMENT, i->comment);
	/* start and end are timestamps: high word first, like the block's */
	ts[0] = (uint32_t)(i->start_ns >> 32);
	ts[1] = (uint32_t)i->start_ns;
	opt(&k, PCAPNG_ISB_STARTTIME, ts, 8);
	ts[0] = (uint32_t)(i->end_ns >> 32);
	ts[1] = (uint32_t)i->end_ns;
	opt(&k, PCAPNG_ISB_ENDTIME, ts, 8);
	if (i->has_counters) {
		opt_u64(&k, PCAPNG_ISB_IFRECV, i->ifrecv);
		opt_u64(&k, PCAPNG_ISB_IFDROP, i->ifdrop);
		opt_u64(&k, PCAPNG_ISB_USRDELIV, i->usrdeliv);
	}
	return block_end(&k, o);
}

int pcapng_put_custom(struct pcapng_buf *b, uint32_t pen, const void *data, size_t len)
{
	struct blk k;

	if (len > PCAPNG_MAX_BLOCK)
		return -E2BIG;
	block_begin(&k, b, PCAPNG_BT_CUSTOM);
	put32(b, pen);
	put(b, data, len);
	put_zero(b, pad4(len) - len);
	/* no options: their start could not be told from the data's end */
	return block_end(&k, b->len);
}

int pcapng_put_raw(struct pcapng_buf *b, const void *block, size_t len)
{
	if (len > PCAPNG_MAX_BLOCK || len < 12 || len % 4)
		return -EINVAL;
	put(b, block, len);
	return 0;
}

/* ---- classic pcap ---------------------------------------------------------- */
int pcap_put_header(struct pcapng_buf *b, uint32_t snaplen, uint32_t linktype)
{
	put32(b, 0xa1b23c4du); /* nanosecond timestamps */
	put16(b, 2);
	put16(b, 4);
	put32(b, 0);
	put32(b, 0);
	put32(b, snaplen);
	put32(b, linktype);
	return 0;
}

int pcap_put_record(struct pcapng_buf *b, uint64_t ts_ns, const uint8_t *data, uint32_t caplen,
		    uint32_t origlen)
{
	put32(b, (uint32_t)(ts_ns / 1000000000ull));
	put32(b, (uint32_t)(ts_ns % 1000000000ull));
	put32(b, caplen);
	put32(b, origlen);
	put(b, data, caplen);
	return 0;
}

/* ---- reader ------------------------------------------------------------------ */
struct pcapng_reader {
	int fd;
	uint8_t *buf;
	size_t cap;
	size_t have, pos; /* bytes in buf, consumed */
	uint64_t base;    /* stream offset of buf[0] */
	uint64_t valid_end;
	bool eof, done, first;
};

int pcapng_reader_new(int fd, struct pcapng_reader **ret)
{
	struct pcapng_reader *r = xcalloc(1, sizeof(*r));
	off_t at = lseek(fd, 0, SEEK_CUR);

	r->fd = fd;
	r->cap = 64 * 1024;
	r->buf = xcalloc(1, r->cap);
	r->base = at > 0 ? (uint64_t)at : 0;
	r->valid_end = r->base;
	r->first = true;
	*ret = r;
	return 0;
}

void pcapng_reader_free(struct pcapng_reader *r)
{
	if (!r)
		return;
	free(r->buf);
	free(r);
}

uint64_t pcapng_reader_valid_end(const struct pcapng_reader *r)
{
	return r->valid_end;
}

/* Makes `need` bytes available at buf[pos]; returns how many are (less at
 * the end of the file). */
static ssize_t fill(struct pcapng_reader *r, size_t need)
{
	if (r->pos) {
		memmove(r->buf, r->buf + r->pos, r->have - r->pos);
		r->have -= r->pos;
		r->base += r->pos;
		r->pos = 0;
	}
	if (need > r->cap) {
		r->cap = need;
		r->buf = xrealloc(r->buf, r->cap);
	}
	while (r->have < need && !r->eof) {
		ssize_t n = read(r->fd, r->buf + r->have, r->cap - r->have);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			r->eof = true;
		r->have += (size_t)n;
	}
	return (ssize_t)(r->have < need ? r->have : need);
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static int stop(struct pcapng_reader *r, int err)
{
	r->done = true;
	return err;
}

int pcapng_next(struct pcapng_reader *r, struct pcapng_block *b)
{
	ssize_t n;
	uint32_t type, len;
	const uint8_t *p;

	if (r->done)
		return -EBADMSG;
	n = fill(r, 12);
	if (n < 0)
		return stop(r, (int)n);
	if (n == 0) {
		r->done = true;
		return r->first ? -ENODATA : 0;
	}
	p = r->buf + r->pos;
	if (n < 8)
		return stop(r, -ENODATA); /* a header cut short */
	type = rd32(p);
	len = rd32(p + 4);
	if (r->first && type != PCAPNG_BT_SHB)
		return stop(r, -EBADMSG);
	if (type == PCAPNG_BT_SHB) {
		if (n < 12)
			return stop(r, -ENODATA);
		/* only our byte order: another one reads as garbage lengths */
		if (rd32(p + 8) != PCAPNG_BYTE_ORDER_MAGIC)
			return stop(r, -EBADMSG);
		if (len < 28)
			return stop(r, -EBADMSG);
	}
	if (len < 12 || len % 4 || len > PCAPNG_MAX_BLOCK)
		return stop(r, -EBADMSG);
	n = fill(r, len);
	if (n < 0)
		return stop(r, (int)n);
	if ((size_t)n < len)
		return stop(r, -ENODATA); /* the file ends inside this block */
	p = r->buf + r->pos;
	if (rd32(p + len - 4) != len)
		return stop(r, -EBADMSG);
	b->type = type;
	b->total_len = len;
	b->raw = p;
	b->body = p + 8;
	b->body_len = len - 12;
	b->offset = r->base + r->pos;
	r->pos += len;
	r->valid_end = r->base + r->pos;
	r->first = false;
	return 1;
}

int pcapng_opt_next(const uint8_t *area, size_t area_len, size_t *pos, struct pcapng_opt *o)
{
	size_t p = *pos;

	if (p + 4 > area_len)
		return 0; /* options may end without opt_endofopt */
	o->code = rd16(area + p);
	o->len = rd16(area + p + 2);
	if (o->code == PCAPNG_OPT_END)
		return 0;
	if (p + 4 + o->len > area_len)
		return -EBADMSG;
	o->val = area + p + 4;
	*pos = p + 4 + pad4(o->len);
	if (*pos > area_len)
		*pos = area_len;
	return 1;
}

static void copy_str(char *dst, size_t cap, const uint8_t *v, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, v, len);
	dst[len] = 0;
	/* a name with a NUL inside ends there */
}

int pcapng_parse_shb(const struct pcapng_block *b, const uint8_t **opts, size_t *opts_len)
{
	if (b->type != PCAPNG_BT_SHB || b->body_len < 16)
		return -EBADMSG;
	if (rd32(b->body) != PCAPNG_BYTE_ORDER_MAGIC || rd16(b->body + 4) != 1)
		return -EBADMSG;
	*opts = b->body + 16;
	*opts_len = b->body_len - 16;
	return 0;
}

int pcapng_parse_idb(const struct pcapng_block *b, struct pcapng_idb_view *v)
{
	struct pcapng_opt o;
	size_t pos = 0;
	int rc;

	if (b->type != PCAPNG_BT_IDB || b->body_len < 8)
		return -EBADMSG;
	memset(v, 0, sizeof(*v));
	v->linktype = rd16(b->body);
	v->snaplen = rd32(b->body + 4);
	v->opts = b->body + 8;
	v->opts_len = b->body_len - 8;
	v->ts_div_num = 1000; /* default: microseconds */
	v->ts_div_den = 1;
	while ((rc = pcapng_opt_next(v->opts, v->opts_len, &pos, &o)) > 0) {
		if (o.code == PCAPNG_IF_NAME)
			copy_str(v->name, sizeof(v->name), o.val, o.len);
		else if (o.code == PCAPNG_IF_DESCRIPTION)
			copy_str(v->description, sizeof(v->description), o.val, o.len);
		else if (o.code == PCAPNG_IF_TSRESOL && o.len >= 1) {
			uint8_t r = o.val[0];
			uint64_t units = 1;
			if (r & 0x80) {
				/* 2^-n: ns = ts * 1e9 / 2^n (n <= 63 kept exact enough) */
				r &= 0x7f;
				if (r > 62)
					return -EBADMSG;
				v->ts_div_num = 1000000000ull;
				v->ts_div_den = 1ull << r;
			} else {
				if (r > 19)
					return -EBADMSG;
				for (uint8_t i = 0; i < r; i++)
					units *= 10;
				if (r <= 9) {
					v->ts_div_num = 1000000000ull / units;
					v->ts_div_den = 1;
				} else {
					v->ts_div_num = 1;
					v->ts_div_den = units / 1000000000ull;
				}
			}
		}
	}
	return rc < 0 ? rc : 0;
}

uint64_t pcapng_ts_ns(const struct pcapng_idb_view *idb, uint64_t ts)
{
	if (!idb || !idb->ts_div_den)
		return ts * 1000;
	if (idb->ts_div_den == 1)
		return ts * idb->ts_div_num;
	if (idb->ts_div_num == 1)
		return ts / idb->ts_div_den;
	return (uint64_t)((unsigned __int128)ts * idb->ts_div_num / idb->ts_div_den);
}

int pcapng_parse_epb(const struct pcapng_block *b, struct pcapng_epb_view *v)
{
	struct pcapng_opt o;
	size_t pos = 0, data_end;
	int rc;

	if (b->type != PCAPNG_BT_EPB || b->body_len < 20)
		return -EBADMSG;
	memset(v, 0, sizeof(*v));
	v->ifid = rd32(b->body);
	v->ts_raw = (uint64_t)rd32(b->body + 4) << 32 | rd32(b->body + 8);
	v->caplen = rd32(b->body + 12);
	v->origlen = rd32(b->body + 16);
	if (v->caplen > b->body_len - 20)
		return -EBADMSG;
	v->data = b->body + 20;
	data_end = 20 + pad4(v->caplen);
	if (data_end > b->body_len)
		return -EBADMSG;
	v->opts = b->body + data_end;
	v->opts_len = b->body_len - data_end;
	while ((rc = pcapng_opt_next(v->opts, v->opts_len, &pos, &o)) > 0) {
		switch (o.code) {
		case PCAPNG_EPB_FLAGS:
			if (o.len == 4)
				v->flags = rd32(o.val);
			break;
		case PCAPNG_EPB_DROPCOUNT:
			if (o.len == 8) {
				v->has_dropcount = true;
				v->dropcount = rd64(o.val);
			}
			break;
		case PCAPNG_EPB_PACKETID:
			if (o.len == 8) {
				v->has_packetid = true;
				v->packetid = rd64(o.val);
			}
			break;
		case PCAPNG_EPB_VERDICT:
			if (o.len >= 1) {
				v->has_verdict = true;
				v->verdict_type = o.val[0];
				if (o.len == 9)
					v->verdict = rd64(o.val + 1);
			}
			break;
		case PCAPNG_OPT_COMMENT:
			v->comment = (const char *)o.val;
			v->comment_len = o.len;
			break;
		}
	}
	return rc < 0 ? rc : 0;
}

int pcapng_parse_custom(const struct pcapng_block *b, uint32_t *pen, const uint8_t **data, size_t *len)
{
	if ((b->type != PCAPNG_BT_CUSTOM && b->type != PCAPNG_BT_CUSTOM_NC) || b->body_len < 4)
		return -EBADMSG;
	*pen = rd32(b->body);
	*data = b->body + 4;
	*len = b->body_len - 4;
	return 0;
}

int pcapng_parse_isb(const struct pcapng_block *b, uint32_t *ifid, const uint8_t **opts, size_t *opts_len)
{
	if (b->type != PCAPNG_BT_ISB || b->body_len < 12)
		return -EBADMSG;
	*ifid = rd32(b->body);
	*opts = b->body + 12;
	*opts_len = b->body_len - 12;
	return 0;
}
