/*
 * Photos: upload, list, delete, and serving stored images through signed links.
 */
#include "api/api_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A stored image is at most TRYON_FILES_MAX_OUTPUT_BYTES; a thumbnail far less. */
#define SERVE_MAX (TRYON_FILES_MAX_OUTPUT_BYTES + 1024u * 1024u)

/* -------------------------------------------------------------------------- helpers */

/* Links stay the same for an hour at a time (exp rounded up to the hour), so a browser's
 * cache keeps serving an image the app lists again. */
static int64_t link_expiry(tryon_api *api) {
  int64_t now = tryon_clock_now_ms(api->clock) / 1000;
  return ((now + api->cfg->file_link_ttl_s) / 3600 + 1) * 3600;
}

/* The absolute signed URL of image `id` (or its thumbnail) into `out`. */
static void signed_url(tryon_api *api, const char *id, bool thumb, int64_t exp, char *out,
                       size_t cap) {
  char path[TRYON_LINK_MAX];
  const char *base = api->cfg->public_url;
  size_t blen = strlen(base);
  while (blen > 0 && base[blen - 1] == '/')
    blen--;
  if (tryon_link_sign(&api->link_key, id, thumb, exp, path, sizeof path, NULL) != TRYON_OK)
    path[0] = '\0';
  snprintf(out, cap, "%.*s%s", (int)blen, base, path);
}

void tryon__api_image_links(tryon_api *api, const char *id, bool has_thumb, cJSON *obj) {
  char url[512];
  int64_t exp = link_expiry(api);
  signed_url(api, id, false, exp, url, sizeof url);
  cJSON_AddStringToObject(obj, "url", url);
  signed_url(api, id, has_thumb, exp, url, sizeof url);
  cJSON_AddStringToObject(obj, "thumb_url", url);
}

static cJSON *upload_json(tryon_api *api, const tryon_upload *u) {
  char ts[TRYON_TIME_ISO8601_LEN];
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", u->id);
  cJSON_AddStringToObject(o, "mime", u->mime);
  cJSON_AddNumberToObject(o, "width", u->width);
  cJSON_AddNumberToObject(o, "height", u->height);
  cJSON_AddNumberToObject(o, "bytes", (double)u->bytes);
  tryon__api_image_links(api, u->id, u->has_thumb, o);
  tryon_time_format_iso8601(u->created_at_us / 1000, ts);
  cJSON_AddStringToObject(o, "created_at", ts);
  return o;
}

/* A rejected file, in the words and status its problem deserves. */
static void fail_file(tryon_api_response *resp, tryon_status st, const tryon_err *err) {
  int status;
  switch (st) {
    case TRYON_E_FILE_TOO_LARGE:
      status = 413;
      break;
    case TRYON_E_UNSUPPORTED_TYPE:
    case TRYON_E_TYPE_MISMATCH:
      status = 415;
      break;
    case TRYON_E_EMPTY_FILE:
      status = 400;
      break;
    case TRYON_E_CORRUPT_IMAGE:
    case TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS:
      status = 422;
      break;
    default:
      tryon__api_fail_status(resp, st);
      return;
  }
  tryon__api_fail(resp, status, tryon_status_code(st), tryon_err_message(err));
}

void tryon__api_remove_image(tryon_api *api, const char *id) {
  char key[48];
  tryon_err err;
  snprintf(key, sizeof key, "%s", id);
  if (tryon_storage_remove(api->storage, key, &err) != TRYON_OK)
    TRYON_LOG_WARN("cannot remove a stored image", TRYON_LF_STR("error", err.message));
  snprintf(key, sizeof key, "%s.thumb", id);
  if (tryon_storage_remove(api->storage, key, &err) != TRYON_OK)
    TRYON_LOG_WARN("cannot remove a stored thumbnail", TRYON_LF_STR("error", err.message));
}

/* --------------------------------------------------------------------------- upload */

/* The non-locking quota check before the expensive work (the locked one is at insert). */
static bool under_quota(tryon_api *api, int64_t user_id, tryon_api_response *resp) {
  tryon_db_conn *c = NULL;
  bool full = false;
  tryon_err err;
  tryon_err_clear(&err);
  tryon_status st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_uploads_at_quota(c, user_id, api->cfg->upload_quota, &full, &err);
  tryon_db_release(c);
  if (st != TRYON_OK) {
    tryon__api_fail_status(resp, st);
    return false;
  }
  if (full) {
    char msg[96];
    snprintf(msg, sizeof msg, "You already keep %d photos; delete some to upload more",
             api->cfg->upload_quota);
    tryon__api_fail(resp, 409, "upload_quota_exceeded", msg);
    return false;
  }
  return true;
}

typedef struct insert_ctx {
  int64_t user_id;
  const char *id;
  const tryon_image *img;
  int quota;
  tryon_upload row;
} insert_ctx;

static tryon_status insert_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  insert_ctx *x = ud;
  return tryon_uploads_insert(c, x->user_id, x->id, x->img, x->quota, &x->row, err);
}

void tryon__api_h_upload_create(tryon_api *api, const tryon_api_request *req,
                                tryon_api_response *resp) {
  tryon_user user;
  tryon_image img;
  tryon_uuid uuid;
  char id[TRYON_UUID_STR_LEN], key[48];
  const tryon_api_part *file = NULL;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_status st;
  bool stored = false;

  memset(&img, 0, sizeof img);
  tryon_err_clear(&err);
  if (!tryon__api_session(api, req, resp, &user))
    goto out;
  for (size_t i = 0; i < req->nparts && file == NULL; i++) {
    if (strcmp(req->parts[i].name, "file") == 0)
      file = &req->parts[i];
  }
  if (file == NULL) {
    tryon__api_fail(resp, 400, "missing_file", "send the photo in the form field \"file\"");
    goto out;
  }
  if (file->too_large) {
    fail_file(resp, TRYON_E_FILE_TOO_LARGE,
              &(tryon_err){.message = "the photo is larger than 5 MB"});
    goto out;
  }
  /* The part's declared type is a claim to check against the bytes, when it names an
   * image; a generic type (application/octet-stream) claims nothing. */
  const char *declared = file->content_type && strncasecmp(file->content_type, "image/", 6) == 0
                             ? file->content_type
                             : NULL;
  /* A quick look at the quota first: a user at it gets the answer before any decode. */
  if (!under_quota(api, user.id, resp))
    goto out;
  /* Decoding a large photo takes up to ~700 MiB and a core for seconds: a few at a
   * time, whatever the number of dispatch threads, and never by waiting for a slot. */
  if (!tryon__api_image_slot_take(api)) {
    tryon__api_fail(resp, 503, "server_busy", "many photos are being processed; try again");
    tryon_api_response_header(resp, "Retry-After", "3");
    goto out;
  }
  st = tryon_image_normalise(file->data, file->len, declared, &img, &err);
  tryon__api_image_slot_give(api);
  if (st != TRYON_OK) {
    TRYON_LOG_INFO("upload refused", TRYON_LF_STR("reason", tryon_status_code(st)),
                   TRYON_LF_INT("user", user.id), TRYON_LF_INT("bytes", (int64_t)file->len));
    fail_file(resp, st, &err);
    goto out;
  }

  /* Files first, then the row: a row never points at a missing file. A crash between
   * the two leaves an orphan file, which the periodic cleanup removes. */
  tryon_uuid_v4(&uuid);
  tryon_uuid_format(&uuid, id);
  st = tryon_storage_put(api->storage, id, img.data, img.len, &err);
  if (st == TRYON_OK) {
    stored = true;
    snprintf(key, sizeof key, "%s.thumb", id);
    st = tryon_storage_put(api->storage, key, img.thumb, img.thumb_len, &err);
  }
  if (st != TRYON_OK) {
    TRYON_LOG_ERROR("cannot store an upload", TRYON_LF_STR("error", err.message));
    tryon__api_fail(resp, 500, "storage_error", "the photo could not be saved; try again");
    goto out;
  }
  insert_ctx x = {.user_id = user.id, .id = id, .img = &img, .quota = api->cfg->upload_quota};
  st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_db_tx(c, insert_tx, &x, &err);
  tryon_db_release(c);
  if (st == TRYON_E_QUOTA_EXCEEDED) {
    tryon__api_fail(resp, 409, "upload_quota_exceeded", tryon_err_message(&err));
    goto out;
  }
  if (st != TRYON_OK) {
    TRYON_LOG_ERROR("cannot record an upload", TRYON_LF_STR("error", tryon_err_message(&err)));
    tryon__api_fail_status(resp, st);
    /* A lost connection may have lost it after COMMIT: keep the files then (a row must
     * never point at nothing); the cleanup removes them if no row came to be. */
    if (st == TRYON_E_DB_UNAVAILABLE)
      stored = false;
    goto out;
  }
  stored = false; /* recorded: the files stay */
  tryon__api_json(resp, 201, upload_json(api, &x.row));
out:
  if (stored)
    tryon__api_remove_image(api, id);
  tryon_image_release(&img);
}

/* ----------------------------------------------------------------------- list, delete */

void tryon__api_h_upload_list(tryon_api *api, const tryon_api_request *req,
                              tryon_api_response *resp) {
  tryon_user user;
  tryon_upload rows[100];
  char next[TRYON_UPLOADS_CURSOR_MAX];
  size_t n = 0;
  long limit = 20;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_status st;

  tryon_err_clear(&err);
  if (!tryon__api_session(api, req, resp, &user))
    return;
  if (!tryon__api_query_limit(req, resp, &limit))
    return;
  st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_uploads_list(c, user.id, (int)limit, tryon__api_query(req, "cursor"), rows, &n, next,
                            &err);
  tryon_db_release(c);
  if (st == TRYON_E_INVALID) {
    /* Our own words: the database's (a value out of range) say nothing useful. */
    tryon__api_fail(resp, 422, "invalid_request", "the cursor or limit is not valid");
    return;
  }
  if (st != TRYON_OK) {
    tryon__api_fail_status(resp, st);
    return;
  }
  cJSON *doc = cJSON_CreateObject();
  cJSON *items = cJSON_AddArrayToObject(doc, "items");
  for (size_t i = 0; i < n; i++)
    cJSON_AddItemToArray(items, upload_json(api, &rows[i]));
  if (next[0] != '\0')
    cJSON_AddStringToObject(doc, "next_cursor", next);
  else
    cJSON_AddNullToObject(doc, "next_cursor");
  tryon__api_json(resp, 200, doc);
}

void tryon__api_h_upload_delete(tryon_api *api, const tryon_api_request *req,
                                tryon_api_response *resp) {
  tryon_user user;
  char id[64];
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_status st;

  tryon_err_clear(&err);
  if (!tryon__api_session(api, req, resp, &user))
    return;
  if (!tryon__api_path_id(req, resp, "no such photo", id)) /* /api/uploads/{id} */
    return;
  st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_uploads_delete(c, user.id, id, &err);
  tryon_db_release(c);
  if (st == TRYON_E_NOT_FOUND) {
    tryon__api_fail(resp, 404, "not_found", "no such photo");
    return;
  }
  if (st != TRYON_OK) {
    tryon__api_fail_status(resp, st);
    return;
  }
  /* The row is gone or marked deleted: the bytes go now, whatever links are around. */
  tryon__api_remove_image(api, id);
  resp->status = 204;
}

/* ---------------------------------------------------------------------- serving files */

/* Where Telegram's web clients run; downloadFile needs the link to allow it by CORS. */
#define TELEGRAM_WEB_ORIGIN "https://web.telegram.org"

static void serve_file(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp,
                       bool thumb) {
  char id[TRYON_UUID_STR_LEN], key[48], etag[64], cache[64];
  tryon_err err;
  tryon_status st;

  tryon_err_clear(&err);
  int64_t now = tryon_clock_now_ms(api->clock) / 1000;
  const char *exp = tryon__api_query(req, "exp");
  if (!tryon__api_segment(req, 1, id, sizeof id) || strlen(id) != 36 ||
      tryon_link_verify(&api->link_key, id, thumb, exp, tryon__api_query(req, "sig"), now, &err) !=
          TRYON_OK) {
    tryon__api_fail(resp, 403, "forbidden", "this link is invalid or has expired");
    return;
  }
  /* Stored images never change: the id and variant are a strong validator. */
  snprintf(etag, sizeof etag, "\"%s%s\"", id, thumb ? ".thumb" : "");
  snprintf(cache, sizeof cache, "private, max-age=%lld, immutable",
           (long long)(strtoll(exp, NULL, 10) - now));
  tryon_api_response_header(resp, "Cache-Control", cache);
  tryon_api_response_header(resp, "ETag", etag);
  /* The web app may live on another origin, and providers fetch these server to server. */
  tryon_api_response_header(resp, "Cross-Origin-Resource-Policy", "cross-origin");
  /* ?download=1 (not signed: it changes no byte, only how the answer is saved) is for
   * Telegram's downloadFile, whose web client fetches the link from its own origin. */
  const char *dl = tryon__api_query(req, "download");
  bool download = dl != NULL && strcmp(dl, "1") == 0;
  if (download && !tryon__api_has_header(resp, "Access-Control-Allow-Origin"))
    tryon_api_response_header(resp, "Access-Control-Allow-Origin", TELEGRAM_WEB_ORIGIN);
  const char *inm = tryon__api_header(req, "If-None-Match");
  if (inm != NULL && strstr(inm, etag) != NULL) {
    resp->status = 304;
    return;
  }
  snprintf(key, sizeof key, "%s%s", id, thumb ? ".thumb" : "");
  tryon_buf_release(&resp->body);
  tryon_buf_init(&resp->body, SERVE_MAX);
  st = tryon_storage_get(api->storage, key, &resp->body, &err);
  if (st == TRYON_E_NOT_FOUND) {
    tryon__api_fail(resp, 404, "not_found", "this image no longer exists");
    return;
  }
  if (st != TRYON_OK) {
    TRYON_LOG_ERROR("cannot read a stored image", TRYON_LF_STR("error", err.message));
    tryon__api_fail(resp, 500, "storage_error", "the image cannot be read right now");
    return;
  }
  /* We only ever store our own JPEG and PNG re-encodings: the signature says which. */
  const unsigned char *b = (const unsigned char *)resp->body.data;
  resp->content_type = resp->body.len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF
                           ? "image/jpeg"
                           : "image/png";
  if (download) {
    char disp[96];
    snprintf(disp, sizeof disp, "attachment; filename=\"tryon-%s%s.%s\"", id, thumb ? "-thumb" : "",
             resp->content_type[6] == 'j' ? "jpg" : "png");
    tryon_api_response_header(resp, "Content-Disposition", disp);
  }
  resp->status = 200;
}

void tryon__api_h_file(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp) {
  serve_file(api, req, resp, false);
}

void tryon__api_h_file_thumb(tryon_api *api, const tryon_api_request *req,
                             tryon_api_response *resp) {
  serve_file(api, req, resp, true);
}
