/*
 * tryon/users.h - the people who use tryon: rows of the `users` table.
 *
 * A user is created on first sign-in from the initData `user` object and refreshed on
 * every later one (names, username, language, premium, photo). Operators block and
 * unblock users; a blocked user is refused everywhere (403).
 *
 * Functions take a leased connection, so a caller can make them part of its own
 * transaction. Thread-safety: as the connection's.
 */
#ifndef TRYON_USERS_H
#define TRYON_USERS_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <tryon/auth.h>
#include <tryon/core.h>
#include <tryon/db.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An operator's reason for a block: at most 1000 characters of up to 4 bytes, and a NUL. */
#define TRYON_USER_BLOCKED_REASON_CHARS 1000
#define TRYON_USER_BLOCKED_REASON_MAX (4 * TRYON_USER_BLOCKED_REASON_CHARS + 1)

typedef struct tryon_user {
  int64_t id;          /* users.id: what session tokens carry as `sub` */
  int64_t telegram_id; /* Telegram's user id */
  char first_name[TRYON_TG_NAME_MAX];
  char last_name[TRYON_TG_NAME_MAX];
  char username[TRYON_TG_USERNAME_MAX];
  char language_code[TRYON_TG_LANG_MAX];
  char photo_url[TRYON_TG_URL_MAX];
  bool is_premium;
  bool blocked;
  int64_t created_at_ms;
  int64_t last_login_at_ms; /* 0: never signed in (created by an operator) */
  int64_t blocked_at_ms;    /* 0 unless blocked */
  char blocked_reason[TRYON_USER_BLOCKED_REASON_MAX]; /* "" unless blocked with a reason */
} tryon_user;

/*
 * Creates the user of `tg` or refreshes its profile fields, and records the sign-in
 * time, in one statement (safe under concurrent sign-ins of the same person). `out`
 * receives the row as stored; `created` (optional) whether it was new. Fields longer
 * than the schema allows are cut at a character boundary rather than refused: a long
 * Telegram name must not lock its owner out.
 * Returns TRYON_OK or a db status (E_DB_UNAVAILABLE, E_DB ...). A blocked user is
 * still returned (with `blocked` set): refusing is the caller's decision.
 */
TRYON_API tryon_status tryon_users_upsert_telegram(tryon_db_conn *c, const tryon_tg_user *tg,
                                                   tryon_user *out, bool *created, tryon_err *err);

/* Loads user `id` into `out`. TRYON_E_NOT_FOUND when there is none. */
TRYON_API tryon_status tryon_users_get(tryon_db_conn *c, int64_t id, tryon_user *out,
                                       tryon_err *err);

/* Loads the user with Telegram id `telegram_id`. TRYON_E_NOT_FOUND when there is none;
 * TRYON_E_INVALID for an id <= 0. */
TRYON_API tryon_status tryon_users_get_by_telegram(tryon_db_conn *c, int64_t telegram_id,
                                                   tryon_user *out, tryon_err *err);

/* The user with Telegram id `telegram_id`, created (no names yet, never signed in) when
 * absent — for operators granting credits before a first sign-in. `created` optional.
 * One statement: safe against a concurrent sign-in of the same person. An existing row
 * is returned unchanged (only its updated_at moves). TRYON_E_INVALID for an id <= 0. */
TRYON_API tryon_status tryon_users_ensure_telegram(tryon_db_conn *c, int64_t telegram_id,
                                                   tryon_user *out, bool *created, tryon_err *err);

/* Blocks (with `reason`, optional, at most 1000 characters) or unblocks user `id`.
 * TRYON_E_NOT_FOUND when there is none. Idempotent. Blocking a blocked user keeps its
 * blocked_at; a `reason` replaces the stored one ("" clears it), NULL keeps it.
 * Unblocking clears both (`reason` is ignored). `reason` is borrowed for the call.
 * TRYON_E_INVALID for a reason over 1000 characters. */
TRYON_API tryon_status tryon_users_set_blocked(tryon_db_conn *c, int64_t id, bool blocked,
                                               const char *reason, tryon_err *err);

/* What tryon_user_to_json shows beyond the profile. */
#define TRYON_USER_JSON_OPERATOR 1u /* block state and reason, last sign-in */

/*
 * The user `u` (borrowed for the call) as JSON, the one shape the API and tryonctl
 * print: a new object {"id","telegram_id","first_name","last_name","username",
 * "language_code","is_premium","photo_url","created_at"}; with TRYON_USER_JSON_OPERATOR
 * in `flags` also "blocked","blocked_reason" (null unless blocked with one),
 * "blocked_at","last_login_at" (null: never signed in), for operators only. Times as
 * tryon_json_add_time. The caller owns the object (cJSON_Delete, or add it to a
 * parent). NULL when out of memory. Pure; thread-safe.
 */
TRYON_API cJSON *tryon_user_to_json(const tryon_user *u, unsigned flags);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_USERS_H */
