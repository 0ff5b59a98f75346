/*
 * The users table: sign-in upsert, lookup, operators' ensure and block.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/users.h>

/* The columns every query returns, in the order row_to_user reads them. */
#define USER_COLUMNS                                                              \
  "id, telegram_id, first_name, coalesce(last_name, ''), coalesce(username, '')," \
  " coalesce(language_code, ''), coalesce(photo_url, ''), is_premium, blocked,"   \
  " (extract(epoch FROM created_at) * 1000)::bigint,"                             \
  " coalesce((extract(epoch FROM last_login_at) * 1000)::bigint, 0),"             \
  " coalesce((extract(epoch FROM blocked_at) * 1000)::bigint, 0),"                \
  " coalesce(blocked_reason, '')"

/* RETURNING column of the upserts after USER_COLUMNS: whether the row is new. */
#define USER_CREATED_COLUMN 13

/* The schema allows more bytes than the struct holds (256 characters of up to 4 bytes):
 * cut at a character boundary, never inside one. */
static void copy_field(char *dst, size_t cap, const char *src) {
  tryon_utf8_copy(dst, cap, src);
}

static void row_to_user(PGresult *res, int row, tryon_user *u) {
  memset(u, 0, sizeof *u);
  u->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
  u->telegram_id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
  copy_field(u->first_name, sizeof u->first_name, PQgetvalue(res, row, 2));
  copy_field(u->last_name, sizeof u->last_name, PQgetvalue(res, row, 3));
  copy_field(u->username, sizeof u->username, PQgetvalue(res, row, 4));
  copy_field(u->language_code, sizeof u->language_code, PQgetvalue(res, row, 5));
  copy_field(u->photo_url, sizeof u->photo_url, PQgetvalue(res, row, 6));
  u->is_premium = PQgetvalue(res, row, 7)[0] == 't';
  u->blocked = PQgetvalue(res, row, 8)[0] == 't';
  u->created_at_ms = strtoll(PQgetvalue(res, row, 9), NULL, 10);
  u->last_login_at_ms = strtoll(PQgetvalue(res, row, 10), NULL, 10);
  u->blocked_at_ms = strtoll(PQgetvalue(res, row, 11), NULL, 10);
  copy_field(u->blocked_reason, sizeof u->blocked_reason, PQgetvalue(res, row, 12));
}

tryon_status tryon_users_upsert_telegram(tryon_db_conn *c, const tryon_tg_user *tg, tryon_user *out,
                                         bool *created, tryon_err *err) {
  char tgid[24];
  PGresult *res = NULL;
  tryon_status st;

  if (c == NULL || tg == NULL || out == NULL || tg->id <= 0)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_users_upsert_telegram");
  snprintf(tgid, sizeof tgid, "%" PRId64, tg->id);
  const char *params[] = {tgid,
                          tg->first_name,
                          tg->last_name,
                          tg->username,
                          tg->language_code,
                          tg->is_premium ? "true" : "false",
                          tg->allows_write_to_pm ? "true" : "false",
                          tg->photo_url};
  /* One statement, so two sign-ins of the same person at once cannot both insert.
   * left() cuts at characters to the schema's limits; '' becomes NULL for the optional
   * fields. xmax = 0 is true only for the row version this statement inserted. */
  st = tryon_db_exec(c,
                     "INSERT INTO users AS u (telegram_id, first_name, last_name, username,"
                     " language_code, is_premium, allows_write_to_pm, photo_url, last_login_at)"
                     " VALUES ($1::bigint, left($2, 256), NULLIF(left($3, 256), ''),"
                     " NULLIF(left($4, 64), ''), NULLIF(left($5, 35), ''), $6::boolean,"
                     " $7::boolean, NULLIF(left($8, 2048), ''), now())"
                     " ON CONFLICT (telegram_id) DO UPDATE SET"
                     " first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,"
                     " username = EXCLUDED.username, language_code = EXCLUDED.language_code,"
                     " is_premium = EXCLUDED.is_premium,"
                     " allows_write_to_pm = EXCLUDED.allows_write_to_pm,"
                     " photo_url = EXCLUDED.photo_url, last_login_at = now()"
                     " RETURNING " USER_COLUMNS ", (xmax = 0)",
                     8, params, &res, err);
  if (st != TRYON_OK)
    goto out;
  row_to_user(res, 0, out);
  if (created != NULL)
    *created = PQgetvalue(res, 0, USER_CREATED_COLUMN)[0] == 't';
out:
  PQclear(res);
  return st;
}

/* The user whose `sql` ("... WHERE <column> = $1::bigint") matches `key`; `what` names
 * the key in the not-found message ("user 5", "user with telegram id 7"). */
static tryon_status fetch_user(tryon_db_conn *c, const char *sql, int64_t key, const char *what,
                               tryon_user *out, tryon_err *err) {
  char keystr[24];
  PGresult *res = NULL;
  snprintf(keystr, sizeof keystr, "%" PRId64, key);
  const char *params[] = {keystr};
  tryon_status st = tryon_db_exec(c, sql, 1, params, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_NOT_FOUND, "no %s %" PRId64, what, key);
  else if (st == TRYON_OK)
    row_to_user(res, 0, out);
  PQclear(res);
  return st;
}

tryon_status tryon_users_get(tryon_db_conn *c, int64_t id, tryon_user *out, tryon_err *err) {
  if (c == NULL || out == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_users_get");
  return fetch_user(c, "SELECT " USER_COLUMNS " FROM users WHERE id = $1::bigint", id, "user", out,
                    err);
}

tryon_status tryon_users_get_by_telegram(tryon_db_conn *c, int64_t telegram_id, tryon_user *out,
                                         tryon_err *err) {
  if (c == NULL || out == NULL || telegram_id <= 0)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_users_get_by_telegram");
  return fetch_user(c, "SELECT " USER_COLUMNS " FROM users WHERE telegram_id = $1::bigint",
                    telegram_id, "user with telegram id", out, err);
}

tryon_status tryon_users_ensure_telegram(tryon_db_conn *c, int64_t telegram_id, tryon_user *out,
                                         bool *created, tryon_err *err) {
  char tgid[24];
  PGresult *res = NULL;
  tryon_status st;

  if (c == NULL || out == NULL || telegram_id <= 0)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_users_ensure_telegram");
  snprintf(tgid, sizeof tgid, "%" PRId64, telegram_id);
  const char *params[] = {tgid};
  /* DO UPDATE rather than DO NOTHING plus a SELECT: DO NOTHING returns no row for a
   * person inserted meanwhile by a concurrent sign-in, and a SELECT in the same
   * statement cannot see that row. The no-op update locks and returns it; the profile
   * fields stay as they are. */
  st = tryon_db_exec(c,
                     "INSERT INTO users AS u (telegram_id) VALUES ($1::bigint)"
                     " ON CONFLICT (telegram_id) DO UPDATE SET telegram_id = EXCLUDED.telegram_id"
                     " RETURNING " USER_COLUMNS ", (xmax = 0)",
                     1, params, &res, err);
  if (st != TRYON_OK)
    goto out;
  row_to_user(res, 0, out);
  if (created != NULL)
    *created = PQgetvalue(res, 0, USER_CREATED_COLUMN)[0] == 't';
out:
  PQclear(res);
  return st;
}

tryon_status tryon_users_set_blocked(tryon_db_conn *c, int64_t id, bool blocked, const char *reason,
                                     tryon_err *err) {
  char idstr[24];
  PGresult *res = NULL;
  tryon_status st;

  if (c == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_users_set_blocked");
  /* The schema would refuse it too, but as a bare constraint violation. */
  if (blocked && reason != NULL && tryon_utf8_chars(reason) > TRYON_USER_BLOCKED_REASON_CHARS)
    return tryon_err_set(err, TRYON_E_INVALID, "block reason longer than %d characters",
                         TRYON_USER_BLOCKED_REASON_CHARS);
  snprintf(idstr, sizeof idstr, "%" PRId64, id);
  const char *params[] = {idstr, blocked ? "true" : "false",
                          blocked && reason != NULL ? reason : NULL};
  /* The CHECKs want blocked_at exactly when blocked and a reason only when blocked: one
   * UPDATE sets all three together. A repeated block keeps the first blocked_at, so the
   * record says since when the user has been blocked, and (reason NULL) its reason, so
   * repeating a block without one loses nothing. */
  st = tryon_db_exec(c,
                     "UPDATE users SET blocked = $2::boolean,"
                     " blocked_at = CASE WHEN $2::boolean THEN coalesce(blocked_at, now()) END,"
                     " blocked_reason = CASE WHEN $2::boolean THEN"
                     " CASE WHEN $3::text IS NULL THEN blocked_reason ELSE NULLIF($3, '') END END"
                     " WHERE id = $1::bigint RETURNING id",
                     3, params, &res, err);
  if (st != TRYON_OK)
    goto out;
  if (PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_NOT_FOUND, "no user %" PRId64, id);
out:
  PQclear(res);
  return st;
}

cJSON *tryon_user_to_json(const tryon_user *u, unsigned flags) {
  tryon_tg_user tg;
  cJSON *o = NULL;

  if (u == NULL)
    goto out;
  /* The profile fields are the Telegram user's, in auth's shape; then our id in front
   * of the Telegram one: {"id","telegram_id","first_name",...}. */
  memset(&tg, 0, sizeof tg);
  tg.id = u->telegram_id;
  tg.is_premium = u->is_premium;
  tryon_utf8_copy(tg.first_name, sizeof tg.first_name, u->first_name);
  tryon_utf8_copy(tg.last_name, sizeof tg.last_name, u->last_name);
  tryon_utf8_copy(tg.username, sizeof tg.username, u->username);
  tryon_utf8_copy(tg.language_code, sizeof tg.language_code, u->language_code);
  tryon_utf8_copy(tg.photo_url, sizeof tg.photo_url, u->photo_url);
  o = tryon_tg_user_to_json(&tg);
  cJSON *tgid = cJSON_DetachItemFromObjectCaseSensitive(o, "id");
  cJSON *id = cJSON_CreateNumber((double)u->id);
  if (o == NULL || tgid == NULL || id == NULL) {
    cJSON_Delete(tgid);
    cJSON_Delete(id);
    cJSON_Delete(o);
    o = NULL;
    goto out;
  }
  /* Added, detached and inserted at the front: cJSON has no "add first", and the
   * detached items keep their names. */
  cJSON_AddItemToObject(o, "telegram_id", tgid);
  cJSON_DetachItemViaPointer(o, tgid);
  cJSON_InsertItemInArray(o, 0, tgid);
  cJSON_AddItemToObject(o, "id", id);
  cJSON_DetachItemViaPointer(o, id);
  cJSON_InsertItemInArray(o, 0, id);
  tryon_json_add_time(o, "created_at", u->created_at_ms);
  if ((flags & TRYON_USER_JSON_OPERATOR) == 0)
    goto out;
  cJSON_AddBoolToObject(o, "blocked", u->blocked);
  if (u->blocked && u->blocked_reason[0] != '\0')
    cJSON_AddStringToObject(o, "blocked_reason", u->blocked_reason);
  else
    cJSON_AddNullToObject(o, "blocked_reason");
  tryon_json_add_time(o, "blocked_at", u->blocked_at_ms);
  tryon_json_add_time(o, "last_login_at", u->last_login_at_ms);
out:
  return o;
}
