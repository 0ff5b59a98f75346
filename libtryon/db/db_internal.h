/*
 * Internal to the db module: the leased-connection struct shared by pool.c, query.c and
 * migrate.c. Nothing outside libtryon/db includes this.
 */
#ifndef TRYON_DB_INTERNAL_H
#define TRYON_DB_INTERNAL_H

#include <stdbool.h>

#include <tryon/db.h>

struct tryon_db_conn {
  tryon_db *db;
  PGconn *pg;  /* NULL until first connected, or after a breakage closed it */
  bool in_use; /* guarded by the pool's mutex */
  bool broken; /* set by the holder when libpq reports the connection lost */
};

/* libpq messages end with a newline; returns a pointer to a static-free trimmed view
 * by writing a NUL over trailing white space in place (the message is libpq-owned and
 * rewritten by the next call anyway). */
const char *tryon__db_trim(char *msg);

#endif
