/*
 * fake_kie.h — what the two files of fake-kie share: fake_kie.c (the API host: tasks,
 * envelopes, checks, callbacks, main) and fake_kie_files.c (the upload host, /files and
 * /results). Not a library: one program's internal seam.
 */
#ifndef TRYON_FAKE_KIE_H
#define TRYON_FAKE_KIE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "fake.h"

/* ------------------------------------------------------------ from fake_kie.c */

/* The auth check of every API and upload endpoint (after the User-Agent guard and the
 * canned answers); false when it answered (HTTP 401, or 200 when scripted). */
bool kie_admit(fake_request *r);
/* kie_admit, then the JSON body; NULL when it answered (the body not JSON: code 400). */
const cJSON *kie_admit_json(fake_request *r);
/* The upload host's error: HTTP 200 {"success":false,"code","msg","data":null}. */
void kie_upload_error(fake_request *r, int code, const char *msg);
bool kie_is_http_url(const char *s);
/* Whether task `id` succeeded; then `src_url` is its first image URL ("" when none).
 * Takes the lock. */
bool kie_task_result_source(const char *id, char *src_url, size_t cap);

/* ------------------------------------------------------ from fake_kie_files.c */

/* Before serving: the fake, and the ceiling on the bytes of uploaded files held. */
void kie_files_init(fake *f, size_t max_bytes);
/* Forgets every uploaded file (lock held). */
void kie_files_reset(void);
/* A URL of the fake itself: "/files/<id>/..." (the file id in `what`) or
 * "/results/<taskId>.<ext>" (the task id, *is_result set), at 127.0.0.1 or localhost. */
bool kie_own_url(const char *url, char *what, size_t cap, bool *is_result);

/* The routes of the upload host and the file server. */
void kie_handle_stream_upload(fake_request *r, void *ud);
void kie_handle_base64_upload(fake_request *r, void *ud);
void kie_handle_url_upload(fake_request *r, void *ud);
void kie_handle_get_file(fake_request *r, void *ud);
void kie_handle_get_result(fake_request *r, void *ud);

#endif
