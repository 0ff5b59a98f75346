/*
 * Internal to the db module: the leased-connection struct shared by pool.c, query.c and
 * migrate.c. Nothing outside libtryon/db includes this.
 */
#ifndef TRYON_DB_INTERNAL_H
#define TRYON_DB_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <tryon/db.h>

/* Statements prepared on one connection: their text (owned copy), its hash for a quick
 * first comparison, and the server-side name. Names come from a per-connection counter
 * that never repeats, so a forgotten statement's name is never reused. */
#define TRYON__DB_PREPARED_MAX 128

typedef struct tryon__db_prepared {
  uint64_t hash;
  char *sql;
  uint32_t name;
} tryon__db_prepared;

struct tryon_db_conn {
  tryon_db *db;
  PGconn *pg;  /* NULL until first connected, or after a breakage closed it */
  bool in_use; /* guarded by the pool's mutex */
  bool broken; /* set by the holder when libpq reports the connection lost */
  tryon__db_prepared prepared[TRYON__DB_PREPARED_MAX];
  int nprepared;
  uint32_t next_name;
};

/* Forgets the statements prepared on `c` (its session is new or was reset). */
void tryon__db_prepared_reset(tryon_db_conn *c);

/* libpq messages end with a newline; returns a pointer to a static-free trimmed view
 * by writing a NUL over trailing white space in place (the message is libpq-owned and
 * rewritten by the next call anyway). */
const char *tryon__db_trim(char *msg);

#endif
