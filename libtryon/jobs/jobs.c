/*
 * The job queue on PostgreSQL.
 *
 * Every change to a job is one statement that also sends its NOTIFY (a CTE around the
 * UPDATE), so the event and the change commit together. Claims are serialised by a
 * transaction-level advisory lock: a claim is a few milliseconds, and with it the
 * per-user running count it checks cannot be raced by another worker's claim.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <tryon/jobs.h>

#define TS(n) TRYON_DB_TS(n)
#define MS(col) "coalesce(" TRYON_DB_MS(col) ", 0)"

/* Any constant shared by all workers; distinct from the migration lock's. */
#define CLAIM_LOCK_KEY "7305041214"

#define DEFAULT_ATTEMPTS 3
#define DEFAULT_PER_USER 2
#define DEFAULT_LEASE_MS 60000
#define DEFAULT_BACKOFF_MS 2000
#define MAX_BACKOFF_MS 300000

/* The NOTIFY every state or progress change sends, from the updated rows `u`. */
#define EVENTS                                                                      \
  "SELECT u.id::text, u.state, pg_notify('tryon_events', json_build_object('user'," \
  " u.user_id, 'job', u.id, 'state', u.state, 'progress', u.progress)::text) FROM u"

#define JOB_COLUMNS                                                                        \
  "id::text, kind, payload::text, result::text, error::text, coalesce(user_id, 0), state," \
  " attempts, max_attempts, progress, coalesce(stage, ''), coalesce(lease_owner, ''),"     \
  " " MS("lease_expires_at") ", " MS("run_after") ", " MS("created_at") ", " MS(           \
      "started_at") ", " MS("finished_at")

static const char *const state_names[] = {"queued", "running", "succeeded", "failed", "cancelled"};

const char *tryon_job_state_name(tryon_job_state s) {
  return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "unknown";
}

static tryon_job_state parse_state(const char *s) {
  for (size_t i = 0; i < sizeof state_names / sizeof state_names[0]; i++) {
    if (strcmp(state_names[i], s) == 0)
      return (tryon_job_state)i;
  }
  return TRYON_JOB_FAILED;
}

bool tryon_jobs_kind_valid(const char *k) {
  size_t n = k ? strlen(k) : 0;
  if (n == 0 || n > 64 || !(k[0] >= 'a' && k[0] <= 'z'))
    return false;
  for (size_t i = 0; i < n; i++) {
    char ch = k[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.'))
      return false;
  }
  return true;
}

/* A JSON object (the schema wants objects for payloads; results and errors too). */
static bool json_object_ok(const char *text) {
  if (text == NULL)
    return true;
  cJSON *doc = cJSON_Parse(text);
  bool ok = cJSON_IsObject(doc);
  cJSON_Delete(doc);
  return ok;
}

static char *dup_or_null(PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? NULL : strdup(PQgetvalue(res, row, col));
}

static void row_to_job(PGresult *res, int r, tryon_job *j) {
  memset(j, 0, sizeof *j);
  snprintf(j->id, sizeof j->id, "%s", PQgetvalue(res, r, 0));
  snprintf(j->kind, sizeof j->kind, "%s", PQgetvalue(res, r, 1));
  j->payload = dup_or_null(res, r, 2);
  j->result = dup_or_null(res, r, 3);
  j->error = dup_or_null(res, r, 4);
  j->user_id = tryon_db_get_i64(res, r, 5);
  j->state = parse_state(PQgetvalue(res, r, 6));
  j->attempts = (int)tryon_db_get_i64(res, r, 7);
  j->max_attempts = (int)tryon_db_get_i64(res, r, 8);
  j->progress = (int)tryon_db_get_i64(res, r, 9);
  snprintf(j->stage, sizeof j->stage, "%s", PQgetvalue(res, r, 10));
  snprintf(j->lease_owner, sizeof j->lease_owner, "%s", PQgetvalue(res, r, 11));
  j->lease_expires_ms = tryon_db_get_i64(res, r, 12);
  j->run_after_ms = tryon_db_get_i64(res, r, 13);
  j->created_ms = tryon_db_get_i64(res, r, 14);
  j->started_ms = tryon_db_get_i64(res, r, 15);
  j->finished_ms = tryon_db_get_i64(res, r, 16);
}

void tryon_job_release(tryon_job *job) {
  if (job == NULL)
    return;
  free(job->payload);
  free(job->result);
  free(job->error);
  job->payload = job->result = job->error = NULL;
}

cJSON *tryon_job_to_json(const tryon_job *j, unsigned flags) {
  cJSON *o = cJSON_CreateObject();
  if (o == NULL || j == NULL)
    goto out;
  cJSON_AddStringToObject(o, "id", j->id);
  cJSON_AddStringToObject(o, "kind", j->kind);
  cJSON_AddStringToObject(o, "state", tryon_job_state_name(j->state));
  cJSON_AddNumberToObject(o, "progress", j->progress);
  if (j->stage[0] != '\0')
    cJSON_AddStringToObject(o, "stage", j->stage);
  else
    cJSON_AddNullToObject(o, "stage");
  cJSON_AddNumberToObject(o, "attempts", j->attempts);
  tryon_json_add_time(o, "created_at", j->created_ms);
  tryon_json_add_time(o, "finished_at", j->finished_ms);
  if ((flags & TRYON_JOB_JSON_OPERATOR) == 0)
    goto out;
  cJSON_AddNumberToObject(o, "user_id", (double)j->user_id);
  cJSON_AddNumberToObject(o, "max_attempts", j->max_attempts);
  cJSON_AddStringToObject(o, "lease_owner", j->lease_owner);
  tryon_json_add_time(o, "lease_expires_at", j->lease_expires_ms);
  tryon_json_add_time(o, "run_after", j->run_after_ms);
  tryon_json_add_time(o, "started_at", j->started_ms);
  const char *texts[] = {j->payload, j->result, j->error};
  const char *names[] = {"payload", "result", "error"};
  for (int i = 0; i < 3; i++) {
    cJSON *v = texts[i] != NULL ? cJSON_Parse(texts[i]) : NULL;
    if (v != NULL)
      cJSON_AddItemToObject(o, names[i], v);
    else
      cJSON_AddNullToObject(o, names[i]);
  }
out:
  return o;
}

/* ------------------------------------------------------------------------- enqueue */

tryon_status tryon_jobs_enqueue(tryon_db_conn *c, const tryon_job_spec *spec, int64_t now_ms,
                                char id_out[TRYON_UUID_STR_LEN], bool *created, tryon_err *err) {
  PGresult *res = NULL;
  tryon_status st;
  if (c == NULL || spec == NULL || !tryon_jobs_kind_valid(spec->kind) ||
      !json_object_ok(spec->payload_json) || spec->max_attempts < 0 || spec->max_attempts > 100 ||
      spec->user_id < 0)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid job");
  tryon_db_num uid = tryon_db_num_i64(spec->user_id),
               att = tryon_db_num_i64(spec->max_attempts ? spec->max_attempts : DEFAULT_ATTEMPTS),
               when = tryon_db_num_i64(spec->run_after_ms > 0 ? spec->run_after_ms : now_ms);
  const char *p[] = {
      spec->kind, spec->payload_json, spec->user_id ? uid.s : NULL, spec->idempotency_key, att.s,
      when.s};
  /* The events go out when the caller commits; a rollback sends none. */
  st = tryon_db_exec(c,
                     "WITH u AS (INSERT INTO jobs (kind, payload, user_id, idempotency_key,"
                     " max_attempts, run_after) VALUES ($1, coalesce($2::jsonb, '{}'),"
                     " $3::bigint, $4, $5::int, " TS(
                         6) ") ON CONFLICT (idempotency_key)"
                            " DO NOTHING RETURNING id, user_id, state, progress, kind)"
                            " SELECT u.id::text, pg_notify('tryon_jobs', u.kind),"
                            " pg_notify('tryon_events', json_build_object('user', u.user_id, 'job',"
                            " u.id, 'state', u.state, 'progress', u.progress)::text) FROM u",
                     6, p, &res, err);
  if (st != TRYON_OK)
    goto out;
  if (created != NULL)
    *created = PQntuples(res) == 1;
  if (PQntuples(res) == 1) {
    snprintf(id_out, TRYON_UUID_STR_LEN, "%s", PQgetvalue(res, 0, 0));
    goto out;
  }
  /* The key named an existing job: that one is the answer. */
  PQclear(res);
  res = NULL;
  const char *k[] = {spec->idempotency_key};
  st = tryon_db_exec(c, "SELECT id::text FROM jobs WHERE idempotency_key = $1", 1, k, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 1)
    snprintf(id_out, TRYON_UUID_STR_LEN, "%s", PQgetvalue(res, 0, 0));
  else if (st == TRYON_OK)
    st = tryon_err_set(err, TRYON_E_INTERNAL, "the job under this key vanished");
out:
  PQclear(res);
  return st;
}

/* The kinds as a PostgreSQL text[] literal ("{a,b}") into buf; *used 0 for none (NULL).
 * Kinds are checked by kind_ok, so they need no quoting. false when they do not fit. */
static bool kinds_array(const char *const *kinds, char *buf, size_t cap, size_t *used) {
  *used = 0;
  buf[0] = '\0';
  for (size_t i = 0; kinds != NULL && kinds[i] != NULL; i++) {
    int w = snprintf(buf + *used, cap - *used, "%s%s", *used ? "," : "{", kinds[i]);
    if (w < 0 || (size_t)w >= cap - *used - 1)
      return false;
    *used += (size_t)w;
  }
  if (*used > 0)
    snprintf(buf + *used, cap - *used, "}");
  return true;
}

static bool kinds_ok(const char *const *kinds) {
  for (size_t i = 0; kinds != NULL && kinds[i] != NULL; i++) {
    if (!tryon_jobs_kind_valid(kinds[i]))
      return false;
  }
  return true;
}

/* ---------------------------------------------------------------------------- claim */

typedef struct claim_op {
  const tryon_claim_options *opt;
  int64_t now_ms;
  tryon_job *out;
  size_t *n;
} claim_op;

static tryon_status claim_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  claim_op *op = ud;
  const tryon_claim_options *o = op->opt;
  PGresult *res = NULL;
  char kinds[1024] = "";
  size_t used = 0;

  /* On a retry of the transaction the previous attempt's rows are gone. */
  for (size_t i = 0; i < *op->n; i++)
    tryon_job_release(&op->out[i]);
  *op->n = 0;
  if (!kinds_array(o->kinds, kinds, sizeof kinds, &used))
    return tryon_err_set(err, TRYON_E_INVALID, "too many kinds");
  tryon_status st =
      tryon_db_exec(c, "SELECT pg_advisory_xact_lock(" CLAIM_LOCK_KEY ")", 0, NULL, NULL, err);
  if (st != TRYON_OK)
    return st;
  tryon_db_num now = tryon_db_num_i64(op->now_ms), max = tryon_db_num_i64(o->max),
               per = tryon_db_num_i64(o->per_user_running > 0 ? o->per_user_running
                                                              : DEFAULT_PER_USER),
               lease = tryon_db_num_i64(o->lease_ms > 0 ? o->lease_ms : DEFAULT_LEASE_MS),
               scan = tryon_db_num_i64((int64_t)o->max * 20 + 100);
  const char *p[] = {now.s, used ? kinds : NULL, max.s, per.s, o->owner, lease.s, scan.s};
  /* The oldest due jobs (a bounded scan on the dequeue index), at most per_user_running
   * running per user counting those running already, then the first `max` of them. The
   * UPDATE checks the state again: a cancel that commits while it waits on a row's lock
   * has the last word (READ COMMITTED re-reads the row and the row no longer matches). */
  st = tryon_db_exec(
      c,
      "WITH running AS (SELECT user_id, count(*) AS n FROM jobs WHERE state = 'running'"
      "   AND user_id IS NOT NULL GROUP BY user_id),"
      " due AS (SELECT j.id, j.user_id, j.run_after, j.created_at,"
      "   row_number() OVER (PARTITION BY j.user_id ORDER BY j.run_after, j.created_at) AS k"
      "   FROM (SELECT id, user_id, run_after, created_at FROM jobs WHERE state = 'queued'"
      "     AND run_after < " TS(
          1) " + interval '1 millisecond' AND ($2::text[] IS NULL OR kind = ANY($2::text[]))"
             "     ORDER BY run_after, created_at LIMIT $7::int) j),"
             " pick AS (SELECT d.id FROM due d LEFT JOIN running r ON r.user_id = d.user_id"
             "   WHERE d.user_id IS NULL OR d.k + coalesce(r.n, 0) <= $4::int"
             "   ORDER BY d.run_after, d.created_at LIMIT $3::int),"
             " u AS (UPDATE jobs j SET state = 'running', attempts = j.attempts + 1,"
             "   lease_owner = $5, lease_expires_at = " TS(
                 1) " + $6::bigint * interval '1 millisecond',"
                    "   started_at = " TS(
                        1) ", progress = 0, stage = NULL"
                           "   FROM pick WHERE j.id = pick.id AND j.state = 'queued'"
                           " RETURNING j.*)"
                           " SELECT " JOB_COLUMNS
                           ", pg_notify('tryon_events', json_build_object('user', user_id,"
                           " 'job', id, 'state', state, 'progress', progress)::text)"
                           " FROM u ORDER BY run_after, created_at",
      7, p, &res, err);
  if (st == TRYON_OK) {
    for (int i = 0; i < PQntuples(res) && i < o->max; i++)
      row_to_job(res, i, &op->out[i]);
    *op->n = (size_t)(PQntuples(res) < o->max ? PQntuples(res) : o->max);
  }
  PQclear(res);
  return st;
}

tryon_status tryon_jobs_claim(tryon_db_conn *c, const tryon_claim_options *opt, int64_t now_ms,
                              tryon_job *out, size_t *n, tryon_err *err) {
  if (c == NULL || opt == NULL || opt->owner == NULL || opt->owner[0] == '\0' ||
      strlen(opt->owner) > 64 || opt->max < 1 || out == NULL || n == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_jobs_claim");
  if (!kinds_ok(opt->kinds))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid job kind");
  *n = 0;
  claim_op op = {.opt = opt, .now_ms = now_ms, .out = out, .n = n};
  return tryon_db_tx(c, claim_tx, &op, err);
}

/* ------------------------------------------------------------- lease, progress, reap */

/* Runs an UPDATE … RETURNING under `sql` (with $1 id, $2 owner) and says whether it
 * touched the job; TRYON_E_CONFLICT when it did not (the lease is not the owner's). */
static tryon_status owned_update(tryon_db_conn *c, const char *sql, int nparams,
                                 const char *const *p, PGresult **out, tryon_err *err) {
  PGresult *res = NULL;
  tryon_status st = tryon_db_exec(c, sql, nparams, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_CONFLICT, "this job is not running under this lease");
  if (st == TRYON_OK && out != NULL) {
    *out = res;
    res = NULL;
  }
  PQclear(res);
  return st;
}

tryon_status tryon_jobs_heartbeat(tryon_db_conn *c, const char *id, const char *owner,
                                  int64_t lease_ms, int64_t now_ms, tryon_err *err) {
  if (!tryon_uuid_valid(id) || owner == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_jobs_heartbeat");
  tryon_db_num now = tryon_db_num_i64(now_ms),
               lease = tryon_db_num_i64(lease_ms > 0 ? lease_ms : DEFAULT_LEASE_MS);
  const char *p[] = {id, owner, now.s, lease.s};
  return owned_update(c,
                      "UPDATE jobs SET lease_expires_at = " TS(
                          3) " + $4::bigint * interval"
                             " '1 millisecond' WHERE id = $1::uuid AND state = 'running'"
                             " AND lease_owner = $2 RETURNING id",
                      4, p, NULL, err);
}

tryon_status tryon_jobs_progress(tryon_db_conn *c, const char *id, const char *owner, int progress,
                                 const char *stage, const char *checkpoint_json, int64_t now_ms,
                                 tryon_err *err) {
  (void)now_ms;
  if (!tryon_uuid_valid(id) || owner == NULL || progress < 0 || progress > 100 ||
      !json_object_ok(checkpoint_json) || (stage != NULL && strlen(stage) > 64))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_jobs_progress");
  tryon_db_num pr = tryon_db_num_i64(progress);
  const char *p[] = {id, owner, pr.s, stage, checkpoint_json};
  return owned_update(c,
                      "WITH u AS (UPDATE jobs SET progress = $3::smallint, stage = $4,"
                      " payload = payload || coalesce($5::jsonb, '{}') WHERE id = $1::uuid"
                      " AND state = 'running' AND lease_owner = $2"
                      " RETURNING id, user_id, state, progress) " EVENTS,
                      5, p, NULL, err);
}

/* Appends ids[i] (checked UUIDs) or owners[i] (quoted) to a PostgreSQL array literal. */
static tryon_status array_literal(tryon_buf *b, const char *const *items, size_t n, bool quote,
                                  tryon_err *err) {
  tryon_status st = tryon_buf_append_str(b, "{");
  for (size_t i = 0; st == TRYON_OK && i < n; i++) {
    if (i > 0)
      st = tryon_buf_append_str(b, ",");
    if (st == TRYON_OK && quote)
      st = tryon_buf_append_str(b, "\"");
    for (const char *p = items[i]; st == TRYON_OK && *p; p++) {
      if (quote && (*p == '"' || *p == '\\'))
        st = tryon_buf_append_str(b, "\\");
      if (st == TRYON_OK)
        st = tryon_buf_append(b, p, 1);
    }
    if (st == TRYON_OK && quote)
      st = tryon_buf_append_str(b, "\"");
  }
  if (st == TRYON_OK)
    st = tryon_buf_append_str(b, "}");
  return st == TRYON_OK ? st : tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
}

tryon_status tryon_jobs_heartbeat_many(tryon_db_conn *c, const char *const *ids,
                                       const char *const *owners, size_t n, int64_t lease_ms,
                                       int64_t now_ms, bool *held, tryon_err *err) {
  PGresult *res = NULL;
  tryon_buf idarr, ownarr;
  tryon_buf_init(&idarr, n * TRYON_UUID_STR_LEN + 2);
  tryon_buf_init(&ownarr, n * 2 * 66 + 2);
  tryon_status st = TRYON_OK;
  if (n > 0 && (ids == NULL || owners == NULL || held == NULL)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_jobs_heartbeat_many");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    held[i] = false;
    if (!tryon_uuid_valid(ids[i]) || owners[i] == NULL || strlen(owners[i]) > 64) {
      st = tryon_err_set(err, TRYON_E_INVALID, "invalid job id or owner");
      goto out;
    }
  }
  if (n == 0)
    goto out;
  st = array_literal(&idarr, ids, n, false, err);
  if (st == TRYON_OK)
    st = array_literal(&ownarr, owners, n, true, err);
  if (st != TRYON_OK)
    goto out;
  tryon_db_num now = tryon_db_num_i64(now_ms),
               lease = tryon_db_num_i64(lease_ms > 0 ? lease_ms : DEFAULT_LEASE_MS);
  const char *p[] = {idarr.data, ownarr.data, now.s, lease.s};
  st = tryon_db_exec(c,
                     "UPDATE jobs j SET lease_expires_at = " TS(
                         3) " + $4::bigint * interval '1 millisecond'"
                            " FROM unnest($1::uuid[], $2::text[]) AS h(id, owner)"
                            " WHERE j.id = h.id AND j.state = 'running'"
                            " AND j.lease_owner = h.owner RETURNING j.id::text",
                     4, p, &res, err);
  for (int r = 0; st == TRYON_OK && r < PQntuples(res); r++) {
    const char *got = PQgetvalue(res, r, 0);
    for (size_t i = 0; i < n; i++) {
      if (!held[i] && strcmp(ids[i], got) == 0) {
        held[i] = true;
        break;
      }
    }
  }
out:
  PQclear(res);
  tryon_buf_release(&idarr);
  tryon_buf_release(&ownarr);
  return st;
}

tryon_status tryon_jobs_release(tryon_db_conn *c, const char *id, const char *owner, int64_t now_ms,
                                tryon_err *err) {
  if (!tryon_uuid_valid(id) || owner == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_jobs_release");
  tryon_db_num now = tryon_db_num_i64(now_ms);
  const char *p[] = {id, owner, now.s};
  /* The attempt the claim counted is given back: a shutdown is not the job's failure. */
  return owned_update(c,
                      "WITH u AS (UPDATE jobs SET state = 'queued', attempts = greatest("
                      " attempts - 1, 0), run_after = " TS(
                          3) ", lease_owner = NULL,"
                             " lease_expires_at = NULL WHERE id = $1::uuid AND state = 'running'"
                             " AND lease_owner = $2 RETURNING id, user_id, state, progress, kind)"
                             " SELECT u.id::text, pg_notify('tryon_jobs', u.kind),"
                             " pg_notify('tryon_events', json_build_object('user', u.user_id,"
                             " 'job', u.id, 'state', u.state, 'progress', u.progress)::text)"
                             " FROM u",
                      3, p, NULL, err);
}

#define REAP_SKIP_MAX 64 /* jobs whose hook failed, left for the next reap */

typedef struct reap_one {
  const tryon_reap_options *opt;
  const char *kinds; /* text[] literal or NULL */
  const char *skip;  /* uuid[] literal */
  int64_t now_ms;
  char id[TRYON_UUID_STR_LEN]; /* the job failed, "" when none was left */
} reap_one;

/* Fails one expired job on its last attempt and runs its hook, in one transaction. */
static tryon_status reap_one_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  reap_one *op = ud;
  PGresult *res = NULL;
  tryon_db_num now = tryon_db_num_i64(op->now_ms);
  const char *p[] = {now.s, op->kinds, op->skip};
  op->id[0] = '\0';
  tryon_status st = tryon_db_exec(
      c,
      "WITH exp AS (SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < " TS(
          1) "   AND attempts >= max_attempts AND ($2::text[] IS NULL OR kind = ANY($2::text[]))"
             "   AND NOT (id = ANY($3::uuid[])) LIMIT 1 FOR UPDATE SKIP LOCKED),"
             " u AS (UPDATE jobs j SET state = 'failed', lease_owner = NULL,"
             "   lease_expires_at = NULL, finished_at = " TS(
                 1) ","
                    "   error = '{\"code\":\"lease_expired\",\"message\":\"the worker running"
                    " it stopped\"}'::jsonb FROM exp WHERE j.id = exp.id RETURNING j.*)"
                    " SELECT " JOB_COLUMNS
                    ", pg_notify('tryon_events', json_build_object('user', user_id,"
                    " 'job', id, 'state', state, 'progress', progress)::text) FROM u",
      3, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 1) {
    tryon_job j;
    row_to_job(res, 0, &j);
    snprintf(op->id, sizeof op->id, "%s", j.id);
    if (op->opt != NULL && op->opt->on_final != NULL)
      st = op->opt->on_final(c, &j, op->opt->ud, err);
    tryon_job_release(&j);
  }
  PQclear(res);
  return st;
}

tryon_status tryon_jobs_reap(tryon_db_conn *c, const tryon_reap_options *opt, int64_t now_ms,
                             size_t *requeued, size_t *nfailed, tryon_err *err) {
  PGresult *res = NULL;
  char kinds[1024];
  size_t used = 0, failed = 0, nskip = 0;
  char skipped[REAP_SKIP_MAX][TRYON_UUID_STR_LEN];
  const char *skip_ptrs[REAP_SKIP_MAX];
  tryon_buf skip;
  tryon_err hook_err;
  tryon_status hook_st = TRYON_OK;
  tryon_buf_init(&skip, REAP_SKIP_MAX * TRYON_UUID_STR_LEN + 2);
  if (requeued != NULL)
    *requeued = 0;
  if (nfailed != NULL)
    *nfailed = 0;
  if (c == NULL || (opt != NULL && (!kinds_ok(opt->kinds) ||
                                    !kinds_array(opt->kinds, kinds, sizeof kinds, &used))))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_jobs_reap");
  tryon_db_num now = tryon_db_num_i64(now_ms);
  const char *p[] = {now.s, used ? kinds : NULL};
  /* Attempts left: back in the queue in one statement, no hook involved. */
  tryon_status st = tryon_db_exec(
      c,
      "WITH exp AS (SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < " TS(
          1) "   AND attempts < max_attempts AND ($2::text[] IS NULL OR kind = ANY($2::text[]))"
             "   FOR UPDATE SKIP LOCKED),"
             " u AS (UPDATE jobs j SET state = 'queued', run_after = " TS(
                 1) ", lease_owner = NULL, lease_expires_at = NULL FROM exp"
                    "   WHERE j.id = exp.id RETURNING j.id, j.user_id, j.state, j.progress,"
                    "   j.kind)"
                    " SELECT u.id::text, pg_notify('tryon_jobs', u.kind),"
                    " pg_notify('tryon_events', json_build_object('user', u.user_id, 'job',"
                    " u.id, 'state', u.state, 'progress', u.progress)::text) FROM u",
      2, p, &res, err);
  if (st != TRYON_OK)
    goto out;
  if (requeued != NULL)
    *requeued = (size_t)PQntuples(res);
  /* Last attempts: one transaction each, so that a hook failing holds back only its own
   * job. */
  for (;;) {
    tryon_buf_reset(&skip);
    st = array_literal(&skip, skip_ptrs, nskip, false, err);
    if (st != TRYON_OK)
      goto out;
    reap_one one = {.opt = opt, .kinds = used ? kinds : NULL, .skip = skip.data, .now_ms = now_ms};
    tryon_err e;
    tryon_err_clear(&e);
    st = tryon_db_tx(c, reap_one_tx, &one, &e);
    if (st == TRYON_OK && one.id[0] == '\0')
      break; /* none left */
    if (st == TRYON_OK) {
      failed++;
      continue;
    }
    if (one.id[0] == '\0' || nskip == REAP_SKIP_MAX) { /* the statement itself failed */
      if (err != NULL)
        *err = e;
      goto out;
    }
    /* Its hook failed: remember the first such error, skip the job this time. */
    if (hook_st == TRYON_OK) {
      hook_st = st;
      hook_err = e;
    }
    snprintf(skipped[nskip], TRYON_UUID_STR_LEN, "%s", one.id);
    skip_ptrs[nskip] = skipped[nskip];
    nskip++;
  }
  st = hook_st;
  if (st != TRYON_OK && err != NULL)
    *err = hook_err;
out:
  if (nfailed != NULL)
    *nfailed = failed;
  PQclear(res);
  tryon_buf_release(&skip);
  return st;
}

/* ----------------------------------------------------------------- succeed, fail */

tryon_status tryon_jobs_succeed(tryon_db_conn *c, const char *id, const char *owner,
                                const char *result_json, int64_t now_ms, tryon_err *err) {
  if (!tryon_uuid_valid(id) || owner == NULL || !json_object_ok(result_json))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_jobs_succeed");
  tryon_db_num now = tryon_db_num_i64(now_ms);
  const char *p[] = {id, owner, result_json, now.s};
  return owned_update(
      c,
      "WITH u AS (UPDATE jobs SET state = 'succeeded', result = $3::jsonb,"
      " progress = 100, lease_owner = NULL, lease_expires_at = NULL,"
      " finished_at = " TS(
          4) " WHERE id = $1::uuid AND state = 'running'"
             " AND lease_owner = $2 RETURNING id, user_id, state, progress) " EVENTS,
      4, p, NULL, err);
}

tryon_status tryon_jobs_fail(tryon_db_conn *c, const char *id, const char *owner,
                             const char *error_json, bool retryable, int64_t backoff_ms,
                             int64_t retry_after_ms, int64_t now_ms, bool *final, tryon_err *err) {
  PGresult *res = NULL;
  if (final != NULL)
    *final = false;
  if (!tryon_uuid_valid(id) || owner == NULL || error_json == NULL || !json_object_ok(error_json) ||
      backoff_ms < 0 || retry_after_ms < 0)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_jobs_fail");
  tryon_db_num now = tryon_db_num_i64(now_ms),
               base = tryon_db_num_i64(backoff_ms > 0 ? backoff_ms : DEFAULT_BACKOFF_MS),
               ra = tryon_db_num_i64(retry_after_ms > MAX_BACKOFF_MS ? MAX_BACKOFF_MS
                                                                     : retry_after_ms),
               cap = tryon_db_num_i64(MAX_BACKOFF_MS);
  const char *p[] = {id,    owner,  error_json, retryable ? "true" : "false",
                     now.s, base.s, ra.s,       cap.s};
  /* Full jitter: a random delay up to the doubled base, so retries of many jobs that
   * failed together spread out instead of arriving together again. */
  tryon_status st = owned_update(
      c,
      "WITH u AS (UPDATE jobs SET"
      "   state = CASE WHEN $4::boolean AND attempts < max_attempts THEN 'queued'"
      "     ELSE 'failed' END,"
      "   run_after = CASE WHEN $4::boolean AND attempts < max_attempts THEN " TS(
          5) "     + (CASE WHEN $7::bigint > 0 THEN $7::bigint ELSE floor(random() *"
             "       least($8::bigint, $6::bigint * power(2, attempts - 1)))::bigint END)"
             "       * interval '1 millisecond' ELSE run_after END,"
             "   error = $3::jsonb, lease_owner = NULL, lease_expires_at = NULL,"
             "   finished_at = CASE WHEN $4::boolean AND attempts < max_attempts THEN NULL"
             "     ELSE " TS(5) " END"
                                "   WHERE id = $1::uuid AND state = 'running' AND lease_owner = $2"
                                "   RETURNING id, user_id, state, progress) " EVENTS,
      8, p, &res, err);
  if (st == TRYON_OK && final != NULL)
    *final = strcmp(PQgetvalue(res, 0, 1), "failed") == 0;
  PQclear(res);
  return st;
}

/* ------------------------------------------------------------ read, cancel, retry */

tryon_status tryon_jobs_get(tryon_db_conn *c, const char *id, int64_t user_id, tryon_job *out,
                            tryon_err *err) {
  PGresult *res = NULL;
  if (!tryon_uuid_valid(id))
    return tryon_err_set(err, TRYON_E_NOT_FOUND, "no such job");
  tryon_db_num uid = tryon_db_num_i64(user_id);
  const char *p[] = {id, uid.s};
  tryon_status st = tryon_db_exec(c,
                                  "SELECT " JOB_COLUMNS " FROM jobs WHERE id = $1::uuid"
                                  " AND ($2::bigint = 0 OR user_id = $2::bigint)",
                                  2, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_NOT_FOUND, "no such job");
  else if (st == TRYON_OK)
    row_to_job(res, 0, out);
  PQclear(res);
  return st;
}

tryon_status tryon_jobs_position(tryon_db_conn *c, const char *id, int64_t now_ms,
                                 int64_t *position, tryon_err *err) {
  PGresult *res = NULL;
  (void)now_ms;
  *position = 0;
  if (!tryon_uuid_valid(id))
    return tryon_err_set(err, TRYON_E_NOT_FOUND, "no such job");
  const char *p[] = {id};
  tryon_status st = tryon_db_exec(
      c,
      "SELECT CASE WHEN j.state <> 'queued' THEN 0 ELSE (SELECT count(*) FROM jobs q"
      "   WHERE q.state = 'queued' AND (q.run_after, q.created_at, q.id)"
      "   <= (j.run_after, j.created_at, j.id)) END FROM jobs j WHERE j.id = $1::uuid",
      1, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0)
    st = tryon_err_set(err, TRYON_E_NOT_FOUND, "no such job");
  else if (st == TRYON_OK)
    *position = tryon_db_get_i64(res, 0, 0);
  PQclear(res);
  return st;
}

tryon_status tryon_jobs_cancel(tryon_db_conn *c, const char *id, int64_t user_id, int64_t now_ms,
                               tryon_err *err) {
  PGresult *res = NULL;
  if (!tryon_uuid_valid(id))
    return tryon_err_set(err, TRYON_E_NOT_FOUND, "no such job");
  tryon_db_num uid = tryon_db_num_i64(user_id), now = tryon_db_num_i64(now_ms);
  const char *p[] = {id, uid.s, now.s};
  tryon_status st = tryon_db_exec(
      c,
      "WITH u AS (UPDATE jobs SET state = 'cancelled', finished_at = " TS(
          3) "   WHERE id = $1::uuid AND ($2::bigint = 0 OR user_id = $2::bigint)"
             "   AND state = 'queued' RETURNING id, user_id, state, progress) " EVENTS,
      3, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0) {
    /* Not cancelled: tell a job that is not there (or not theirs) from one too late. */
    tryon_job j;
    st = tryon_jobs_get(c, id, user_id, &j, err);
    if (st == TRYON_OK) {
      tryon_job_release(&j);
      st = tryon_err_set(err, TRYON_E_CONFLICT, "the job is already %s",
                         tryon_job_state_name(j.state));
    }
  }
  PQclear(res);
  return st;
}

tryon_status tryon_jobs_retry(tryon_db_conn *c, const char *id, int64_t now_ms, tryon_err *err) {
  PGresult *res = NULL;
  if (!tryon_uuid_valid(id))
    return tryon_err_set(err, TRYON_E_NOT_FOUND, "no such job");
  tryon_db_num now = tryon_db_num_i64(now_ms);
  const char *p[] = {id, now.s};
  tryon_status st = tryon_db_exec(
      c,
      "WITH u AS (UPDATE jobs SET state = 'queued', attempts = 0, run_after = " TS(
          2) ","
             "   error = NULL, finished_at = NULL, progress = 0, stage = NULL"
             "   WHERE id = $1::uuid AND state IN ('failed', 'cancelled')"
             "   RETURNING id, user_id, state, progress, kind)"
             " SELECT u.id::text, u.state, pg_notify('tryon_events', json_build_object('user',"
             " u.user_id, 'job', u.id, 'state', u.state, 'progress', u.progress)::text),"
             " pg_notify('tryon_jobs', u.kind) FROM u",
      2, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 0) {
    tryon_job j;
    st = tryon_jobs_get(c, id, 0, &j, err);
    if (st == TRYON_OK) {
      tryon_job_release(&j);
      st = tryon_err_set(err, TRYON_E_CONFLICT, "only a failed or cancelled job can be retried");
    }
  }
  PQclear(res);
  return st;
}

tryon_status tryon_jobs_list(tryon_db_conn *c, const char *state, int64_t user_id, size_t max,
                             tryon_job *out, size_t *n, tryon_err *err) {
  PGresult *res = NULL;
  *n = 0;
  tryon_db_num uid = tryon_db_num_i64(user_id),
               lim = tryon_db_num_i64((int64_t)(max > 10000 ? 10000 : max));
  const char *p[] = {state, uid.s, lim.s};
  tryon_status st = tryon_db_exec(c,
                                  "SELECT " JOB_COLUMNS " FROM jobs WHERE ($1::text IS NULL OR"
                                  " state = $1) AND ($2::bigint = 0 OR user_id = $2::bigint)"
                                  " ORDER BY created_at DESC, id DESC LIMIT $3::bigint",
                                  3, p, &res, err);
  for (int i = 0; st == TRYON_OK && i < PQntuples(res); i++) {
    row_to_job(res, i, &out[i]);
    (*n)++;
  }
  PQclear(res);
  return st;
}

tryon_status tryon_jobs_depth(tryon_db_conn *c, int64_t *queued, int64_t *running, tryon_err *err) {
  PGresult *res = NULL;
  tryon_status st = tryon_db_exec(c,
                                  "SELECT (SELECT count(*) FROM jobs WHERE state = 'queued'),"
                                  " (SELECT count(*) FROM jobs WHERE state = 'running')",
                                  0, NULL, &res, err);
  if (queued != NULL)
    *queued = st == TRYON_OK ? tryon_db_get_i64(res, 0, 0) : 0;
  if (running != NULL)
    *running = st == TRYON_OK ? tryon_db_get_i64(res, 0, 1) : 0;
  PQclear(res);
  return st;
}

tryon_status tryon_jobs_purge(tryon_db_conn *c, int64_t before_ms, size_t *n, tryon_err *err) {
  PGresult *res = NULL;
  tryon_db_num before = tryon_db_num_i64(before_ms);
  const char *p[] = {before.s};
  tryon_status st = tryon_db_exec(
      c,
      "WITH d AS (DELETE FROM jobs WHERE user_id IS NULL AND state IN"
      " ('succeeded', 'failed', 'cancelled') AND idempotency_key"
      " LIKE 'sched:%' AND finished_at < " TS(1) " RETURNING 1) SELECT count(*) FROM d",
      1, p, &res, err);
  if (n != NULL)
    *n = st == TRYON_OK ? (size_t)tryon_db_get_i64(res, 0, 0) : 0;
  PQclear(res);
  return st;
}
