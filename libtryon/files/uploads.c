/*
 * The uploads table.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/files.h>

#define UPLOAD_COLUMNS                                                \
  "id::text, user_id, origin, mime, width, height, bytes, has_thumb," \
  " (extract(epoch FROM created_at) * 1000000)::bigint"

static void row_to_upload(PGresult *res, int row, tryon_upload *u) {
  memset(u, 0, sizeof *u);
  snprintf(u->id, sizeof u->id, "%s", PQgetvalue(res, row, 0));
  u->user_id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
  snprintf(u->origin, sizeof u->origin, "%s", PQgetvalue(res, row, 2));
  snprintf(u->mime, sizeof u->mime, "%s", PQgetvalue(res, row, 3));
  u->width = (int)strtol(PQgetvalue(res, row, 4), NULL, 10);
  u->height = (int)strtol(PQgetvalue(res, row, 5), NULL, 10);
  u->bytes = strtoll(PQgetvalue(res, row, 6), NULL, 10);
  u->has_thumb = PQgetvalue(res, row, 7)[0] == 't';
  u->created_at_us = strtoll(PQgetvalue(res, row, 8), NULL, 10);
}

tryon_status tryon_uploads_at_quota(tryon_db_conn *c, int64_t user_id, int quota, bool *full,
                                    tryon_err *err) {
  char uid[24], q[16];
  PGresult *res = NULL;
  snprintf(uid, sizeof uid, "%" PRId64, user_id);
  snprintf(q, sizeof q, "%d", quota);
  const char *p[] = {uid, q};
  tryon_status st = tryon_db_exec(c,
                                  "SELECT count(*) >= $2::int FROM uploads WHERE user_id ="
                                  " $1::bigint AND origin = 'upload' AND deleted_at IS NULL",
                                  2, p, &res, err);
  *full = st == TRYON_OK && PQgetvalue(res, 0, 0)[0] == 't';
  PQclear(res);
  return st;
}

tryon_status tryon_uploads_insert(tryon_db_conn *c, int64_t user_id, const char *id,
                                  const tryon_image *img, int quota, tryon_upload *out,
                                  tryon_err *err) {
  char uid[24], w[16], h[16], bytes[24], sha[65];
  PGresult *res = NULL;
  tryon_status st;

  snprintf(uid, sizeof uid, "%" PRId64, user_id);
  const char *lock[] = {uid};
  /* One upload of this user at a time past this point, so the count below is exact. */
  st = tryon_db_exec(c, "SELECT 1 FROM users WHERE id = $1::bigint FOR UPDATE", 1, lock, &res, err);
  if (st != TRYON_OK)
    goto out;
  if (PQntuples(res) == 0) {
    st = tryon_err_set(err, TRYON_E_NOT_FOUND, "no such user");
    goto out;
  }
  PQclear(res);
  res = NULL;
  bool full = false;
  st = tryon_uploads_at_quota(c, user_id, quota, &full, err);
  if (st != TRYON_OK)
    goto out;
  if (full) {
    st = tryon_err_set(err, TRYON_E_QUOTA_EXCEEDED,
                       "You already keep %d photos; delete some to upload more", quota);
    goto out;
  }
  snprintf(w, sizeof w, "%d", img->width);
  snprintf(h, sizeof h, "%d", img->height);
  snprintf(bytes, sizeof bytes, "%zu", img->len);
  tryon_hex_encode(img->sha256, sizeof img->sha256, sha);
  const char *ins[] = {id, uid, img->mime, w, h, bytes, sha, img->thumb ? "true" : "false"};
  st = tryon_db_exec(c,
                     "INSERT INTO uploads (id, user_id, origin, mime, width, height, bytes,"
                     " sha256, has_thumb) VALUES ($1::uuid, $2::bigint, 'upload', $3, $4::int,"
                     " $5::int, $6::bigint, decode($7, 'hex'), $8::boolean)"
                     " RETURNING " UPLOAD_COLUMNS,
                     8, ins, &res, err);
  if (st == TRYON_OK && out != NULL)
    row_to_upload(res, 0, out);
out:
  PQclear(res);
  return st;
}

tryon_status tryon_uploads_get(tryon_db_conn *c, int64_t user_id, const char *id, tryon_upload *out,
                               tryon_err *err) {
  char uid[24];
  PGresult *res = NULL;
  tryon_status st;

  if (!tryon_uuid_valid(id))
    return tryon_err_set(err, TRYON_E_NOT_FOUND, "no such upload");
  snprintf(uid, sizeof uid, "%" PRId64, user_id);
  const char *p[] = {id, uid};
  st = tryon_db_exec(c,
                     "SELECT " UPLOAD_COLUMNS " FROM uploads WHERE id = $1::uuid"
                     " AND user_id = $2::bigint AND deleted_at IS NULL",
                     2, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_NOT_FOUND, "no such upload");
  else if (st == TRYON_OK)
    row_to_upload(res, 0, out);
  PQclear(res);
  return st;
}

/* The cursor is "<created_at microseconds>.<id>": the keyset of the last row shown. */
static bool cursor_parse(const char *cursor, char *us, size_t us_cap, char *id) {
  const char *dot = strchr(cursor, '.');
  if (dot == NULL || dot == cursor || (size_t)(dot - cursor) > 16 ||
      (size_t)(dot - cursor) >= us_cap || strspn(cursor, "0123456789") != (size_t)(dot - cursor) ||
      !tryon_uuid_valid(dot + 1))
    return false;
  snprintf(us, us_cap, "%.*s", (int)(dot - cursor), cursor);
  snprintf(id, TRYON_UUID_STR_LEN, "%s", dot + 1);
  return true;
}

tryon_status tryon_uploads_list(tryon_db_conn *c, int64_t user_id, int limit, const char *cursor,
                                tryon_upload *out, size_t *n, char *next, tryon_err *err) {
  char uid[24], lim[16], us[24] = "", cid[TRYON_UUID_STR_LEN] = "";
  PGresult *res = NULL;
  tryon_status st;

  *n = 0;
  if (limit < 1 || limit > 100)
    return tryon_err_set(err, TRYON_E_INVALID, "limit must be from 1 to 100");
  bool paged = cursor != NULL && cursor[0] != '\0';
  if (paged && !cursor_parse(cursor, us, sizeof us, cid))
    return tryon_err_set(err, TRYON_E_INVALID, "the cursor is not valid");
  next[0] = '\0'; /* only now: `next` may be the buffer `cursor` points into */
  snprintf(uid, sizeof uid, "%" PRId64, user_id);
  /* One more row than asked tells whether there is a next page. */
  snprintf(lim, sizeof lim, "%d", limit + 1);
  const char *p[] = {uid, lim, paged ? us : NULL, paged ? cid : NULL};
  st = tryon_db_exec(c,
                     "SELECT " UPLOAD_COLUMNS " FROM uploads"
                     " WHERE user_id = $1::bigint AND origin = 'upload' AND deleted_at IS NULL"
                     " AND ($3::bigint IS NULL OR (created_at, id) <"
                     " (timestamptz 'epoch' + $3::bigint * interval '1 microsecond', $4::uuid))"
                     " ORDER BY created_at DESC, id DESC LIMIT $2::int",
                     4, p, &res, err);
  if (st != TRYON_OK)
    goto out;
  int rows = PQntuples(res);
  for (int i = 0; i < rows && i < limit; i++)
    row_to_upload(res, i, &out[i]);
  *n = (size_t)(rows < limit ? rows : limit);
  if (rows > limit)
    snprintf(next, TRYON_UPLOADS_CURSOR_MAX, "%" PRId64 ".%s", out[limit - 1].created_at_us,
             out[limit - 1].id);
out:
  PQclear(res);
  return st;
}

/* The row goes (`sql_delete`) unless another table still refers to the image: then the
 * DELETE fails on that table's foreign key (SQLSTATE 23503, every reference to uploads
 * being NO ACTION or RESTRICT) and the row is marked deleted instead (`sql_mark`); its
 * file goes all the same. So this module needs to know nothing of who refers to an
 * upload. Either statement changes one row or nothing; inside the caller's transaction
 * a savepoint undoes the failed DELETE, so no half-state is ever visible. */
static const char sql_delete[] = "DELETE FROM uploads WHERE id = $1::uuid AND user_id = $2::bigint"
                                 " AND deleted_at IS NULL RETURNING 1";
static const char sql_mark[] = "UPDATE uploads SET deleted_at = now() WHERE id = $1::uuid"
                               " AND user_id = $2::bigint AND deleted_at IS NULL RETURNING 1";

tryon_status tryon_uploads_delete(tryon_db_conn *c, int64_t user_id, const char *id,
                                  tryon_err *err) {
  char uid[24];
  PGresult *res = NULL;
  tryon_status st = TRYON_OK;
  tryon_err e; /* ours, so that the SQLSTATE is readable even when err is NULL */
  bool in_tx = PQtransactionStatus(tryon_db_conn_pg(c)) != PQTRANS_IDLE;

  tryon_err_clear(&e);
  if (!tryon_uuid_valid(id)) {
    st = tryon_err_set(&e, TRYON_E_NOT_FOUND, "no such upload");
    goto out;
  }
  snprintf(uid, sizeof uid, "%" PRId64, user_id);
  const char *p[] = {id, uid};
  if (in_tx)
    st = tryon_db_exec(c, "SAVEPOINT tryon_uploads_delete", 0, NULL, NULL, &e);
  if (st == TRYON_OK)
    st = tryon_db_exec(c, sql_delete, 2, p, &res, &e);
  if (st == TRYON_E_CONSTRAINT && strcmp(e.sqlstate, "23503") == 0) {
    tryon_err_clear(&e);
    st = in_tx ? tryon_db_exec(c, "ROLLBACK TO SAVEPOINT tryon_uploads_delete", 0, NULL, NULL, &e)
               : TRYON_OK;
    if (st == TRYON_OK)
      st = tryon_db_exec(c, sql_mark, 2, p, &res, &e);
  }
  if (st == TRYON_OK && in_tx)
    st = tryon_db_exec(c, "RELEASE SAVEPOINT tryon_uploads_delete", 0, NULL, NULL, &e);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(&e, TRYON_E_NOT_FOUND, "no such upload");
out:
  PQclear(res);
  if (st != TRYON_OK && err != NULL)
    *err = e;
  return st;
}

/* ----------------------------------------------------------------- orphan files */

#define SWEEP_BATCH 500

/* One batch: the first `max` candidates (files old enough to judge) after the cursor.
 * Young files are passed over without counting, so a store full of new uploads cannot
 * hide the orphans behind it; the walk stops at the max-th candidate, whose key is where
 * the next batch resumes. */
typedef struct sweep {
  int64_t before_ms;
  size_t max;
  size_t n;
  bool stopped;
  char keys[SWEEP_BATCH][TRYON_UUID_STR_LEN + 6]; /* "<uuid>" or "<uuid>.thumb" */
} sweep;

static bool sweep_collect(const char *key, int64_t written_ms, void *ud) {
  sweep *s = ud;
  if (written_ms >= s->before_ms)
    return true;
  snprintf(s->keys[s->n++], sizeof s->keys[0], "%s", key);
  s->stopped = s->n == s->max;
  return !s->stopped;
}

tryon_status tryon_files_sweep_orphans(tryon_db_conn *c, tryon_storage *st_, int64_t before_ms,
                                       size_t max, const char *cursor, char *next, size_t *removed,
                                       tryon_err *err) {
  sweep *s = calloc(1, sizeof *s);
  tryon_buf arr;
  PGresult *res = NULL;
  tryon_status st;
  size_t gone = 0;
  tryon_buf_init(&arr, SWEEP_BATCH * (TRYON_UUID_STR_LEN + 1) + 2);
  if (removed != NULL)
    *removed = 0;
  if (next != NULL)
    next[0] = '\0';
  if (s == NULL || next == NULL || max == 0) {
    st = s == NULL ? tryon_err_set(err, TRYON_E_NOMEM, "out of memory")
                   : tryon_err_set(err, TRYON_E_INVALID, "invalid argument to sweep_orphans");
    goto out;
  }
  s->before_ms = before_ms;
  s->max = max < SWEEP_BATCH ? max : SWEEP_BATCH;
  st = tryon_storage_list(st_, cursor, sweep_collect, s, err);
  if (st != TRYON_OK || s->n == 0)
    goto out;
  if (s->stopped)
    snprintf(next, TRYON_FILES_SWEEP_CURSOR_MAX, "%s", s->keys[s->n - 1]);
  /* Which of the old files' ids have a row (a thumbnail goes with its image's row). */
  st = tryon_buf_append_str(&arr, "{");
  for (size_t i = 0; st == TRYON_OK && i < s->n; i++) {
    if (i > 0)
      st = tryon_buf_append_str(&arr, ",");
    if (st == TRYON_OK)
      st = tryon_buf_append(&arr, s->keys[i], 36);
  }
  if (st == TRYON_OK)
    st = tryon_buf_append_str(&arr, "}");
  if (st != TRYON_OK) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  const char *p[] = {arr.data};
  st = tryon_db_exec(c, "SELECT id::text FROM uploads WHERE id = ANY($1::uuid[])", 1, p, &res, err);
  if (st != TRYON_OK)
    goto out;
  for (size_t i = 0; i < s->n; i++) {
    bool known = false;
    for (int r = 0; r < PQntuples(res) && !known; r++)
      known = strncmp(PQgetvalue(res, r, 0), s->keys[i], 36) == 0;
    if (known)
      continue;
    tryon_err e;
    if (tryon_storage_remove(st_, s->keys[i], &e) == TRYON_OK)
      gone++;
    else
      TRYON_LOG_WARN("cannot remove an orphan file", TRYON_LF_STR("error", e.message));
  }
  if (gone > 0)
    TRYON_LOG_INFO("orphan files removed", TRYON_LF_INT("count", (int64_t)gone));
out:
  if (removed != NULL)
    *removed = gone;
  PQclear(res);
  tryon_buf_release(&arr);
  free(s);
  return st;
}
