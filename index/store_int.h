/* store_int.h - the store's internals, shared by the files of index/ only. */
#ifndef ARTIFS_STORE_INT_H
#define ARTIFS_STORE_INT_H

#include "store.h"

struct artifs_store {
	MDB_env *env;
	char *path;
	int lock_fd;		/* -1 until artifs_store_lock() */
	int readonly;
	MDB_dbi meta;		/* "format" -> u32 version, ... */
	MDB_dbi chunks;		/* chunk id -> raw bytes */
	MDB_dbi blobs;		/* blob id -> manifest record */
	MDB_dbi trees;		/* tree id -> tree record */
	MDB_dbi labelsets;	/* labelset id -> labelset record */
	MDB_dbi commits;	/* commit id -> commit record */
	MDB_dbi repos;		/* "datasets/x" -> repo record */
	MDB_dbi refs;		/* "repo\0name" -> ref record */
	MDB_dbi reflog;		/* "repo\0name\0" be64 seq -> move record */
	MDB_dbi notes;		/* "repo\0name\0" be64 seq -> JSON */
	MDB_dbi statcache;	/* "repo\0branch\0path" -> stat record */
	unsigned map_gen;	/* bumped at every remap */
	struct artifs_fetch *fetch;	/* pagecache.c; NULL until first needed */
	int no_fetch;		/* artifs_store_set_fetch(s, 0) */
};

/* Close what artifs_store_fetch() opened (pagecache.c). */
void artifs_store_fetch_free(artifs_store *s);

/* Fetch a value by oid from `dbi`; ARTIFS_ENOTFOUND if absent. */
int artifs_store_get(MDB_txn *txn, MDB_dbi dbi, const artifs_oid *id, MDB_val *out);

/*
 * Insert an object under its id (the caller computed id from data).  If
 * the id exists, compare the bytes: equal is a dedupe hit (returns 1).
 * Different stored bytes that no longer hash to the id are damage and are
 * replaced (returns 2); different bytes that do hash to it are a real
 * collision, ARTIFS_ECOLLISION.  Returns 0 when the object was new.
 */
int artifs_store_put(MDB_txn *txn, MDB_dbi dbi, const artifs_oid *id, const void *data, size_t len);

/*
 * pthread_create() for the library's worker threads: they block SIGINT,
 * SIGTERM, SIGHUP and SIGQUIT, so a signal sent to the process reaches the
 * caller's thread (the hook runner passes them on to a running hook).
 */
#include <pthread.h>
int artifs_thread_start(pthread_t *th, void *(*fn)(void *), void *arg);

#endif
