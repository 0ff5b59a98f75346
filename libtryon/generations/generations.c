/*
 * Generations: the try-on transaction, the history, and the worker's updates.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/sha.h>
#include <tryon/generations.h>

#define TS(n) TRYON_DB_TS(n)
#define MS(col) "coalesce(" TRYON_DB_MS(col) ", 0)"

#define GEN_COLUMNS                                                                           \
  "g.id::text, g.user_id, g.kind, g.status, coalesce(g.category, ''),"                        \
  " coalesce(g.prompt_version, ''), coalesce(g.person_upload_id::text, ''),"                  \
  " coalesce(g.item_upload_id::text, ''), coalesce(g.result_upload_id::text, ''),"            \
  " coalesce(r.has_thumb, false), g.aspect_ratio, g.output_format, g.cost, g.watermarked,"    \
  " g.provider, coalesce(g.model, ''), coalesce(g.provider_task_id, ''),"                     \
  " coalesce(g.error_code, ''), coalesce(g.error_message, ''), coalesce(g.job_id::text, '')," \
  " (extract(epoch FROM g.created_at) * 1000000)::bigint, " MS("g.started_at") ", " MS(       \
      "g.finished_at") ", g.credits_expired"
#define GEN_FROM " FROM generations g LEFT JOIN uploads r ON r.id = g.result_upload_id"

static void copy_col(char *dst, size_t cap, PGresult *res, int row, int col) {
  tryon_utf8_copy(dst, cap, PQgetvalue(res, row, col));
}

static void row_to_gen(PGresult *res, int r, tryon_generation *g) {
  memset(g, 0, sizeof *g);
  copy_col(g->id, sizeof g->id, res, r, 0);
  g->user_id = tryon_db_get_i64(res, r, 1);
  copy_col(g->kind, sizeof g->kind, res, r, 2);
  copy_col(g->status, sizeof g->status, res, r, 3);
  copy_col(g->category, sizeof g->category, res, r, 4);
  copy_col(g->prompt_version, sizeof g->prompt_version, res, r, 5);
  copy_col(g->person_upload_id, sizeof g->person_upload_id, res, r, 6);
  copy_col(g->item_upload_id, sizeof g->item_upload_id, res, r, 7);
  copy_col(g->result_upload_id, sizeof g->result_upload_id, res, r, 8);
  g->result_has_thumb = strcmp(PQgetvalue(res, r, 9), "t") == 0;
  copy_col(g->aspect_ratio, sizeof g->aspect_ratio, res, r, 10);
  copy_col(g->output_format, sizeof g->output_format, res, r, 11);
  g->cost = tryon_db_get_i64(res, r, 12);
  g->watermarked = strcmp(PQgetvalue(res, r, 13), "t") == 0;
  copy_col(g->provider, sizeof g->provider, res, r, 14);
  copy_col(g->model, sizeof g->model, res, r, 15);
  copy_col(g->provider_task_id, sizeof g->provider_task_id, res, r, 16);
  copy_col(g->error_code, sizeof g->error_code, res, r, 17);
  copy_col(g->error_message, sizeof g->error_message, res, r, 18);
  copy_col(g->job_id, sizeof g->job_id, res, r, 19);
  g->created_us = tryon_db_get_i64(res, r, 20);
  g->started_ms = tryon_db_get_i64(res, r, 21);
  g->finished_ms = tryon_db_get_i64(res, r, 22);
  g->credits_expired = tryon_db_get_i64(res, r, 23);
}

/* ----------------------------------------------------------------------- creating */

static bool key_ok(const char *k) {
  size_t n = k ? strlen(k) : 0;
  if (n == 0 || n > 128)
    return false;
  for (size_t i = 0; i < n; i++) {
    if (k[i] < 0x21 || k[i] > 0x7e)
      return false;
  }
  return true;
}

typedef struct create_op {
  const tryon_generations_tryon_params *p;
  const char *ratio, *format;
  int64_t now_ms;
  tryon_generations_created *out;
  tryon_billing_refusal *refusal;
} create_op;

/* The answer to a repeated key: the first request's generation, if it asked the same. */
static tryon_status replay(tryon_db_conn *c, create_op *op, tryon_err *err) {
  tryon_generation g;
  tryon_balance b;
  const tryon_generations_tryon_params *p = op->p;
  const char *q[] = {op->out->job_id};
  PGresult *res = NULL;
  tryon_status st = tryon_db_exec(c, "SELECT " GEN_COLUMNS GEN_FROM " WHERE g.job_id = $1::uuid", 1,
                                  q, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_CONFLICT, "this Idempotency-Key was used for another request");
  if (st != TRYON_OK)
    goto out;
  row_to_gen(res, 0, &g);
  if (g.user_id != p->user_id || strcmp(g.kind, "tryon") != 0 ||
      strcmp(g.person_upload_id, p->person_upload_id) != 0 ||
      strcmp(g.item_upload_id, p->item_upload_id) != 0 || strcmp(g.category, p->category) != 0 ||
      strcmp(g.aspect_ratio, op->ratio) != 0 || strcmp(g.output_format, op->format) != 0) {
    st = tryon_err_set(err, TRYON_E_CONFLICT,
                       "this Idempotency-Key was used for a different try-on");
    goto out;
  }
  st = tryon_billing_balance(c, p->user_id, op->now_ms, &b, err);
  if (st != TRYON_OK)
    goto out;
  snprintf(op->out->generation_id, sizeof op->out->generation_id, "%s", g.id);
  op->out->cost = g.cost;
  op->out->balance = b.total;
  op->out->watermark = g.watermarked;
  op->out->created = false;
out:
  PQclear(res);
  return st;
}

static tryon_status create_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  create_op *op = ud;
  const tryon_generations_tryon_params *p = op->p;
  tryon_upload up;
  tryon_uuid gid;
  char key[160], charge[64], payload[96];
  bool created = false;
  tryon_status st = tryon_uploads_get(c, p->user_id, p->person_upload_id, &up, err);
  if (st == TRYON_OK)
    st = tryon_uploads_get(c, p->user_id, p->item_upload_id, &up, err);
  if (st == TRYON_E_NOT_FOUND)
    return tryon_err_set(err, TRYON_E_NOT_FOUND, "no such photo");
  if (st != TRYON_OK)
    return st;
  if (tryon_uuid_v4(&gid) != TRYON_OK)
    return tryon_err_set(err, TRYON_E_INTERNAL, "no randomness for an id");
  tryon_uuid_format(&gid, op->out->generation_id);
  snprintf(key, sizeof key, "tryon:%" PRId64 ":%s", p->user_id, p->idempotency_key);
  snprintf(payload, sizeof payload, "{\"generation_id\":\"%s\"}", op->out->generation_id);
  tryon_job_spec spec = {.kind = TRYON_GENERATIONS_JOB_KIND,
                         .payload_json = payload,
                         .user_id = p->user_id,
                         .idempotency_key = key};
  st = tryon_jobs_enqueue(c, &spec, op->now_ms, op->out->job_id, &created, err);
  if (st != TRYON_OK)
    return st;
  if (!created)
    return replay(c, op, err);

  tryon_billing_result paid;
  snprintf(charge, sizeof charge, "job:%s:charge", op->out->job_id);
  st = tryon_billing_spend(c, p->user_id, TRYON_GENERATIONS_TRYON_COST, charge, op->out->job_id,
                           op->now_ms, true, &paid, op->refusal, err);
  if (st != TRYON_OK)
    return st; /* the job goes with the rolled-back transaction */
  tryon_db_num uid = tryon_db_num_i64(p->user_id),
               cost = tryon_db_num_i64(TRYON_GENERATIONS_TRYON_COST);
  const char *q[] = {op->out->generation_id,
                     uid.s,
                     p->category,
                     tryon_generations_prompt(p->category),
                     TRYON_GENERATIONS_PROMPT_VERSION,
                     p->person_upload_id,
                     p->item_upload_id,
                     op->ratio,
                     op->format,
                     cost.s,
                     paid.from_free ? "true" : "false",
                     op->out->job_id};
  st = tryon_db_exec(c,
                     "INSERT INTO generations (id, user_id, kind, category, prompt, prompt_version,"
                     " person_upload_id, item_upload_id, aspect_ratio, output_format, cost,"
                     " watermarked, job_id) VALUES ($1::uuid, $2::bigint, 'tryon', $3, $4, $5,"
                     " $6::uuid, $7::uuid, $8, $9, $10::bigint, $11::boolean, $12::uuid)",
                     12, q, NULL, err);
  if (st != TRYON_OK)
    return st;
  op->out->cost = TRYON_GENERATIONS_TRYON_COST;
  op->out->balance = paid.period_after + paid.pack_after;
  op->out->watermark = paid.from_free;
  op->out->created = true;
  return TRYON_OK;
}

tryon_status tryon_generations_create_tryon(tryon_db_conn *c,
                                            const tryon_generations_tryon_params *p, int64_t now_ms,
                                            tryon_generations_created *out,
                                            tryon_billing_refusal *refusal, tryon_err *err) {
  if (c == NULL || p == NULL || out == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to create_tryon");
  memset(out, 0, sizeof *out);
  const char *ratio = p->aspect_ratio ? p->aspect_ratio : "auto";
  const char *format = p->output_format ? p->output_format : "png";
  if (!tryon_generations_category_ok(p->category))
    return tryon_err_set(err, TRYON_E_INVALID, "unknown category");
  if (!tryon_kie_aspect_ratio_ok(ratio))
    return tryon_err_set(err, TRYON_E_INVALID, "unsupported aspect ratio");
  if (strcmp(format, "png") != 0 && strcmp(format, "jpeg") != 0)
    return tryon_err_set(err, TRYON_E_INVALID, "output format must be png or jpeg");
  if (!key_ok(p->idempotency_key))
    return tryon_err_set(err, TRYON_E_INVALID,
                         "Idempotency-Key must be 1 to 128 printable ASCII characters");
  if (!tryon_uuid_valid(p->person_upload_id) || !tryon_uuid_valid(p->item_upload_id))
    return tryon_err_set(err, TRYON_E_NOT_FOUND, "no such photo");
  /* One spelling of the ids (the canonical one), so a client resending them in upper
   * case replays. Both parsed above (tryon_uuid_valid). */
  char person[TRYON_UUID_STR_LEN], item[TRYON_UUID_STR_LEN];
  tryon_uuid u;
  tryon_uuid_parse(p->person_upload_id, &u);
  tryon_uuid_format(&u, person);
  tryon_uuid_parse(p->item_upload_id, &u);
  tryon_uuid_format(&u, item);
  if (strcmp(person, item) == 0)
    return tryon_err_set(err, TRYON_E_INVALID, "the person and the item must be two photos");
  tryon_generations_tryon_params norm = *p;
  norm.person_upload_id = person;
  norm.item_upload_id = item;
  create_op op = {.p = &norm,
                  .ratio = ratio,
                  .format = format,
                  .now_ms = now_ms,
                  .out = out,
                  .refusal = refusal};
  tryon_status st = tryon_db_tx(c, create_tx, &op, err);
  if (st != TRYON_OK)
    memset(out, 0, sizeof *out);
  return st;
}

/* ------------------------------------------------------------------------ reading */

tryon_status tryon_generations_get(tryon_db_conn *c, int64_t user_id, const char *id,
                                   tryon_generation *out, tryon_err *err) {
  PGresult *res = NULL;
  if (!tryon_uuid_valid(id))
    return tryon_err_set(err, TRYON_E_NOT_FOUND, "no such generation");
  tryon_db_num uid = tryon_db_num_i64(user_id);
  const char *p[] = {id, uid.s};
  tryon_status st = tryon_db_exec(c,
                                  "SELECT " GEN_COLUMNS GEN_FROM " WHERE g.id = $1::uuid"
                                  " AND ($2::bigint = 0 OR g.user_id = $2::bigint)",
                                  2, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_NOT_FOUND, "no such generation");
  else if (st == TRYON_OK)
    row_to_gen(res, 0, out);
  PQclear(res);
  return st;
}

tryon_status tryon_generations_list(tryon_db_conn *c, int64_t user_id, int limit,
                                    const char *cursor, tryon_generation *out, size_t *n,
                                    char *next, tryon_err *err) {
  PGresult *res = NULL;
  char cur_ts[24] = "", cur_id[TRYON_UUID_STR_LEN] = "";
  *n = 0;
  if (limit < 1 || limit > 100)
    return tryon_err_set(err, TRYON_E_INVALID, "limit must be 1 to 100");
  /* The cursor is "<created microseconds>.<id>" of the last item shown (as uploads'). */
  if (cursor != NULL && cursor[0] != '\0') {
    const char *sep = strchr(cursor, '.');
    size_t tl = sep ? (size_t)(sep - cursor) : 0;
    if (sep == NULL || tl == 0 || tl > 16 || strspn(cursor, "0123456789") != tl ||
        !tryon_uuid_valid(sep + 1))
      return tryon_err_set(err, TRYON_E_INVALID, "malformed cursor");
    memcpy(cur_ts, cursor, tl);
    snprintf(cur_id, sizeof cur_id, "%s", sep + 1);
  }
  next[0] = '\0'; /* only now: `next` may be the buffer `cursor` points into */
  tryon_db_num uid = tryon_db_num_i64(user_id), lim = tryon_db_num_i64(limit + 1);
  const char *p[] = {uid.s, cur_ts[0] ? cur_ts : NULL, cur_ts[0] ? cur_id : NULL, lim.s};
  tryon_status st = tryon_db_exec(
      c,
      "SELECT " GEN_COLUMNS GEN_FROM " WHERE g.user_id = $1::bigint AND ($2::bigint IS NULL OR"
      " (g.created_at, g.id) < (timestamptz 'epoch' + $2::bigint * interval '1 microsecond',"
      " $3::uuid))"
      " ORDER BY g.created_at DESC, g.id DESC LIMIT $4::int",
      4, p, &res, err);
  for (int r = 0; st == TRYON_OK && r < PQntuples(res) && r < limit; r++)
    row_to_gen(res, r, &out[(*n)++]);
  if (st == TRYON_OK && PQntuples(res) > limit && *n > 0)
    snprintf(next, TRYON_GENERATIONS_CURSOR_MAX, "%" PRId64 ".%s", out[*n - 1].created_us,
             out[*n - 1].id);
  PQclear(res);
  return st;
}

typedef struct delete_op {
  int64_t user_id;
  const char *id;
  char *result_id;
} delete_op;

static tryon_status delete_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  delete_op *op = ud;
  tryon_generation g;
  tryon_status st = tryon_generations_get(c, op->user_id, op->id, &g, err);
  if (st != TRYON_OK)
    return st;
  if (strcmp(g.status, "queued") == 0 || strcmp(g.status, "running") == 0)
    return tryon_err_set(err, TRYON_E_CONFLICT, "the try-on is still in progress");
  tryon_db_num uid = tryon_db_num_i64(op->user_id);
  const char *p[] = {op->id, uid.s};
  st = tryon_db_exec(c,
                     "DELETE FROM generations WHERE id = $1::uuid AND user_id = $2::bigint"
                     " AND status IN ('succeeded', 'failed', 'cancelled')",
                     2, p, NULL, err);
  if (st != TRYON_OK || g.result_upload_id[0] == '\0')
    return st;
  /* The result image goes as a user's upload would (its row, or only marked deleted
   * while an edit still uses it); already gone is fine. */
  st = tryon_uploads_delete(c, op->user_id, g.result_upload_id, err);
  if (st == TRYON_E_NOT_FOUND)
    st = TRYON_OK;
  if (st == TRYON_OK)
    snprintf(op->result_id, TRYON_UUID_STR_LEN, "%s", g.result_upload_id);
  return st;
}

tryon_status tryon_generations_delete(tryon_db_conn *c, int64_t user_id, const char *id,
                                      char *result_upload_id, tryon_err *err) {
  result_upload_id[0] = '\0';
  delete_op op = {.user_id = user_id, .id = id, .result_id = result_upload_id};
  tryon_status st = tryon_db_tx(c, delete_tx, &op, err);
  if (st != TRYON_OK)
    result_upload_id[0] = '\0';
  return st;
}

/* ------------------------------------------------------------------- the worker */

tryon_status tryon_generations_start(tryon_db_conn *c, const char *id, const char *provider,
                                     const char *model, int64_t now_ms, tryon_err *err) {
  PGresult *res = NULL;
  if (!tryon_uuid_valid(id) || provider == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to generations_start");
  tryon_db_num now = tryon_db_num_i64(now_ms);
  const char *p[] = {id, provider, model, now.s};
  tryon_status st = tryon_db_exec(c,
                                  "UPDATE generations SET status = 'running', provider = $2,"
                                  " model = $3, started_at = coalesce(started_at, " TS(
                                      4) "), updated_at = now() WHERE id = $1::uuid"
                                         " AND status IN ('queued', 'running') RETURNING id",
                                  4, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_CONFLICT, "the generation is not waiting to run");
  PQclear(res);
  return st;
}

tryon_status tryon_generations_set_task(tryon_db_conn *c, const char *id, const char *task_id,
                                        tryon_err *err) {
  PGresult *res = NULL;
  if (!tryon_uuid_valid(id) || task_id == NULL || task_id[0] == '\0' || strlen(task_id) > 200)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to generations_set_task");
  const char *p[] = {id, task_id};
  tryon_status st = tryon_db_exec(c,
                                  "UPDATE generations SET provider_task_id = $2, updated_at ="
                                  " now() WHERE id = $1::uuid AND (provider_task_id IS NULL OR"
                                  " provider_task_id = $2) RETURNING id",
                                  2, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_CONFLICT, "the generation has another provider task");
  PQclear(res);
  return st;
}

tryon_status tryon_generations_wake_task(tryon_db_conn *c, const char *provider,
                                         const char *task_id, bool *found, tryon_err *err) {
  PGresult *res = NULL;
  *found = false;
  if (provider == NULL || task_id == NULL || task_id[0] == '\0' || strlen(task_id) > 200)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to generations_wake_task");
  const char *p[] = {provider, task_id};
  tryon_status st = tryon_db_exec(c,
                                  "SELECT pg_notify('tryon_wake', job_id::text) FROM generations"
                                  " WHERE provider = $1 AND provider_task_id = $2"
                                  " AND status IN ('queued', 'running') AND job_id IS NOT NULL",
                                  2, p, &res, err);
  if (st == TRYON_OK)
    *found = PQntuples(res) > 0;
  PQclear(res);
  return st;
}

tryon_status tryon_generations_succeed(tryon_db_conn *c, const char *id, const char *result_id,
                                       const tryon_image *img, bool watermarked, int64_t now_ms,
                                       tryon_err *err) {
  PGresult *res = NULL;
  char sha[65], w[16], h[16], bytes[24];
  if (!tryon_uuid_valid(id) || !tryon_uuid_valid(result_id) || img == NULL || img->mime == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to generations_succeed");
  snprintf(w, sizeof w, "%d", img->width);
  snprintf(h, sizeof h, "%d", img->height);
  snprintf(bytes, sizeof bytes, "%zu", img->len);
  tryon_hex_encode(img->sha256, sizeof img->sha256, sha);
  tryon_db_num now = tryon_db_num_i64(now_ms);
  const char *p[] = {id,        result_id,
                     img->mime, w,
                     h,         bytes,
                     sha,       img->thumb ? "true" : "false",
                     now.s,     watermarked ? "true" : "false"};
  tryon_status st = tryon_db_exec(
      c,
      "WITH g AS (SELECT user_id FROM generations WHERE id = $1::uuid AND status IN ('queued',"
      "   'running') FOR UPDATE),"
      " up AS (INSERT INTO uploads (id, user_id, origin, mime, width, height, bytes, sha256,"
      "   has_thumb) SELECT $2::uuid, g.user_id, 'result', $3, $4::int, $5::int, $6::bigint,"
      "   decode($7, 'hex'), $8::boolean FROM g RETURNING id)"
      " UPDATE generations SET status = 'succeeded', result_upload_id = (SELECT id FROM up),"
      " watermarked = $10::boolean, started_at = coalesce(started_at, " TS(
          9) "), finished_at = " TS(9) ", updated_at = now() WHERE id = $1::uuid"
                                       " AND EXISTS (SELECT 1 FROM up) RETURNING id",
      10, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_CONFLICT, "the generation is not running");
  PQclear(res);
  return st;
}

/* ---------------------------------------------------------------------- failure */

/* "2 кредита", "5 кредитов", "1 кредит". */
static const char *ru_credits(int64_t n) {
  int64_t m100 = n % 100, m10 = n % 10;
  if (m100 >= 11 && m100 <= 14)
    return "кредитов";
  if (m10 == 1)
    return "кредит";
  if (m10 >= 2 && m10 <= 4)
    return "кредита";
  return "кредитов";
}

/* A message is head + "2 credits are back" / "2 кредита вернулись" + tail. */
typedef struct user_message {
  const char *codes; /* " code code ": error codes between spaces; "" for the fallback */
  const char *en_head, *en_tail;
  const char *ru_head, *ru_tail;
} user_message;

static const user_message messages[] = {
    {" content_refused ", "The image service refused these photos under its content rules. Your ",
     ". Try other photos.", "Сервис генерации отклонил эти фото по своим правилам. ",
     " на ваш счёт. Попробуйте другие фото."},
    {" generation_failed bad_result bad_request validation ",
     "The image service could not make this picture. Your ", ". Try again or use other photos.",
     "Сервису не удалось создать изображение. ",
     " на ваш счёт. Попробуйте ещё раз или возьмите другие фото."},
    {" photo_too_large ",
     "One of the photos is too large for the image service (over 10 MB). Your ",
     ". Use a smaller photo.",
     "Одно из фото слишком большое для сервиса генерации (больше 10 МБ). ",
     " на ваш счёт. Возьмите фото поменьше."},
    {" cancelled ", "The try-on was cancelled. Your ", ".", "Примерка отменена. ", " на ваш счёт."},
    {" photo_missing ", "One of the photos is no longer available. Your ",
     ". Upload it again to retry.", "Одно из фото больше недоступно. ",
     " на ваш счёт. Загрузите его снова."},
    {"", "The image service is not answering right now. Your ",
     ". Please try again in a few minutes.", "Сервис генерации сейчас не отвечает. ",
     " на ваш счёт. Попробуйте через несколько минут."},
};

void tryon_generations_user_message(const char *code, const char *lang, int64_t cost,
                                    int64_t expired, char *out, size_t cap) {
  const user_message *m = &messages[sizeof messages / sizeof messages[0] - 1];
  char word[72];
  snprintf(word, sizeof word, " %s ", code ? code : "");
  for (size_t i = 0; code != NULL && code[0] && i + 1 < sizeof messages / sizeof messages[0]; i++) {
    if (strstr(messages[i].codes, word) != NULL) {
      m = &messages[i];
      break;
    }
  }
  bool ru = lang != NULL && strncmp(lang, "ru", 2) == 0;
  int64_t gone = expired <= 0 ? 0 : expired < cost ? expired : cost;
  int64_t back = cost - gone;
  char note[200] = "";
  /* Credits from a period that has ended expired with it instead of coming back: say so,
   * never promise what is not on the balance. */
  const char *burnt = gone % 10 == 1 && gone % 100 != 11 ? "сгорел" : "сгорели";
  if (gone > 0 && ru)
    snprintf(note, sizeof note, " %lld %s из закончившегося периода %s вместе с ним.",
             (long long)gone, ru_credits(gone), burnt);
  else if (gone > 0)
    snprintf(note, sizeof note, " %lld of them came from a period that has ended and expired.",
             (long long)gone);
  if (gone > 0 && back == 0) {
    /* head + the expiry sentence + the tail's advice (without "back on your account"). */
    const char *tail = ru ? m->ru_tail : m->en_tail;
    const char *on_account = " на ваш счёт";
    if (ru && strncmp(tail, on_account, strlen(on_account)) == 0)
      tail += strlen(on_account);
    size_t head_len = strlen(ru ? m->ru_head : m->en_head);
    if (!ru && head_len >= 5 && strcmp(m->en_head + head_len - 5, "Your ") == 0)
      head_len -= 5;
    if (ru)
      snprintf(out, cap, "%.*s%lld %s из закончившегося периода %s вместе с ним%s", (int)head_len,
               m->ru_head, (long long)gone, ru_credits(gone), burnt, tail);
    else
      snprintf(out, cap, "%.*sThe %lld %s it cost came from a period that has ended and expired%s",
               (int)head_len, m->en_head, (long long)gone, gone == 1 ? "credit" : "credits", tail);
    return;
  }
  if (ru)
    snprintf(out, cap, "%s%lld %s %s%s%s", m->ru_head, (long long)back, ru_credits(back),
             back % 10 == 1 && back % 100 != 11 ? "вернулся" : "вернулись", m->ru_tail, note);
  else
    snprintf(out, cap, "%s%lld %s back%s%s", m->en_head, (long long)back,
             back == 1 ? "credit is" : "credits are", m->en_tail, note);
}

void tryon_generations_result_id(const char *id, char out[TRYON_UUID_STR_LEN]) {
  unsigned char h[SHA256_DIGEST_LENGTH];
  char in[64], canon[TRYON_UUID_STR_LEN] = "";
  tryon_uuid g;
  /* The canonical spelling, so any case of the same id names the same file. */
  if (id != NULL && tryon_uuid_parse(id, &g) == TRYON_OK)
    tryon_uuid_format(&g, canon);
  int n = snprintf(in, sizeof in, "tryon-result:%s", canon);
  SHA256((const unsigned char *)in, n > 0 && (size_t)n < sizeof in ? (size_t)n : 0, h);
  h[6] = (unsigned char)((h[6] & 0x0f) | 0x40); /* shaped as a version-4 UUID */
  h[8] = (unsigned char)((h[8] & 0x3f) | 0x80);
  tryon_uuid u;
  memcpy(u.b, h, sizeof u.b);
  tryon_uuid_format(&u, out);
}

/* Undoes a try-on that will not finish: the refund (once; one already made is fine),
 * the result files a run may have stored, and the generation's final state. */
static tryon_status settle(tryon_db_conn *c, const tryon_job *job,
                           const tryon_generations_kind_config *cfg, const char *status,
                           const char *code, const char *detail, int64_t now, tryon_err *err) {
  cJSON *payload = cJSON_Parse(job->payload ? job->payload : "{}");
  const char *gid =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(payload, "generation_id"));
  char charge[64], refund[64];
  tryon_status st = TRYON_OK;
  if (gid == NULL || !tryon_uuid_valid(gid)) { /* not a try-on job: nothing to undo */
    TRYON_LOG_WARN("try-on failure hook without a generation", TRYON_LF_STR("job", job->id));
    goto out;
  }
  /* The money first: the refund is what must never be missed. */
  tryon_billing_result r;
  memset(&r, 0, sizeof r);
  snprintf(charge, sizeof charge, "job:%s:charge", job->id);
  snprintf(refund, sizeof refund, "job:%s:refund", job->id);
  st = tryon_billing_refund(c, charge, refund, now, true, &r, err);
  if (st == TRYON_E_DUPLICATE || st == TRYON_E_NOT_FOUND) {
    if (st == TRYON_E_NOT_FOUND)
      TRYON_LOG_WARN("try-on ended without a charge to refund", TRYON_LF_STR("job", job->id));
    st = TRYON_OK;
  }
  if (st != TRYON_OK)
    goto out;
  if (cfg != NULL && cfg->storage != NULL) {
    char rid[TRYON_UUID_STR_LEN], thumb[48];
    tryon_generations_result_id(gid, rid);
    snprintf(thumb, sizeof thumb, "%s.thumb", rid);
    tryon_storage_remove(cfg->storage, rid, NULL);
    tryon_storage_remove(cfg->storage, thumb, NULL);
  }
  /* The code picks the user's words when the generation is shown (in their language);
   * the provider's own words stay here and in the job for operators. */
  char code_col[65], detail_col[512];
  tryon_utf8_copy(code_col, sizeof code_col, code && code[0] ? code : "failed");
  tryon_utf8_copy(detail_col, sizeof detail_col, detail ? detail : "");
  tryon_db_num nw = tryon_db_num_i64(now), gone = tryon_db_num_i64(r.expired);
  const char *q[] = {gid, status, code_col, detail_col[0] ? detail_col : NULL, nw.s, gone.s};
  st = tryon_db_exec(c,
                     "UPDATE generations SET status = $2, error_code = $3, error_message = $4,"
                     " finished_at = " TS(5) ", credits_expired = least($6::int, cost),"
                                             " updated_at = now() WHERE id = $1::uuid"
                                             " AND status IN ('queued', 'running')",
                     6, q, NULL, err);
out:
  cJSON_Delete(payload);
  return st;
}

tryon_status tryon_generations_fail_hook(tryon_db_conn *c, const tryon_job *job, void *ud,
                                         tryon_err *err) {
  const tryon_generations_kind_config *cfg = ud;
  cJSON *error = cJSON_Parse(job->error ? job->error : "{}");
  tryon_status st = settle(c, job, cfg, "failed",
                           cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(error, "code")),
                           cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(error, "message")),
                           tryon_clock_now_ms(cfg ? cfg->clock : NULL), err);
  cJSON_Delete(error);
  return st;
}

typedef struct cancel_op {
  const tryon_generations_kind_config *cfg;
  const char *job_id;
  int64_t user_id, now_ms;
} cancel_op;

static tryon_status cancel_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  cancel_op *op = ud;
  tryon_job job;
  memset(&job, 0, sizeof job);
  PGresult *res = NULL;
  tryon_status st = tryon_jobs_cancel(c, op->job_id, op->user_id, op->now_ms, err);
  if (st == TRYON_OK)
    st = tryon_jobs_get(c, op->job_id, 0, &job, err);
  /* A job queued again after its provider task was created (a retry) is being paid for
   * at the provider already: its owner cannot take the credits back now; the job goes on
   * and follows that task to its end. The task id's first durable record is the job's
   * checkpoint (the generation gets it in a later step that may not have happened), so
   * both are asked — and a createTask that left without its answer counts too. (The job row is
   * locked by the cancel above, so no worker records a task meanwhile; refusing rolls the cancel
   * back.) Operators may. */
  if (st == TRYON_OK && op->user_id > 0 && strcmp(job.kind, TRYON_GENERATIONS_JOB_KIND) == 0) {
    const char *p[] = {op->job_id};
    st = tryon_db_exec(c,
                       "SELECT 1 FROM generations g, jobs j WHERE g.job_id = $1::uuid"
                       " AND j.id = g.job_id AND (g.provider_task_id IS NOT NULL"
                       " OR j.payload ? 'task_id' OR j.payload @> '{\"create_sent\":true}')",
                       1, p, &res, err);
    if (st == TRYON_OK && PQntuples(res) > 0)
      st = tryon_err_set(err, TRYON_E_FORBIDDEN,
                         "the image service is already working on this try-on");
  }
  if (st == TRYON_OK && strcmp(job.kind, TRYON_GENERATIONS_JOB_KIND) == 0)
    st = settle(c, &job, op->cfg, "cancelled", "cancelled",
                job.attempts > 0 ? "cancelled by an operator after an earlier attempt"
                                 : "cancelled by an operator before it ran",
                op->now_ms, err);
  PQclear(res);
  tryon_job_release(&job);
  return st;
}

tryon_status tryon_generations_cancel_job(tryon_db_conn *c, tryon_storage *storage,
                                          const char *job_id, int64_t user_id, int64_t now_ms,
                                          tryon_err *err) {
  tryon_generations_kind_config cfg = {.storage = storage};
  cancel_op op = {.cfg = &cfg, .job_id = job_id, .user_id = user_id, .now_ms = now_ms};
  return tryon_db_tx(c, cancel_tx, &op, err);
}
