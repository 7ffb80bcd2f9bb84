// Test-only power-loss VFS; see include/power_loss_vfs.h.
#include "power_loss_vfs.h"
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>

typedef struct PlFile {
    sqlite3_file base;
    sqlite3_file *real;   // follows this struct in the same allocation
    char *path;           // NULL when the file is not tracked
} PlFile;

static sqlite3_vfs pl_vfs;
static sqlite3_vfs *pl_real;
static sqlite3_io_methods pl_methods;
static atomic_long pl_syncs;
static pthread_mutex_t pl_mutex = PTHREAD_MUTEX_INITIALIZER;

static char *durable_name(const char *path) {
    size_t n = strlen(path);
    char *d = malloc(n + 9);
    memcpy(d, path, n);
    memcpy(d + n, ".durable", 9);
    return d;
}

// Copies `path` to "<path>.durable" (the durable image), whole.
static void snapshot(const char *path) {
    pthread_mutex_lock(&pl_mutex);
    char *d = durable_name(path);
    char *tmp = malloc(strlen(d) + 5);
    sprintf(tmp, "%s.tmp", d);
    int in = open(path, O_RDONLY);
    if (in >= 0) {
        int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out >= 0) {
            char buf[65536];
            ssize_t n;
            while ((n = read(in, buf, sizeof buf)) > 0) {
                if (write(out, buf, (size_t)n) != n) break;
            }
            close(out);
            rename(tmp, d);
        }
        close(in);
    }
    free(tmp);
    free(d);
    pthread_mutex_unlock(&pl_mutex);
}

static void snapshot_if_missing(const char *path) {
    char *d = durable_name(path);
    int exists = access(d, F_OK) == 0;
    int source = access(path, F_OK) == 0;
    free(d);
    if (!exists && source) snapshot(path);
}

static int plClose(sqlite3_file *f) {
    PlFile *p = (PlFile *)f;
    int rc = p->real->pMethods ? p->real->pMethods->xClose(p->real) : SQLITE_OK;
    free(p->path);
    p->path = NULL;
    return rc;
}
static int plRead(sqlite3_file *f, void *b, int n, sqlite3_int64 o) { PlFile *p = (PlFile *)f; return p->real->pMethods->xRead(p->real, b, n, o); }
static int plWrite(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) { PlFile *p = (PlFile *)f; return p->real->pMethods->xWrite(p->real, b, n, o); }
static int plTruncate(sqlite3_file *f, sqlite3_int64 size) {
    PlFile *p = (PlFile *)f;
    int rc = p->real->pMethods->xTruncate(p->real, size);
    // Modelled as durable at once (a shorter image is what SQLite expects
    // after a truncating checkpoint; stale frames would fail their salt).
    if (rc == SQLITE_OK && p->path) {
        char *d = durable_name(p->path);
        if (access(d, F_OK) == 0) { if (truncate(d, size) != 0) { /* ignore */ } }
        free(d);
    }
    return rc;
}
// Syncs per file, so that tests running in parallel count only their own.
#define PL_MAX_COUNTED 1024
static struct { char *path; long count; } pl_counts[PL_MAX_COUNTED];
static int pl_counted;

static void count_sync(const char *path) {
    pthread_mutex_lock(&pl_mutex);
    int i;
    for (i = 0; i < pl_counted; i++) if (strcmp(pl_counts[i].path, path) == 0) break;
    if (i == pl_counted && pl_counted < PL_MAX_COUNTED) pl_counts[pl_counted++].path = strdup(path);
    if (i < pl_counted) pl_counts[i].count++;
    pthread_mutex_unlock(&pl_mutex);
}

long tidemark_power_loss_vfs_syncs_of(const char *path) {
    long n = 0;
    pthread_mutex_lock(&pl_mutex);
    for (int i = 0; i < pl_counted; i++) if (strcmp(pl_counts[i].path, path) == 0) n = pl_counts[i].count;
    pthread_mutex_unlock(&pl_mutex);
    return n;
}

static int plSync(sqlite3_file *f, int flags) {
    PlFile *p = (PlFile *)f;
    int rc = p->real->pMethods->xSync(p->real, flags);
    atomic_fetch_add(&pl_syncs, 1);
    if (p->path) count_sync(p->path);
    if (rc == SQLITE_OK && p->path) snapshot(p->path);
    return rc;
}
static int plFileSize(sqlite3_file *f, sqlite3_int64 *s) { PlFile *p = (PlFile *)f; return p->real->pMethods->xFileSize(p->real, s); }
static int plLock(sqlite3_file *f, int l) { PlFile *p = (PlFile *)f; return p->real->pMethods->xLock(p->real, l); }
static int plUnlock(sqlite3_file *f, int l) { PlFile *p = (PlFile *)f; return p->real->pMethods->xUnlock(p->real, l); }
static int plCheckReservedLock(sqlite3_file *f, int *r) { PlFile *p = (PlFile *)f; return p->real->pMethods->xCheckReservedLock(p->real, r); }
static int plFileControl(sqlite3_file *f, int op, void *a) { PlFile *p = (PlFile *)f; return p->real->pMethods->xFileControl(p->real, op, a); }
static int plSectorSize(sqlite3_file *f) { PlFile *p = (PlFile *)f; return p->real->pMethods->xSectorSize(p->real); }
static int plDeviceCharacteristics(sqlite3_file *f) { PlFile *p = (PlFile *)f; return p->real->pMethods->xDeviceCharacteristics(p->real); }
static int plShmMap(sqlite3_file *f, int i, int sz, int e, void volatile **pp) { PlFile *p = (PlFile *)f; return p->real->pMethods->xShmMap(p->real, i, sz, e, pp); }
static int plShmLock(sqlite3_file *f, int o, int n, int fl) { PlFile *p = (PlFile *)f; return p->real->pMethods->xShmLock(p->real, o, n, fl); }
static void plShmBarrier(sqlite3_file *f) { PlFile *p = (PlFile *)f; p->real->pMethods->xShmBarrier(p->real); }
static int plShmUnmap(sqlite3_file *f, int d) { PlFile *p = (PlFile *)f; return p->real->pMethods->xShmUnmap(p->real, d); }
static int plFetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp) { PlFile *p = (PlFile *)f; *pp = 0; (void)o; (void)n; return SQLITE_OK; }
static int plUnfetch(sqlite3_file *f, sqlite3_int64 o, void *pp) { PlFile *p = (PlFile *)f; (void)p; (void)o; (void)pp; return SQLITE_OK; }

static int plOpen(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *outFlags) {
    (void)vfs;
    PlFile *p = (PlFile *)f;
    memset(p, 0, sizeof *p);
    p->real = (sqlite3_file *)&p[1];
    int rc = pl_real->xOpen(pl_real, name, p->real, flags, outFlags);
    if (rc != SQLITE_OK) {
        p->base.pMethods = 0;
        return rc;
    }
    if (name && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL))) {
        p->path = strdup(name);
        // Content that existed before this VFS saw the file counts as durable.
        snapshot_if_missing(p->path);
    }
    p->base.pMethods = &pl_methods;
    return SQLITE_OK;
}

static int plDelete(sqlite3_vfs *vfs, const char *name, int syncDir) {
    (void)vfs;
    int rc = pl_real->xDelete(pl_real, name, syncDir);
    if (rc == SQLITE_OK) {
        char *d = durable_name(name);
        unlink(d);
        free(d);
    }
    return rc;
}
static int plAccess(sqlite3_vfs *v, const char *n, int fl, int *r) { (void)v; return pl_real->xAccess(pl_real, n, fl, r); }
static int plFullPathname(sqlite3_vfs *v, const char *n, int sz, char *out) { (void)v; return pl_real->xFullPathname(pl_real, n, sz, out); }
static void *plDlOpen(sqlite3_vfs *v, const char *n) { (void)v; return pl_real->xDlOpen(pl_real, n); }
static void plDlError(sqlite3_vfs *v, int n, char *m) { (void)v; pl_real->xDlError(pl_real, n, m); }
static void (*plDlSym(sqlite3_vfs *v, void *h, const char *s))(void) { (void)v; return pl_real->xDlSym(pl_real, h, s); }
static void plDlClose(sqlite3_vfs *v, void *h) { (void)v; pl_real->xDlClose(pl_real, h); }
static int plRandomness(sqlite3_vfs *v, int n, char *out) { (void)v; return pl_real->xRandomness(pl_real, n, out); }
static int plSleep(sqlite3_vfs *v, int us) { (void)v; return pl_real->xSleep(pl_real, us); }
static int plCurrentTime(sqlite3_vfs *v, double *t) { (void)v; return pl_real->xCurrentTime(pl_real, t); }
static int plGetLastError(sqlite3_vfs *v, int n, char *m) { (void)v; return pl_real->xGetLastError ? pl_real->xGetLastError(pl_real, n, m) : 0; }
static int plCurrentTimeInt64(sqlite3_vfs *v, sqlite3_int64 *t) { (void)v; return pl_real->xCurrentTimeInt64(pl_real, t); }

int tidemark_power_loss_vfs_register(const char *name) {
    static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&once);
    if (pl_real) { pthread_mutex_unlock(&once); return SQLITE_OK; }
    sqlite3_initialize();
    pl_real = sqlite3_vfs_find(0);
    if (!pl_real) { pthread_mutex_unlock(&once); return SQLITE_ERROR; }
    pl_methods = (sqlite3_io_methods){
        .iVersion = 3, .xClose = plClose, .xRead = plRead, .xWrite = plWrite, .xTruncate = plTruncate,
        .xSync = plSync, .xFileSize = plFileSize, .xLock = plLock, .xUnlock = plUnlock,
        .xCheckReservedLock = plCheckReservedLock, .xFileControl = plFileControl, .xSectorSize = plSectorSize,
        .xDeviceCharacteristics = plDeviceCharacteristics, .xShmMap = plShmMap, .xShmLock = plShmLock,
        .xShmBarrier = plShmBarrier, .xShmUnmap = plShmUnmap, .xFetch = plFetch, .xUnfetch = plUnfetch,
    };
    pl_vfs = (sqlite3_vfs){
        .iVersion = 2, .szOsFile = (int)sizeof(PlFile) + pl_real->szOsFile, .mxPathname = pl_real->mxPathname,
        .zName = strdup(name), .xOpen = plOpen, .xDelete = plDelete, .xAccess = plAccess,
        .xFullPathname = plFullPathname, .xDlOpen = plDlOpen, .xDlError = plDlError, .xDlSym = plDlSym,
        .xDlClose = plDlClose, .xRandomness = plRandomness, .xSleep = plSleep, .xCurrentTime = plCurrentTime,
        .xGetLastError = plGetLastError, .xCurrentTimeInt64 = plCurrentTimeInt64,
    };
    int rc = sqlite3_vfs_register(&pl_vfs, 0);
    pthread_mutex_unlock(&once);
    return rc;
}

long tidemark_power_loss_vfs_sync_count(void) { return atomic_load(&pl_syncs); }
