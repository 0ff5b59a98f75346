/*
 * Section 4 of tryon/files.h against a real PostgreSQL: how an upload is deleted. The
 * decision rests on the foreign keys alone, shown with the product's own referrer (a
 * chat) and with a table this test invents, which the files module cannot know.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <tryon/files.h>

#include "testsupport.h"

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
  tryon_db_conn *c;
  int64_t user;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  tryon_testdb_open(&f->t, 2, 5000, &f->db, &f->c);
  char *id = tryon_test_query_value(
      f->c, "INSERT INTO users (telegram_id) VALUES (4242) RETURNING id", 0, NULL);
  f->user = strtoll(id, NULL, 10);
  free(id);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tryon_testdb_close(&f->t, f->db, f->c);
  free(f);
  return 0;
}

/* A stored upload of the fixture's user; its id into `id`. */
static void new_upload(fixture *f, char id[TRYON_UUID_STR_LEN]) {
  tryon_db_num uid = tryon_db_num_i64(f->user);
  const char *p[] = {uid.s};
  char *v = tryon_test_query_value(f->c,
                                   "INSERT INTO uploads (user_id, origin, mime, width, height,"
                                   " bytes, sha256) VALUES ($1::bigint, 'upload', 'image/png', 1,"
                                   " 1, 1, sha256('x')) RETURNING id::text",
                                   1, p);
  snprintf(id, TRYON_UUID_STR_LEN, "%s", v);
  free(v);
}

/* "gone", "marked" or "kept" */
static const char *fate(fixture *f, const char *id) {
  const char *p[] = {id};
  char *v = tryon_test_query_value(f->c,
                                   "SELECT CASE WHEN deleted_at IS NULL THEN 'kept' ELSE 'marked'"
                                   " END FROM uploads WHERE id = $1::uuid",
                                   1, p);
  static char out[8];
  snprintf(out, sizeof out, "%s", v ? v : "gone");
  free(v);
  return out;
}

static void exec_ok(fixture *f, const char *sql, const char *id) {
  tryon_err err;
  tryon_db_num uid = tryon_db_num_i64(f->user);
  const char *p[] = {id, uid.s};
  EXPECT_STATUS(tryon_db_exec(f->c, sql, id ? 2 : 0, id ? p : NULL, NULL, &err), TRYON_OK, &err,
                sql);
}

typedef struct del {
  int64_t user;
  const char *ids[3];
} del;

/* The caller's transaction (as tryon_generations_delete calls it): a savepoint inside. */
static tryon_status delete_three(tryon_db_conn *c, void *ud, tryon_err *err) {
  del *d = ud;
  tryon_status st = TRYON_OK;
  for (size_t i = 0; i < 3 && st == TRYON_OK; i++)
    st = tryon_uploads_delete(c, d->user, d->ids[i], err);
  return st;
}

static void
test_upload_records__delete_marks_a_referenced_upload_and_removes_the_rest(void **state) {
  fixture *f = *state;
  tryon_err err;
  char free_id[TRYON_UUID_STR_LEN], chat_id[TRYON_UUID_STR_LEN], probe_id[TRYON_UUID_STR_LEN];
  exec_ok(f,
          "CREATE TABLE probe_refs (upload_id uuid NOT NULL, user_id bigint NOT NULL,"
          " FOREIGN KEY (upload_id, user_id) REFERENCES uploads (id, user_id))",
          NULL);
  for (int pass = 0; pass < 2; pass++) { /* on its own, then inside a transaction */
    new_upload(f, free_id);
    new_upload(f, chat_id);
    new_upload(f, probe_id);
    exec_ok(f, "INSERT INTO chats (user_id, current_upload_id) VALUES ($2::bigint, $1::uuid)",
            chat_id);
    exec_ok(f, "INSERT INTO probe_refs VALUES ($1::uuid, $2::bigint)", probe_id);
    if (pass == 0) {
      EXPECT_STATUS(tryon_uploads_delete(f->c, f->user, free_id, &err), TRYON_OK, &err, "free");
      EXPECT_STATUS(tryon_uploads_delete(f->c, f->user, chat_id, NULL), TRYON_OK, NULL, "chat");
      EXPECT_STATUS(tryon_uploads_delete(f->c, f->user, probe_id, &err), TRYON_OK, &err, "probe");
    } else {
      del d = {f->user, {chat_id, free_id, probe_id}};
      EXPECT_STATUS(tryon_db_tx(f->c, delete_three, &d, &err), TRYON_OK, &err, "in a transaction");
    }
    assert_string_equal(fate(f, free_id), "gone");
    assert_string_equal(fate(f, chat_id), "marked");
    assert_string_equal(fate(f, probe_id), "marked");
    /* Deleted is deleted: a second time is not found, and changes nothing. */
    EXPECT_STATUS(tryon_uploads_delete(f->c, f->user, chat_id, &err), TRYON_E_NOT_FOUND, &err,
                  "again");
    EXPECT_STATUS(tryon_uploads_delete(f->c, f->user, free_id, &err), TRYON_E_NOT_FOUND, &err,
                  "gone");
    assert_string_equal(fate(f, chat_id), "marked");
  }
  /* Another user's upload, a malformed id: not found, untouched. */
  char other[TRYON_UUID_STR_LEN];
  new_upload(f, other);
  EXPECT_STATUS(tryon_uploads_delete(f->c, f->user + 1, other, &err), TRYON_E_NOT_FOUND, &err,
                "not theirs");
  EXPECT_STATUS(tryon_uploads_delete(f->c, f->user, "nope", &err), TRYON_E_NOT_FOUND, &err,
                "malformed");
  assert_string_equal(fate(f, other), "kept");
}

/* ------------------------------------------------------------------ orphan sweep */

/* Writes `key` into the store and dates it `age_s` seconds back. */
static void put_aged(tryon_storage *s, const char *root, const char *key, int64_t age_s) {
  tryon_err err;
  char path[512];
  EXPECT_STATUS(tryon_storage_put(s, key, "x", 1, &err), TRYON_OK, &err, key);
  if ((size_t)snprintf(path, sizeof path, "%s/%.2s/%.2s/%s", root, key, key + 2, key) >=
      sizeof path)
    fail_msg("path too long for %s", key);
  struct timespec t[2];
  clock_gettime(CLOCK_REALTIME, &t[0]);
  t[0].tv_sec -= (time_t)age_s;
  t[1] = t[0];
  if (utimensat(AT_FDCWD, path, t, 0) != 0)
    fail_msg("cannot date %s", path);
}

static bool stored(tryon_storage *s, const char *key) {
  tryon_buf b;
  tryon_buf_init(&b, 16);
  tryon_status st = tryon_storage_get(s, key, &b, NULL);
  tryon_buf_release(&b);
  return st == TRYON_OK;
}

/* More files than one batch (issue 12, item 6): 700 young files sorted before every
 * old one, 620 old orphans and 30 old files with rows. The sweep used to count every
 * file it saw and stop at 500, so past 500 stored objects orphans were never removed;
 * now young files do not count and each batch resumes after the last. */
static void test_upload_records__sweep_covers_more_than_one_batch(void **state) {
  fixture *f = *state;
  tryon_err err;
  tryon_storage *s = NULL;
  char root[128];
  snprintf(root, sizeof root, "/tmp/%s_sweep", f->t.name);
  assert_int_equal(tryon_storage_local_new(root, &s, &err), TRYON_OK);
  enum { YOUNG = 700, ORPHANS = 620, LIVE = 30 };
  static char young[YOUNG][TRYON_UUID_STR_LEN], orphan[ORPHANS][TRYON_UUID_STR_LEN],
      live[LIVE][TRYON_UUID_STR_LEN];
  for (int i = 0; i < YOUNG; i++) {
    snprintf(young[i], sizeof young[i], "0%07x-0000-4000-8000-000000000000", i);
    put_aged(s, root, young[i], 0);
  }
  for (int i = 0; i < ORPHANS; i++) {
    snprintf(orphan[i], sizeof orphan[i], "8%07x-0000-4000-8000-000000000000", i);
    put_aged(s, root, orphan[i], 7200);
  }
  for (int i = 0; i < LIVE; i++) {
    new_upload(f, live[i]);
    put_aged(s, root, live[i], 7200);
  }
  char cursor[TRYON_FILES_SWEEP_CURSOR_MAX] = "", next[TRYON_FILES_SWEEP_CURSOR_MAX];
  size_t removed_all = 0;
  int batches = 0;
  int64_t before = tryon_clock_now_ms(NULL) - 3600 * 1000;
  do {
    size_t removed = 0;
    EXPECT_STATUS(tryon_files_sweep_orphans(f->c, s, before, 500, cursor, next, &removed, &err),
                  TRYON_OK, &err, "sweep batch");
    removed_all += removed;
    snprintf(cursor, sizeof cursor, "%s", next);
    assert_true(++batches < 10);
  } while (next[0] != '\0');
  assert_int_equal(batches, 2); /* 650 candidates: 500, then 150 and the end */
  assert_int_equal(removed_all, ORPHANS);
  for (int i = 0; i < ORPHANS; i++)
    if (stored(s, orphan[i]))
      fail_msg("orphan %s survived", orphan[i]);
  for (int i = 0; i < YOUNG; i++)
    if (!stored(s, young[i]))
      fail_msg("young file %s was removed", young[i]);
  for (int i = 0; i < LIVE; i++)
    if (!stored(s, live[i]))
      fail_msg("file %s with an upload row was removed", live[i]);
  /* A cursor past everything walks nothing. */
  EXPECT_STATUS(tryon_files_sweep_orphans(f->c, s, before, 500, "ffffffff", next, NULL, &err),
                TRYON_OK, &err, "after the end");
  assert_string_equal(next, "");
  tryon_storage_free(s);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  assert_int_equal(system(cmd), 0);
}

/* The module names no table but its own: the foreign keys decide for it. */
static void test_upload_records__the_module_reads_no_other_table(void **state) {
  (void)state;
  static const char *const files[] = {"uploads.c", "storage.c", "links.c", "image.c", "compose.c"};
  static const char *const tables[] = {"generations", "chats",         "chat_history", "jobs",
                                       "wallets",     "credit_ledger", "payments"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char rel[64];
    snprintf(rel, sizeof rel, "libtryon/files/%s", files[i]);
    char *path = tryon_test_path(rel);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
      fail_msg("cannot read %s", path);
    char line[1024];
    for (int n = 1; fgets(line, sizeof line, fp) != NULL; n++) {
      for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        const char *hit = strstr(line, tables[t]);
        size_t len = strlen(tables[t]);
        /* A whole word: not "generations.h", not part of another name. */
        if (hit != NULL &&
            (hit == line || !(hit[-1] == '_' || (hit[-1] >= 'a' && hit[-1] <= 'z'))) &&
            !(hit[len] == '_' || hit[len] == '.' || (hit[len] >= 'a' && hit[len] <= 'z')))
          fail_msg("%s:%d names the table %s", rel, n, tables[t]);
      }
    }
    fclose(fp);
    free(path);
  }
}

int main(void) {
  tryon_test_log_init();
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_upload_records__delete_marks_a_referenced_upload_and_removes_the_rest),
      T(test_upload_records__sweep_covers_more_than_one_batch),
      cmocka_unit_test(test_upload_records__the_module_reads_no_other_table),
  };
  return cmocka_run_group_tests_name("upload_records", tests, NULL, NULL);
}
