/* SPDX-License-Identifier: Apache-2.0 */
/* Daemon logging: one line per event on stderr, "LEVEL message".  Library
 * code in hostd/ and offload/ does not log; the daemon logs once where it
 * handles an error.  libbpf and libxdp output is demoted one level. */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

enum moat_log_level {
	MOAT_LOG_ERROR = 0,
	MOAT_LOG_WARN,
	MOAT_LOG_INFO,
	MOAT_LOG_DEBUG,
	MOAT_LOG_VERBOSE,
};

extern int moat_log_level;
void moat_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int moat_log_parse_level(const char *s);
/* Routes libbpf's messages into moat_log, one level lower. */
void moat_log_hook_libbpf(void);

#define pr_err(...)   moat_log(MOAT_LOG_ERROR, __VA_ARGS__)
#define pr_warn(...)  moat_log(MOAT_LOG_WARN, __VA_ARGS__)
#define pr_info(...)  moat_log(MOAT_LOG_INFO, __VA_ARGS__)
#define pr_debug(...) moat_log(MOAT_LOG_DEBUG, __VA_ARGS__)

#endif
