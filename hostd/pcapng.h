/* SPDX-License-Identifier: Apache-2.0 */
/* pcapng (draft-ietf-opsawg-pcapng): a writer that appends blocks to a
 * memory buffer, and a reader that never trusts the file.
 *
 * Writer: SHB, IDB (if_name, if_description, if_tsresol 9), EPB (nanosecond
 * timestamps, epb_flags, epb_dropcount, epb_packetid, epb_verdict, comment),
 * ISB (start/end, counters) and Custom Blocks (type 0x00000BAD, copiable)
 * holding moat's own records.  Everything in host byte order (little endian
 * here), which the SHB's byte-order magic announces.
 *
 * Reader: every length is checked against the block, the block against the
 * file, and every block against PCAPNG_MAX_BLOCK.  A last block cut short (a
 * crash mid-write) is reported as torn with the offset where the valid
 * prefix ends; anything else that does not parse ends the walk with
 * -EBADMSG and the same offset.  Nothing past a bad block is interpreted.
 */
#ifndef MOAT_PCAPNG_H
#define MOAT_PCAPNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PCAPNG_BT_SHB           0x0A0D0D0Au
#define PCAPNG_BT_IDB           0x00000001u
#define PCAPNG_BT_ISB           0x00000005u
#define PCAPNG_BT_EPB           0x00000006u
#define PCAPNG_BT_CUSTOM        0x00000BADu /* copiable custom block */
#define PCAPNG_BT_CUSTOM_NC     0x40000BADu /* not copiable */
#define PCAPNG_BYTE_ORDER_MAGIC 0x1A2B3C4Du

/* Blocks larger than this are refused by the writer and taken for
 * garbage by the reader: bounds what a file can make us allocate. */
#define PCAPNG_MAX_BLOCK (256u * 1024)

/* Options. */
#define PCAPNG_OPT_END        0
#define PCAPNG_OPT_COMMENT    1
#define PCAPNG_SHB_HARDWARE   2
#define PCAPNG_SHB_OS         3
#define PCAPNG_SHB_USERAPPL   4
#define PCAPNG_IF_NAME        2
#define PCAPNG_IF_DESCRIPTION 3
#define PCAPNG_IF_TSRESOL     9
#define PCAPNG_EPB_FLAGS      2
#define PCAPNG_EPB_DROPCOUNT  4
#define PCAPNG_EPB_PACKETID   5
#define PCAPNG_EPB_VERDICT    7
#define PCAPNG_ISB_STARTTIME  2
#define PCAPNG_ISB_ENDTIME    3
#define PCAPNG_ISB_IFRECV     4
#define PCAPNG_ISB_IFDROP     5
#define PCAPNG_ISB_OSDROP     7
#define PCAPNG_ISB_USRDELIV   8

/* epb_flags bits 0-1 */
#define PCAPNG_DIR_UNKNOWN  0
#define PCAPNG_DIR_INBOUND  1
#define PCAPNG_DIR_OUTBOUND 2

/* epb_verdict types */
#define PCAPNG_VERDICT_HW  0
#define PCAPNG_VERDICT_TC  1
#define PCAPNG_VERDICT_XDP 2

#define PCAPNG_LINKTYPE_ETHERNET 1

/* ---- writer ---------------------------------------------------------- */
struct pcapng_buf {
	uint8_t *p;
	size_t len, cap;
};

void pcapng_buf_free(struct pcapng_buf *b);

struct pcapng_shb_info {
	const char *hardware, *os, *userappl, *comment; /* each may be NULL */
};

struct pcapng_idb_info {
	uint16_t linktype;
	uint32_t snaplen;
	const char *name, *description; /* may be NULL */
};

struct pcapng_epb_info {
	uint32_t ifid;
	uint64_t ts_ns;
	const uint8_t *data;
	uint32_t caplen, origlen;
	uint32_t flags; /* epb_flags; 0 = not written */
	bool has_dropcount;
	uint64_t dropcount;
	bool has_packetid;
	uint64_t packetid;
	bool has_verdict;
	uint8_t verdict_type; /* PCAPNG_VERDICT_* */
	uint64_t verdict;     /* XDP action for PCAPNG_VERDICT_XDP */
	const char *comment;  /* may be NULL */
};

struct pcapng_isb_info {
	uint32_t ifid;
	uint64_t ts_ns;
	uint64_t start_ns, end_ns;
	bool has_counters;
	uint64_t ifrecv, ifdrop, usrdeliv;
	const char *comment;
};

/* Each appends one block; -E2BIG if it would exceed PCAPNG_MAX_BLOCK (the
 * buffer is unchanged then). */
int pcapng_put_shb(struct pcapng_buf *b, const struct pcapng_shb_info *i);
int pcapng_put_idb(struct pcapng_buf *b, const struct pcapng_idb_info *i);
int pcapng_put_epb(struct pcapng_buf *b, const struct pcapng_epb_info *i);
int pcapng_put_isb(struct pcapng_buf *b, const struct pcapng_isb_info *i);
int pcapng_put_custom(struct pcapng_buf *b, uint32_t pen, const void *data, size_t len);
/* A block copied as it is (already validated by the reader). */
int pcapng_put_raw(struct pcapng_buf *b, const void *block, size_t len);

/* ---- reader ---------------------------------------------------------- */
struct pcapng_block {
	uint32_t type;
	uint32_t total_len;  /* including the 12 bytes of framing */
	const uint8_t *body; /* after type and length */
	size_t body_len;     /* total_len - 12 */
	const uint8_t *raw;  /* the whole block */
	uint64_t offset;     /* in the stream */
};

struct pcapng_reader;

/* Reads from fd (not closed by the reader) from its current offset. */
int pcapng_reader_new(int fd, struct pcapng_reader **ret);
void pcapng_reader_free(struct pcapng_reader *r);
/* 1: *b filled (valid until the next call); 0: clean end of data;
 * -ENODATA: the last block is cut short (torn); -EBADMSG: not pcapng,
 * a length that does not add up, or a section we cannot read (other byte
 * order); -errno: read error.  After a negative return the walk is over;
 * pcapng_reader_valid_end() is where the good prefix ends. */
int pcapng_next(struct pcapng_reader *r, struct pcapng_block *b);
uint64_t pcapng_reader_valid_end(const struct pcapng_reader *r);

/* Options: iterate over the option area of a body, starting at `off`. */
struct pcapng_opt {
	uint16_t code;
	uint16_t len;
	const uint8_t *val;
};
/* 1: *o filled; 0: end (opt_endofopt or end of area); -EBADMSG: overrun. */
int pcapng_opt_next(const uint8_t *area, size_t area_len, size_t *pos, struct pcapng_opt *o);

struct pcapng_idb_view {
	uint16_t linktype;
	uint32_t snaplen;
	char name[128], description[256];
	uint64_t ts_div_num, ts_div_den; /* ns = ts * num / den */
	const uint8_t *opts;
	size_t opts_len;
};

struct pcapng_epb_view {
	uint32_t ifid;
	uint64_t ts_raw;
	uint32_t caplen, origlen;
	const uint8_t *data;
	uint32_t flags;
	bool has_dropcount, has_packetid, has_verdict;
	uint64_t dropcount, packetid;
	uint8_t verdict_type;
	uint64_t verdict;
	const char *comment; /* not NUL-terminated */
	size_t comment_len;
	const uint8_t *opts;
	size_t opts_len;
};

int pcapng_parse_idb(const struct pcapng_block *b, struct pcapng_idb_view *v);
int pcapng_parse_epb(const struct pcapng_block *b, struct pcapng_epb_view *v);
/* SHB: byte order must be ours; version 1.x.  Options area returned. */
int pcapng_parse_shb(const struct pcapng_block *b, const uint8_t **opts, size_t *opts_len);
/* Custom block: PEN and the data (trailing NUL padding not stripped). */
int pcapng_parse_custom(const struct pcapng_block *b, uint32_t *pen, const uint8_t **data, size_t *len);
int pcapng_parse_isb(const struct pcapng_block *b, uint32_t *ifid, const uint8_t **opts, size_t *opts_len);
uint64_t pcapng_ts_ns(const struct pcapng_idb_view *idb, uint64_t ts_raw);

/* ---- classic pcap (nanosecond magic) ----------------------------------- */
int pcap_put_header(struct pcapng_buf *b, uint32_t snaplen, uint32_t linktype);
int pcap_put_record(struct pcapng_buf *b, uint64_t ts_ns, const uint8_t *data, uint32_t caplen,
		    uint32_t origlen);

#endif
