/*
 * ptask_internal.h - the pure decisions of libtryon/ptask, shared with its unit test;
 * not part of the API.
 */
#ifndef TRYON_PTASK_INTERNAL_H
#define TRYON_PTASK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <tryon/ptask.h>

/* The job's progress at `sixteenths` (0..16) of the range from..to. */
int tryon__ptask_progress(int from, int to, int sixteenths);

/* The progress after `polls` polls: from 5/16 of the range, one sixteenth per poll,
 * never past 15/16. */
int tryon__ptask_poll_progress(int from, int to, int polls);

/*
 * Whether createTask may be posted again after verdict `v` (RETRY) without risking a
 * second task: the provider said it made nothing (rate_limited, maintenance) or the
 * request never left (`sent` false). A timeout, a reset or a 5xx may hide a task.
 */
bool tryon__ptask_create_may_repeat(const tryon_verdict *v, bool sent);

/* Whether a provider's API URL points at this machine (127.0.0.1, localhost, [::1]):
 * then its result URLs may be loopback too (the fake), else only public addresses. */
bool tryon__ptask_url_local(const char *api_url);

/* Whether `name` is [a-z0-9_]{1,TRYON_PTASK_NAME_MAX-1}. */
bool tryon__ptask_name_ok(const char *name);

/*
 * The upload's file name "<prefix>-<name>.<png|jpg>" into out[cap] and its MIME type
 * (PNG by its signature, JPEG otherwise) into *mime. false when it does not fit.
 */
bool tryon__ptask_file_name(const char *prefix, const char *name, const tryon_buf *data, char *out,
                            size_t cap, const char **mime);

/* TRYON_OK, or TRYON_E_INVALID (err says which field) for a configuration
 * tryon_ptask_run refuses. */
tryon_status tryon__ptask_config_check(const tryon_ptask_config *cfg, tryon_err *err);

#endif /* TRYON_PTASK_INTERNAL_H */
