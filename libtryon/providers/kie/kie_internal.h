/*
 * kie_internal.h - helpers shared by the kie module's files. Verdicts are the shared
 * tryon_verdict of tryon/http.h (tryon_verdict_set, tryon_verdict_copy_text).
 */
#ifndef TRYON_KIE_INTERNAL_H
#define TRYON_KIE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>
#include <tryon/kie.h>

/*
 * The verdict of an envelope {"code","msg"|"message","data"} already parsed: sets
 * v->provider_code and, when the code is not 200, the verdict for it (true: code 200).
 * `msg` is stored as the detail either way.
 */
bool tryon__kie_envelope(const cJSON *root, tryon_verdict *v);

/*
 * Reads recordInfo's `data` object (also a callback's) into `t` and sets the verdict
 * (see tryon_kie_parse_record). `failed_hint`: the envelope said 501, so the task
 * failed even if data says nothing more; `env_msg` joins the refusal check then.
 */
bool tryon__kie_task_from_data(const cJSON *data, bool failed_hint, const char *env_msg,
                               tryon_kie_task *t, tryon_verdict *v);

/* Whether a failure's code or message speaks of a refusal (moderation, policy,
 * safety, NSFW ...), case-insensitively. NULLs are fine. */
bool tryon__kie_is_refusal(const char *a, const char *b, const char *c);

/* An integer field given as a JSON number or a string of digits; false otherwise. */
bool tryon__kie_int_field(const cJSON *o, const char *name, int *out);

/* The envelope's message: `msg`, or `message` when msg is absent or empty; NULL. */
const char *tryon__kie_envelope_msg(const cJSON *root);

/* `taskId` (or `task_id`) of `o` into out when it is a non-empty string under the
 * limit without control characters. */
bool tryon__kie_task_id_copy(const cJSON *o, char out[TRYON_KIE_TASK_ID_MAX]);

/* Whether s is an http:// or https:// URL with something after the scheme, without
 * spaces or control characters. */
bool tryon__kie_url_ok(const char *s);

#endif /* TRYON_KIE_INTERNAL_H */
