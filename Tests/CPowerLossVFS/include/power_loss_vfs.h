#ifndef TIDEMARK_POWER_LOSS_VFS_H
#define TIDEMARK_POWER_LOSS_VFS_H
// A test-only SQLite VFS that simulates power loss: it wraps the default VFS
// and, each time SQLite syncs a database or WAL file, copies the file's
// content to "<path>.durable". A power cut is then: take the ".durable"
// copies (missing = never synced = empty), drop everything else. Tests only.

// Registers the VFS under `name` (not as the default). Returns an SQLite
// result code; registering twice is harmless.
int tidemark_power_loss_vfs_register(const char *name);

// The number of xSync calls made through the VFS since registration.
long tidemark_power_loss_vfs_sync_count(void);

// The number of xSync calls made through the VFS on the file at `path` (as
// SQLite names it: the database path, or the path with "-wal").
long tidemark_power_loss_vfs_syncs_of(const char *path);
#endif
