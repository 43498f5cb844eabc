/* SPDX-License-Identifier: Apache-2.0 */
/* The standalone source: a directory of JSON/YAML manifests, watched with
 * inotify.  A file that fails to parse keeps its last good objects; an
 * object that fails to decode keeps its last good version; every problem is
 * reported with the file, the object and the field. */
#ifndef MOAT_SRCDIR_H
#define MOAT_SRCDIR_H

#include <stdbool.h>
#include <jansson.h>
#include "compile.h"

struct moat_srcdir;

typedef void (*moat_src_err_fn)(void *arg, const char *msg);

int moat_srcdir_open(const char *dir, struct moat_srcdir **ret);
void moat_srcdir_free(struct moat_srcdir *s);
int moat_srcdir_fd(const struct moat_srcdir *s);
/* Loads every file; objects go to the compiler. */
int moat_srcdir_scan(struct moat_srcdir *s, struct moat_compiler *c, moat_src_err_fn err, void *arg);
/* Reads inotify events and reloads what changed; returns the number of
 * files reloaded. */
int moat_srcdir_process(struct moat_srcdir *s, struct moat_compiler *c, moat_src_err_fn err, void *arg);
/* The outcome of applying the files reloaded since the last call: ok, or
 * refused with a message (the previous generation stays enforced). */
void moat_srcdir_applied(struct moat_srcdir *s, bool ok, const char *msg);
/* The file (name inside the directory) an object key was loaded from, or
 * NULL. */
const char *moat_srcdir_owner(const struct moat_srcdir *s, const char *key);
/* The directory. */
const char *moat_srcdir_dir(const struct moat_srcdir *s);
/* Files with their content digest, state and errors, for the API. */
json_t *moat_srcdir_json(const struct moat_srcdir *s);

/* Loads a directory once, without watching, into a fresh compiler: used by
 * `moatctl policy check` and replay.  Returns the number of errors. */
int moat_srcdir_load_once(const char *dir, struct moat_compiler *c, moat_src_err_fn err, void *arg);

#endif
