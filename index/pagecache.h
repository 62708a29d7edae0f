/*
 * pagecache.h - which pages of the store's file are in memory, and getting
 * more of it there in large reads.
 *
 * The store's map has no kernel read-ahead (MDB_NORDAHEAD: its B-tree pages
 * are random), so bytes touched through a cold map arrive one 4 KiB page
 * fault at a time.  Callers that know they will read a long stretch (a
 * chunk about to be checked, a directory about to be served) ask for it
 * first with artifs_file_fetch().
 */
#ifndef ARTIFS_PAGECACHE_H
#define ARTIFS_PAGECACHE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Is the 4 KiB page holding p in memory? */
int artifs_resident(const void *p);

/* Are the first and last pages of [p, p+len) in memory? */
int artifs_resident_range(const void *p, size_t len);

/*
 * Read [off, off+len) of the file open as fd into the page cache, the
 * bytes going to null_fd (/dev/null): sendfile() takes the ordinary read
 * path, in large requests, with no copy to user space.  Best effort.
 */
void artifs_file_fetch(int null_fd, int fd, uint64_t off, uint64_t len);

/*
 * Where this process maps the store's data file, 0 if it cannot tell.
 * LMDB does not say (mdb_env_info's me_mapaddr is only set for
 * MDB_FIXEDMAP), so it is looked up in /proc/self/maps: the mapping of
 * that inode at file offset 0.  The map moves when it grows; ask again
 * after that.
 */
uintptr_t artifs_store_map_base(const artifs_store *s);

/*
 * Make sure [p, p+len) of the store's map (a value just looked up) is in
 * memory, reading it in one request if it is not; when such reads follow
 * each other through the file (a large file read front to back, an
 * unchanged stretch of a new version compared with its stored copy), read
 * further ahead each time, doubling up to 8 MiB, as the kernel's read-ahead
 * does for an ordinary file.  Best effort; safe from several threads.  On
 * by default; artifs_store_set_fetch(s, 0) turns it off for a caller that
 * does its own (the mount).
 */
void artifs_store_fetch(artifs_store *s, const void *p, size_t len);
void artifs_store_set_fetch(artifs_store *s, int on);

/*
 * Are the len bytes at data the same as the stored value at map address p?
 * A value not in memory is read with pread() (large requests, the kernel's
 * read-ahead on that descriptor) rather than through the map.
 */
int artifs_store_same(artifs_store *s, const void *p, const void *data, size_t len);

#endif
