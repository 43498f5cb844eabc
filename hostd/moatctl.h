/* SPDX-License-Identifier: Apache-2.0 */
/* What moatctl.c shares with the commands kept in their own files
 * (moatctl_archive.c). */
#ifndef MOAT_MOATCTL_H
#define MOAT_MOATCTL_H

#include <stddef.h>
#include <curl/curl.h>
#include <jansson.h>

struct gopts {
	const char *socket;
	const char *node;
	const char *output; /* "", "json", "wide" */
};

/* moatctl.c */
const char *sock_path(const struct gopts *g, char *tmp, size_t len);
struct curl_slist *auth_header(void);
int api_call(const struct gopts *g, const char *method, const char *path, const char *body, size_t blen,
	     json_t **ret, char **raw, long *codep);
char *url_escape(const char *s);

/* moatctl_archive.c */
int moatctl_archive(const struct gopts *g, int argc, char **argv);       /* archive list|query */
int moatctl_policy_replay(const struct gopts *g, int argc, char **argv); /* policy replay */

#endif
