/*
 * Schema migrations: `NNNN_name.sql` files applied in order, each in its own
 * transaction with its row in schema_migrations.
 */
#include "db/db_internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A migration file larger than this is surely a mistake (a data dump). */
#define MIGRATION_MAX_BYTES (16u * 1024u * 1024u)

/* Any constant will do as long as every tryon program uses the same one: it makes
 * concurrent `tryonctl migrate` runs (two deploys at once) take turns. */
#define MIGRATION_LOCK_KEY "7305041213"

typedef struct file_entry {
  tryon_db_migration m;
  char *sql; /* loaded only for pending files */
  char path[4096];
} file_entry;

typedef struct file_list {
  file_entry *items;
  size_t count;
  size_t cap;
} file_list;

static void file_list_release(file_list *l) {
  for (size_t i = 0; i < l->count; i++)
    free(l->items[i].sql);
  free(l->items);
  memset(l, 0, sizeof *l);
}

/* 0: not a migration name (ignored); 1: a migration; -1: starts with digits but is
 * malformed (refused, so a typo never silently skips a migration). */
static int parse_name(const char *fname, int64_t *version, char *stem, size_t stem_cap) {
  size_t len = strlen(fname);
  size_t digits = 0;
  while (isdigit((unsigned char)fname[digits]))
    digits++;
  if (digits == 0)
    return 0;
  if (len < 4 || strcmp(fname + len - 4, ".sql") != 0)
    return -1;
  if (digits < 4 || digits > 18 || fname[digits] != '_' || digits + 1 >= len - 4)
    return -1;
  for (size_t i = digits + 1; i < len - 4; i++) {
    if (!isalnum((unsigned char)fname[i]) && fname[i] != '_')
      return -1;
  }
  if (len - 4 >= stem_cap)
    return -1;
  char *end = NULL;
  errno = 0;
  long long v = strtoll(fname, &end, 10);
  if (errno != 0 || end != fname + digits)
    return -1;
  *version = (int64_t)v;
  memcpy(stem, fname, len - 4);
  stem[len - 4] = '\0';
  return 1;
}

static tryon_status read_file(const char *path, char **out, tryon_err *err) {
  tryon_status st = TRYON_OK;
  FILE *f = fopen(path, "rb");
  tryon_buf b;
  char chunk[8192];
  size_t n;

  tryon_buf_init(&b, MIGRATION_MAX_BYTES);
  *out = NULL;
  if (f == NULL) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    st = tryon_buf_append(&b, chunk, n);
    if (st != TRYON_OK) {
      st = tryon_err_set(err, st == TRYON_E_TOO_LARGE ? TRYON_E_MIGRATION : st,
                         "migration %s is larger than %u bytes", path, MIGRATION_MAX_BYTES);
      goto out;
    }
  }
  if (ferror(f)) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot read %s", path);
    goto out;
  }
  if (memchr(b.data, '\0', b.len) != NULL) {
    st = tryon_err_set(err, TRYON_E_MIGRATION, "migration %s contains a NUL byte", path);
    goto out;
  }
  *out = tryon_buf_steal(&b, NULL);
  if (*out == NULL)
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory reading %s", path);
out:
  if (f != NULL)
    fclose(f);
  tryon_buf_release(&b);
  return st;
}

static void sha256_hex(const char *data, size_t n, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL);
  tryon_hex_encode(md, 32, out);
}

static int cmp_file(const void *a, const void *b) {
  int64_t va = ((const file_entry *)a)->m.version, vb = ((const file_entry *)b)->m.version;
  return va < vb ? -1 : va > vb;
}

/* Reads the folder: every migration's name, version and checksum, sorted. The SQL
 * text is kept for all of them (files are small) so it is checksummed and applied from
 * the same bytes. */
static tryon_status scan_dir(const char *dir, file_list *l, tryon_err *err) {
  tryon_status st = TRYON_OK;
  DIR *d = opendir(dir);
  struct dirent *de;

  if (d == NULL) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot open migrations folder %s: %s", dir,
                       strerror(errno));
    goto out;
  }
  while ((de = readdir(d)) != NULL) {
    file_entry e;
    memset(&e, 0, sizeof e);
    int kind = parse_name(de->d_name, &e.m.version, e.m.name, sizeof e.m.name);
    if (kind == 0)
      continue;
    if (kind < 0) {
      st = tryon_err_set(err, TRYON_E_MIGRATION,
                         "malformed migration file name %s (want NNNN_name.sql)", de->d_name);
      goto out;
    }
    if (l->count == l->cap) {
      size_t ncap = l->cap ? l->cap * 2 : 16;
      file_entry *n = realloc(l->items, ncap * sizeof *n);
      if (n == NULL) {
        st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory listing migrations");
        goto out;
      }
      l->items = n;
      l->cap = ncap;
    }
    int w = snprintf(e.path, sizeof e.path, "%s/%s", dir, de->d_name);
    if (w < 0 || (size_t)w >= sizeof e.path) {
      st = tryon_err_set(err, TRYON_E_INVALID, "migrations folder path is too long");
      goto out;
    }
    e.m.has_file = true;
    l->items[l->count++] = e;
  }
  qsort(l->items, l->count, sizeof *l->items, cmp_file);
  for (size_t i = 0; i < l->count; i++) {
    file_entry *e = &l->items[i];
    if (i > 0 && l->items[i - 1].m.version == e->m.version) {
      st = tryon_err_set(err, TRYON_E_MIGRATION, "migrations %s and %s share version %lld",
                         l->items[i - 1].m.name, e->m.name, (long long)e->m.version);
      goto out;
    }
    st = read_file(e->path, &e->sql, err);
    if (st != TRYON_OK)
      goto out;
    sha256_hex(e->sql, strlen(e->sql), e->m.checksum);
  }
out:
  if (d != NULL)
    closedir(d);
  return st;
}

typedef struct applied_row {
  int64_t version;
  char name[128];
  char checksum[65];
  int64_t applied_at_ms;
} applied_row;

/* Reads schema_migrations; a database without the table has applied nothing. */
static tryon_status load_applied(tryon_db_conn *c, applied_row **rows, size_t *n, tryon_err *err) {
  tryon_status st;
  PGresult *res = NULL;

  *rows = NULL;
  *n = 0;
  st = tryon_db_exec(c, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &res, err);
  if (st != TRYON_OK)
    goto out;
  if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
    goto out;
  PQclear(res);
  res = NULL;
  st = tryon_db_exec(c,
                     "SELECT version, name, checksum,"
                     " (extract(epoch FROM applied_at) * 1000)::bigint"
                     " FROM schema_migrations ORDER BY version",
                     0, NULL, &res, err);
  if (st != TRYON_OK)
    goto out;
  int nt = PQntuples(res);
  if (nt > 0) {
    *rows = calloc((size_t)nt, sizeof **rows);
    if (*rows == NULL) {
      st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory reading schema_migrations");
      goto out;
    }
  }
  for (int i = 0; i < nt; i++) {
    applied_row *r = &(*rows)[i];
    r->version = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    snprintf(r->name, sizeof r->name, "%s", PQgetvalue(res, i, 1));
    snprintf(r->checksum, sizeof r->checksum, "%s", PQgetvalue(res, i, 2));
    r->applied_at_ms = strtoll(PQgetvalue(res, i, 3), NULL, 10);
  }
  *n = (size_t)nt;
out:
  PQclear(res);
  return st;
}

/* Builds the side-by-side report and checks the rules that make a run refuse. */
static tryon_status reconcile(const file_list *files, const applied_row *rows, size_t nrows,
                              tryon_db_migrations *rep, tryon_err *err) {
  tryon_status st = TRYON_OK;
  size_t cap = files->count + nrows;
  size_t i = 0, j = 0, k = 0;

  rep->items = cap ? calloc(cap, sizeof *rep->items) : NULL;
  if (cap && rep->items == NULL)
    return tryon_err_set(err, TRYON_E_NOMEM, "out of memory building the migration report");
  while (i < files->count || j < nrows) {
    tryon_db_migration *m = &rep->items[k++];
    if (j >= nrows || (i < files->count && files->items[i].m.version < rows[j].version)) {
      *m = files->items[i++].m;
      continue;
    }
    if (i >= files->count || rows[j].version < files->items[i].m.version) {
      m->version = rows[j].version;
      snprintf(m->name, sizeof m->name, "%s", rows[j].name);
      snprintf(m->checksum, sizeof m->checksum, "%s", rows[j].checksum);
      m->applied = true;
      m->applied_at_ms = rows[j].applied_at_ms;
      if (st == TRYON_OK)
        st = tryon_err_set(err, TRYON_E_MIGRATION,
                           "the database has migration %s which no file provides; "
                           "is this program older than the database?",
                           rows[j].name);
      j++;
      continue;
    }
    *m = files->items[i].m;
    m->applied = true;
    m->applied_at_ms = rows[j].applied_at_ms;
    if (strcmp(files->items[i].m.checksum, rows[j].checksum) != 0 && st == TRYON_OK)
      st = tryon_err_set(err, TRYON_E_MIGRATION,
                         "migration %s was changed after it was applied "
                         "(checksum differs); add a new migration instead",
                         files->items[i].m.name);
    i++;
    j++;
  }
  rep->count = k;
  return st;
}

typedef struct apply_ctx {
  const file_entry *file;
} apply_ctx;

static tryon_status apply_one(tryon_db_conn *c, void *ud, tryon_err *err) {
  const file_entry *f = ((apply_ctx *)ud)->file;
  char version[32];
  tryon_status st = tryon_db_exec_script(c, f->sql, err);
  if (st != TRYON_OK) {
    /* Name the file: the server's message alone does not say which one failed. */
    char detail[TRYON_ERR_MESSAGE_MAX];
    snprintf(detail, sizeof detail, "%s", tryon_err_message(err));
    return tryon_err_set(err, st, "migration %s failed: %s", f->m.name, detail);
  }
  snprintf(version, sizeof version, "%lld", (long long)f->m.version);
  const char *params[] = {version, f->m.name, f->m.checksum};
  return tryon_db_exec(c,
                       "INSERT INTO schema_migrations (version, name, checksum)"
                       " VALUES ($1, $2, $3)",
                       3, params, NULL, err);
}

static tryon_status run(tryon_db *db, const char *dir, bool apply, tryon_db_migrations *report,
                        tryon_err *err) {
  tryon_status st = TRYON_OK;
  tryon_db_conn *c = NULL;
  file_list files = {0};
  applied_row *rows = NULL;
  size_t nrows = 0;
  tryon_db_migrations rep = {0};
  bool locked = false;

  if (db == NULL || dir == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid argument to the migration runner");
    goto out;
  }
  st = scan_dir(dir, &files, err);
  if (st != TRYON_OK)
    goto out;
  st = tryon_db_acquire(db, &c, err);
  if (st != TRYON_OK)
    goto out;
  if (apply) {
    st = tryon_db_exec(c, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")", 0, NULL, NULL, err);
    if (st != TRYON_OK)
      goto out;
    locked = true;
    st = tryon_db_exec(c,
                       "CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version bigint PRIMARY KEY,"
                       " name text NOT NULL,"
                       " checksum text NOT NULL,"
                       " applied_at timestamptz NOT NULL DEFAULT now())",
                       0, NULL, NULL, err);
    if (st != TRYON_OK)
      goto out;
  }
  st = load_applied(c, &rows, &nrows, err);
  if (st != TRYON_OK)
    goto out;
  st = reconcile(&files, rows, nrows, &rep, err);
  if (st != TRYON_OK || !apply)
    goto out;

  for (size_t i = 0; i < rep.count; i++) {
    tryon_db_migration *m = &rep.items[i];
    if (m->applied)
      continue;
    const file_entry *f = NULL;
    for (size_t k = 0; k < files.count && f == NULL; k++) {
      if (files.items[k].m.version == m->version)
        f = &files.items[k];
    }
    apply_ctx ctx = {.file = f};
    int64_t t0 = tryon_time_monotonic_ms();
    st = tryon_db_tx(c, apply_one, &ctx, err);
    if (st != TRYON_OK)
      goto out;
    m->applied = true;
    m->applied_at_ms = tryon_clock_now_ms(NULL);
    rep.newly_applied++;
    TRYON_LOG_INFO("migration applied", TRYON_LF_STR("name", m->name),
                   TRYON_LF_INT("ms", tryon_time_monotonic_ms() - t0));
  }
out:
  if (locked) {
    /* Released explicitly (not by closing) because the connection returns to the pool. */
    tryon_err unlock_err;
    if (tryon_db_exec(c, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")", 0, NULL, NULL,
                      &unlock_err) != TRYON_OK)
      TRYON_LOG_WARN("cannot release the migration lock",
                     TRYON_LF_STR("error", tryon_err_message(&unlock_err)));
  }
  tryon_db_release(c);
  file_list_release(&files);
  free(rows);
  if (report != NULL)
    *report = rep;
  else
    tryon_db_migrations_release(&rep);
  return st;
}

tryon_status tryon_db_migrate(tryon_db *db, const char *dir, tryon_db_migrations *report,
                              tryon_err *err) {
  return run(db, dir, true, report, err);
}

tryon_status tryon_db_migration_status(tryon_db *db, const char *dir, tryon_db_migrations *report,
                                       tryon_err *err) {
  return run(db, dir, false, report, err);
}

void tryon_db_migrations_release(tryon_db_migrations *m) {
  if (m == NULL)
    return;
  free(m->items);
  memset(m, 0, sizeof *m);
}
