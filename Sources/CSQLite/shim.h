#ifndef TIDEMARK_CSQLITE_SHIM_H
#define TIDEMARK_CSQLITE_SHIM_H
// Session extension declarations (Debian's libsqlite3 is built with
// SQLITE_ENABLE_SESSION and SQLITE_ENABLE_PREUPDATE_HOOK).
#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>

// SQLITE_STATIC / SQLITE_TRANSIENT are function-pointer casts of integers that
// Swift cannot import; expose them as functions.
#include <stddef.h>
static inline sqlite3_destructor_type tidemark_sqlite_static(void) { return (sqlite3_destructor_type)0; }
static inline sqlite3_destructor_type tidemark_sqlite_transient(void) { return (sqlite3_destructor_type)-1; }
#endif
