/*
 * tryon/kie.h - the kie.ai Nano Banana protocol as pure functions: requests are built
 * here and answers judged here; the network is the caller's (tryon_http_call on the
 * worker's loop, or tryon_http_perform in tools). No I/O, no logging, no global state.
 * Facts about the provider: ../shared/PROVIDERS.md section 1.
 *
 * Sections:
 *   1. Configuration and limits
 *   2. Requests (upload, createTask, recordInfo)
 *   3. Verdicts and answers
 *   4. Callbacks (POST /webhooks/kie)
 *   5. Polling
 *
 * A try-on runs: upload each photo (tryon_kie_upload_request → tryon_kie_parse_upload
 * gives a download URL) → createTask with those URLs (tryon_kie_create_request →
 * tryon_kie_parse_create gives a task id) → poll recordInfo (tryon_kie_record_request →
 * tryon_kie_parse_record) at tryon_kie_poll_delay_ms intervals until the state is
 * SUCCESS or FAIL or TRYON_KIE_POLL_LIMIT_MS passes; a callback only makes the next
 * poll come sooner (its body is not signed: see section 4).
 *
 * Thread-safety: every function is reentrant; a request or task belongs to one thread
 * at a time.
 */
#ifndef TRYON_KIE_H
#define TRYON_KIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tryon/core.h>
#include <tryon/http.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------- 1. Configuration and limits */

#define TRYON_KIE_DEFAULT_MODEL "google/nano-banana-edit"
#define TRYON_KIE_UPLOAD_PATH "tryon"      /* uploadPath of every upload */
#define TRYON_KIE_PROMPT_MAX 5000          /* characters, counted as UTF-16 units */
#define TRYON_KIE_IMAGES_MAX 10            /* image_urls per task */
#define TRYON_KIE_UPLOAD_MAX 10000000u     /* bytes per image (the model's 10 MB) */
#define TRYON_KIE_FILE_NAME_MAX 100        /* bytes of an upload's fileName */
#define TRYON_KIE_URL_MAX 2048             /* bytes of an image URL, NUL included */
#define TRYON_KIE_TASK_ID_MAX 201          /* bytes of a task id, NUL included */
#define TRYON_KIE_POLL_LIMIT_MS 900000     /* default give-up for a task: 15 minutes */
#define TRYON_KIE_ANSWER_MAX (1u << 20)    /* response ceiling of every kie request */
#define TRYON_KIE_TIMEOUT_MS 30000         /* per attempt, createTask and recordInfo */
#define TRYON_KIE_UPLOAD_TIMEOUT_MS 120000 /* per attempt, an upload of up to 10 MB */

/*
 * Where and who. Every string is borrowed by the builders (which copy what they keep)
 * and is the caller's: usually pointers into tryon_config (kie_api_url,
 * kie_upload_url, kie_api_key, kie_model).
 */
typedef struct tryon_kie_config {
  const char *api_url;      /* https://api.kie.ai (a trailing '/' is fine); required */
  const char *upload_url;   /* https://kieai.redpandaai.co; required for uploads */
  const char *api_key;      /* sent as "Authorization: Bearer <key>"; never logged,
                               never in an error message; required */
  const char *model;        /* NULL or "": TRYON_KIE_DEFAULT_MODEL */
  const char *user_agent;   /* NULL or "": "tryon/<version>" (Cloudflare answers 403
                               "error code: 1010" to a request without one) */
  const char *callback_url; /* NULL or "": createTask sends no callBackUrl */
} tryon_kie_config;

/* ---------------------------------------- 2. Requests (upload, createTask, recordInfo) */

/*
 * An owned request: `http` is ready for tryon_http_call_new / tryon_http_perform and
 * its pointers point into the rest of the struct (and, for an upload, at the caller's
 * image bytes). Release with tryon_kie_request_release once the call has been created
 * (the http layer copies what it keeps). Do not copy the struct by value; touch only
 * `http`.
 *
 * Every request carries "Authorization: Bearer <key>", "Accept: application/json",
 * http.user_agent set (never NULL), log_label "kie", a 1 MiB answer ceiling and
 * timeouts of TRYON_KIE_TIMEOUT_MS (TRYON_KIE_UPLOAD_TIMEOUT_MS for uploads).
 * Attempts: uploads and recordInfo keep the http layer's default (3; they are
 * idempotent); createTask makes ONE attempt, because a POST retried after a timeout or
 * a reset may create (and bill) a second task: its failures come back as verdicts for
 * the job to weigh.
 */
typedef struct tryon_kie_request {
  tryon_http_request http;
  struct {
    char *url;
    char *auth; /* "Authorization: Bearer ..."; wiped on release */
    char *user_agent;
    char *file_name;
    const char *headers[3];
    cJSON *json;
    tryon_http_part parts[3];
  } priv_; /* private */
} tryon_kie_request;

/* Frees (and wipes the key in) everything `r` owns and zeroes it. A zeroed request and
 * a second release are fine. */
TRYON_API void tryon_kie_request_release(tryon_kie_request *r);

/*
 * POST <upload_url>/api/file-stream-upload, multipart: `file` (the bytes, with
 * `file_name` and `mime`), `uploadPath` TRYON_KIE_UPLOAD_PATH, `fileName` file_name.
 * Files are free and deleted by kie after about 3 days.
 *
 * data/len: the image, borrowed until the request is handed to tryon_http_call_new or
 *   tryon_http_perform (which copy it) — not copied here; 1..TRYON_KIE_UPLOAD_MAX bytes.
 * mime: "image/jpeg", "image/png" or "image/webp" (what the model accepts).
 * file_name: 1..TRYON_KIE_FILE_NAME_MAX bytes of [A-Za-z0-9._-], not starting with '.'
 *   (it becomes part of the download URL).
 * out: caller-owned, initialised here (zeroed on failure).
 * Returns TRYON_OK; TRYON_E_INVALID for a NULL or bad argument or configuration (no
 * key, a key with spaces or control characters, a URL not http(s)); TRYON_E_TOO_LARGE
 * for an image over the limit; TRYON_E_NOMEM. Messages never quote the key.
 */
TRYON_API tryon_status tryon_kie_upload_request(const tryon_kie_config *cfg, const void *data,
                                                size_t len, const char *mime, const char *file_name,
                                                tryon_kie_request *out, tryon_err *err);

/*
 * POST <api_url>/api/v1/jobs/createTask with every field explicit:
 *   {"model":..., ["callBackUrl":...,] "input":{"prompt":..., "image_urls":[...],
 *    "output_format":..., "aspect_ratio":...}}
 * (the image_urls family of models: google/nano-banana-edit; nano-banana-pro and
 * nano-banana-2 take `image_input` and other limits and are not built here).
 *
 * prompt: valid UTF-8, 1..TRYON_KIE_PROMPT_MAX characters counted as UTF-16 units (as
 *   a JavaScript service counts them; an emoji counts 2), no NUL.
 * image_urls/n: 1..TRYON_KIE_IMAGES_MAX http(s) URLs (kie takes URLs, never base64:
 *   upload first), each under TRYON_KIE_URL_MAX bytes, without spaces or control
 *   characters. Copied.
 * output_format: "png" or "jpeg"; NULL: "png".
 * aspect_ratio: one of 1:1 9:16 16:9 3:4 4:3 3:2 2:3 5:4 4:5 21:9 auto; NULL: "auto".
 * Returns as tryon_kie_upload_request (TRYON_E_TOO_LARGE for a long prompt).
 */
TRYON_API tryon_status tryon_kie_create_request(const tryon_kie_config *cfg, const char *prompt,
                                                const char *const *image_urls, size_t n,
                                                const char *output_format, const char *aspect_ratio,
                                                tryon_kie_request *out, tryon_err *err);

/*
 * GET <api_url>/api/v1/jobs/recordInfo?taskId=<id, percent-encoded>.
 * task_id: 1..TRYON_KIE_TASK_ID_MAX-1 bytes, no control characters.
 * Returns as tryon_kie_upload_request.
 */
TRYON_API tryon_status tryon_kie_record_request(const tryon_kie_config *cfg, const char *task_id,
                                                tryon_kie_request *out, tryon_err *err);

/*
 * Whether `ratio` is one of the aspect ratios createTask accepts: 1:1 9:16 16:9 3:4 4:3
 * 3:2 2:3 5:4 4:5 21:9 auto. The one owner of that list: the product's ratios are the
 * provider's vocabulary, and generations validates a request's ratio through this
 * (a per-model table, when other models come, maps onto each model's words here).
 */
TRYON_API bool tryon_kie_aspect_ratio_ok(const char *ratio);

/* ------------------------------------------------------------ 3. Verdicts and answers */

/*
 * Answers are judged into the shared tryon_verdict (tryon/http.h section 6): the
 * transfer and the HTTP status through tryon_verdict_from_transport, then kie.ai's
 * envelope, whose body `code` (kept in v->provider_code) is checked even under HTTP 200
 * and, being more specific, wins over an HTTP error status. kie.ai's documented codes
 * map onto our words as follows (`code` is ours and stable; `detail` holds the
 * provider's msg or message, or what was wrong, for logs only):
 *   RETRY: rate_limited (HTTP or body 429, body 433: a sub-key's limit), maintenance
 *     (455), server_error (HTTP 5xx, body 500 — sometimes a disguised validation
 *     error, hence bounded by the caller; any other body 5xx), network, timeout (the
 *     transfer timed out; HTTP 408), bad_answer (a 2xx whose body is not JSON at all: a
 *     proxy's page, an empty body — transient far more often than not), internal (out
 *     of memory here), pending (recordInfo said success but no result URL yet).
 *   FINAL: bad_request (body 400, any other 4xx), unauthorized (401), forbidden (HTTP
 *     403), user_agent_refused (HTTP 403 "error code: 1010" from Cloudflare),
 *     provider_out_of_credits (402), not_found (404; 422 "recordInfo is null": an
 *     unknown taskId), timeout (body 408: no result for over 10 minutes), validation
 *     (422), generation_failed (501, a failed task), content_refused (a failed task
 *     whose failCode/failMsg speaks of moderation, policy, safety, NSFW ...),
 *     feature_disabled (505), bad_answer (well-formed JSON without the fields the
 *     protocol promises, a body code that is neither 200 nor 4xx/5xx, a body over
 *     the ceiling: retrying will not change it), internal (a request that could not
 *     be sent).
 * retry_after_ms: a RETRY read from an answer carries its Retry-After (0 when none).
 */

/*
 * Every parser takes what a finished call gives: `resp` (tryon_http_call_response or
 * the response of tryon_http_perform; NULL when none) and `http_st` (from
 * tryon_http_call_status / tryon_http_perform), always fills `*v` (caller-owned), and
 * returns v->next == TRYON_VERDICT_OK. Outputs are written only on OK (and emptied
 * otherwise).
 */

/* An upload's answer: `data.downloadUrl` (or, only when that is absent, `data.fileUrl`,
 * which one quickstart shows) into download_url[cap]; `success` false is an error. A
 * URL that is not http(s) or does not fit `cap` is FINAL bad_answer. */
TRYON_API bool tryon_kie_parse_upload(const tryon_http_response *resp, tryon_status http_st,
                                      char *download_url, size_t cap, tryon_verdict *v);

/* createTask's answer: `data.taskId` into task_id. */
TRYON_API bool tryon_kie_parse_create(const tryon_http_response *resp, tryon_status http_st,
                                      char task_id[TRYON_KIE_TASK_ID_MAX], tryon_verdict *v);

typedef enum tryon_kie_state {
  TRYON_KIE_WAITING = 0,
  TRYON_KIE_QUEUING = 1,
  TRYON_KIE_GENERATING = 2,
  TRYON_KIE_SUCCESS = 3,
  TRYON_KIE_FAIL = 4,
  /* A state this code does not know. Not an end: keep polling (kie added `waiting`
   * once and integrations that treated it as final or as an error broke; a new state
   * is far likelier to be another step on the way). The poll limit bounds it. */
  TRYON_KIE_UNKNOWN = 5,
} tryon_kie_state;

/* "waiting" ... "fail", "unknown". */
TRYON_API const char *tryon_kie_state_name(tryon_kie_state s);
/* SUCCESS and FAIL end a task; every other state means poll again. */
TRYON_API bool tryon_kie_state_done(tryon_kie_state s);

typedef struct tryon_kie_task {
  char task_id[TRYON_KIE_TASK_ID_MAX]; /* as the answer gives it: compare with your own */
  tryon_kie_state state;
  char result_url[TRYON_KIE_URL_MAX]; /* SUCCESS: resultUrls[0] (download it at once:
                                         kie keeps results for a day or two) */
  char fail_code[64];                 /* FAIL: failCode ("" when "" or null) */
  char fail_msg[512];                 /* FAIL: failMsg ("" when "" or null); logs only */
} tryon_kie_task;

/*
 * recordInfo's answer into `*t`. `resultJson` is a JSON string to parse again (an
 * object is accepted too; "" or null until success). Verdicts:
 *   OK with state WAITING, QUEUING, GENERATING or UNKNOWN (poll again; for UNKNOWN
 *     v->detail names the state) or SUCCESS with result_url set;
 *   RETRY pending: success without a usable result URL yet;
 *   FINAL generation_failed / content_refused: state FAIL (t->state FAIL, fail_code
 *     and fail_msg set; kie reports failed tasks are not charged);
 *   FINAL not_found for an unknown taskId; the rest as any answer.
 * `*t` is zeroed first; on a FAIL verdict it is filled as well.
 */
TRYON_API bool tryon_kie_parse_record(const tryon_http_response *resp, tryon_status http_st,
                                      tryon_kie_task *t, tryon_verdict *v);

/* --------------------------------------------------- 4. Callbacks (POST /webhooks/kie) */

/*
 * Checks a callback's signature (the server requires one whenever a callback URL is set;
 * config refuses a callback URL without the key), with the webhook HMAC key set in the kie
 * account (and in TRYON_KIE_WEBHOOK_HMAC_KEY): X-Webhook-Signature must be
 * base64(HMAC-SHA256(key, task_id + "." + X-Webhook-Timestamp)), compared in constant
 * time (padding optional; the URL-safe alphabet accepted), and the timestamp (Unix
 * seconds, digits only) within max_skew_s of now_s either way.
 *
 * The signature covers the task id and the time, NOT the body: treat a verified
 * callback as "task <id> has news" and confirm with recordInfo before trusting its
 * result or charging anyone. Parse the body first (tryon_kie_parse_callback) to learn
 * the task id, then verify, then poll.
 *
 * Returns TRYON_OK; TRYON_E_FORBIDDEN when a header is missing or malformed, the
 * timestamp is stale or in the future, or the signature does not match (err says
 * which, never the key or the expected value); TRYON_E_INVALID for a NULL or empty key
 * or task id or a negative skew.
 */
TRYON_API tryon_status tryon_kie_callback_verify(const char *key, const char *timestamp_hdr,
                                                 const char *signature_hdr, const char *task_id,
                                                 int64_t now_s, int64_t max_skew_s, tryon_err *err);

/*
 * A callback body: {"code":200|501,"msg":...,"data":<recordInfo's data shape>}, the
 * task id under `taskId` or `task_id`. Fills `*out` and `*v` as tryon_kie_parse_record
 * would (a 501 is a FAIL even when data says nothing more).
 * Returns TRYON_OK when the body is a kie callback with a task id (whatever its
 * verdict); TRYON_E_INVALID when it is not JSON, not an object, has no data object or
 * no usable task id (the server answers 400); TRYON_E_NOMEM.
 */
TRYON_API tryon_status tryon_kie_parse_callback(const char *body, size_t len, tryon_kie_task *out,
                                                tryon_verdict *v, tryon_err *err);

/* ------------------------------------------------------------------------ 5. Polling */

/*
 * How long to wait before poll number `poll_index` (0 = the first poll after
 * createTask): 2500, 2500, 4000, 6000, 8000, then 10000 ms for every later poll (a
 * negative index counts as 0). No jitter: the times tasks start already spread polls.
 * Stop after TRYON_KIE_POLL_LIMIT_MS (or TRYON_KIE_POLL_LIMIT_S) from createTask.
 */
TRYON_API int64_t tryon_kie_poll_delay_ms(int poll_index);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_KIE_H */
