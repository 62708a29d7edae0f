/*
 * archio.c - archive import and export with libarchive.
 *
 * Import reads members in archive order into an in-memory tree of names
 * (a hash of full paths to nodes); file bytes go from libarchive's buffer
 * into the writer's chunker as they are read.  Once every member is read,
 * the trees are encoded bottom-up exactly as a directory walk would encode
 * them, so an archive and its extracted directory have the same ids.
 */
#include "archio.h"
#include "blob.h"
#include "codec.h"
#include "commit.h"
#include "error.h"
#include "store_int.h"
#include "tree.h"
#include "writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#define PATH_LIMIT 4096			/* bytes of a member's path */
#define LABELS_MEMBER ".labels.jsonl"
#define LABELS_MEMBER_MAX ((size_t)2 << 30)

struct anode {
	struct anode *hnext;		/* hash chain, by full path */
	struct anode *parent;
	struct anode **kids;
	size_t nkids, capkids;
	char *path;			/* full path; "" for the root */
	const char *name;		/* last component, inside path */
	uint64_t hash;
	uint64_t size;
	artifs_oid id;
	uint8_t type;			/* ARTIFS_T_* */
	uint8_t flags;
	uint8_t member;			/* named by a member of its own (not only implied) */
	struct anode *lhead, *lnext;	/* hard-link group: its first member, the next one */
	char *target;			/* symlinks: the target, to check chains at the end */
};

struct imp {
	artifs_store *s;
	artifs_writer *w;
	const char *path;
	unsigned int strip;
	artifs_label_edits *labels;
	artifs_snapshot_stats *st;
	const artifs_snapshot_opts *o;
	struct anode root;
	struct anode **table;
	size_t nbuckets, nnodes;
	artifs_buf norm;		/* scratch for normalised paths */
	struct anode **links;		/* every symlink, checked once all are known */
	size_t nlinks, caplinks;
	char *labels_source;		/* "ARCHIVE:.labels.jsonl" for messages */
};

/*
 * libarchive converts names through the locale: in the C locale a UTF-8
 * name in a pax, zip or 7z archive cannot be converted and the member is
 * refused.  Archives are read and written under C.UTF-8 for this thread
 * only, whatever the process's locale.
 */
static locale_t utf8_enter(locale_t *old)
{
	locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);

	*old = l ? uselocale(l) : (locale_t)0;
	return l;
}

static void utf8_leave(locale_t l, locale_t old)
{
	if (l) {
		uselocale(old);
		freelocale(l);
	}
}

/* ---- the name tree ---- */

static uint64_t path_hash(const char *p, size_t n)
{
	return XXH3_64bits(p, n);
}

static struct anode *find(struct imp *m, const char *p, size_t n)
{
	uint64_t h;

	if (n == 0)
		return &m->root;
	h = path_hash(p, n);
	for (struct anode *x = m->table[h & (m->nbuckets - 1)]; x; x = x->hnext)
		if (x->hash == h && !strncmp(x->path, p, n) && x->path[n] == '\0')
			return x;
	return NULL;
}

static int grow_table(struct imp *m)
{
	size_t nb = m->nbuckets * 2;
	struct anode **t = calloc(nb, sizeof(*t));

	if (!t)
		return artifs_error(-ENOMEM, "out of memory");
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct anode *x = m->table[i], *next; x; x = next) {
			next = x->hnext;
			x->hnext = t[x->hash & (nb - 1)];
			t[x->hash & (nb - 1)] = x;
		}
	free(m->table);
	m->table = t;
	m->nbuckets = nb;
	return 0;
}

static int add_kid(struct anode *d, struct anode *k)
{
	if (d->nkids == d->capkids) {
		size_t cap = d->capkids ? d->capkids * 2 : 8;
		void *p = realloc(d->kids, cap * sizeof(*d->kids));
		if (!p)
			return artifs_error(-ENOMEM, "out of memory");
		d->kids = p;
		d->capkids = cap;
	}
	d->kids[d->nkids++] = k;
	return 0;
}

/* Node for p[0..n) (its parent must exist); created with `type` when new. */
static int get_node(struct imp *m, const char *p, size_t n, struct anode *parent, uint8_t type,
	struct anode **out)
{
	struct anode *x = find(m, p, n);
	const char *slash;
	int rc;

	if (x) {
		*out = x;
		return 0;
	}
	if (m->nnodes + 1 > m->nbuckets && (rc = grow_table(m)))
		return rc;
	if (!(x = calloc(1, sizeof(*x))) || !(x->path = strndup(p, n))) {
		free(x);
		return artifs_error(-ENOMEM, "out of memory");
	}
	slash = strrchr(x->path, '/');
	x->name = slash ? slash + 1 : x->path;
	x->hash = path_hash(p, n);
	x->type = type;
	x->parent = parent;
	if ((rc = add_kid(parent, x))) {
		free(x->path);
		free(x);
		return rc;
	}
	x->hnext = m->table[x->hash & (m->nbuckets - 1)];
	m->table[x->hash & (m->nbuckets - 1)] = x;
	m->nnodes++;
	*out = x;
	return 0;
}

static void free_node(struct anode *x)
{
	for (size_t i = 0; i < x->nkids; i++) {
		free_node(x->kids[i]);
		free(x->kids[i]);
	}
	free(x->kids);
	free(x->target);
	if (x->path && *x->path)
		free(x->path);
}

/*
 * Normalise a member path into m->norm (NUL-terminated): "." and empty
 * components dropped, `strip` leading components removed.  Returns 1 if
 * the member is to be skipped (nothing left after stripping), 0 if kept.
 */
static int normalise(struct imp *m, const char *member, const char *raw, int *skip)
{
	size_t i = 0, len = strlen(raw), comps = 0;

	*skip = 0;
	m->norm.len = 0;
	if (raw[0] == '/')
		return artifs_error(ARTIFS_EINVAL, "%s: member '%s' has an absolute path; refusing the archive",
			m->path, member);
	if (len > PATH_LIMIT)
		return artifs_error(ARTIFS_EINVAL, "%s: member '%.80s...' has a path of %zu bytes (limit %d)",
			m->path, raw, len, PATH_LIMIT);
	while (i < len) {
		size_t j = i;
		while (j < len && raw[j] != '/')
			j++;
		if (j - i == 2 && raw[i] == '.' && raw[i + 1] == '.')
			return artifs_error(ARTIFS_EINVAL,
				"%s: member '%s' has a '..' component; refusing the archive", m->path, member);
		if (j > i && !(j - i == 1 && raw[i] == '.')) {
			if (comps++ >= m->strip) {
				if (j - i > ARTIFS_NAME_MAX)
					return artifs_error(ARTIFS_EINVAL,
						"%s: member '%.300s' has a name of %zu bytes (limit %d)", m->path,
						member, j - i, ARTIFS_NAME_MAX);
				if (m->norm.len && artifs_buf_put(&m->norm, "/", 1))
					return -ENOMEM;
				if (artifs_buf_put(&m->norm, raw + i, j - i))
					return -ENOMEM;
			}
		}
		i = j + 1;
	}
	if (artifs_buf_put(&m->norm, "", 1))
		return -ENOMEM;
	m->norm.len--;
	if (comps <= m->strip && m->strip)
		*skip = 1;
	return 0;
}

/* Make every directory above path p (m->norm) exist; *parent gets the last. */
static int parents(struct imp *m, const char *member, const char *p, size_t n, struct anode **parent)
{
	struct anode *d = &m->root;
	size_t i = 0;
	int rc;

	for (;;) {
		const char *slash = memchr(p + i, '/', n - i);
		struct anode *x;
		if (!slash)
			break;
		if ((rc = get_node(m, p, (size_t)(slash - p), d, ARTIFS_T_DIR, &x)))
			return rc;
		if (x->type != ARTIFS_T_DIR)
			return artifs_error(ARTIFS_EINVAL, "%s: member '%s' is inside '%s', which is not a directory",
				m->path, member, x->path);
		d = x;
		i = (size_t)(slash - p) + 1;
	}
	*parent = d;
	return 0;
}

/* A symlink target must stay inside the tree: relative, never above the root. */
static int link_ok(const char *link_path, const char *target)
{
	long depth = 0;
	const char *p;

	if (target[0] == '/' || target[0] == '\0')
		return 0;
	for (p = link_path; *p; p++)
		if (*p == '/')
			depth++;
	/* depth: directories above the link inside the tree */
	for (p = target; *p;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (--depth < 0)
				return 0;
		} else if (n && !(n == 1 && p[0] == '.')) {
			depth++;
		}
		p += n + (e ? 1 : 0);
	}
	return 1;
}

static int arch_fail(struct imp *m, struct archive *a, const char *member)
{
	const char *e = archive_error_string(a);
	int en = archive_errno(a);

	if (member)
		return artifs_error(en == ENOMEM ? -ENOMEM : ARTIFS_EINVAL, "%s: member '%s': %s", m->path,
			member, e ? e : "unreadable");
	return artifs_error(en == ENOMEM ? -ENOMEM : ARTIFS_EINVAL, "%s: %s", m->path,
		e ? e : "not a readable archive");
}

/* Stream one member's bytes into the writer as a file. */
static int read_data(struct imp *m, struct archive *a, struct archive_entry *e, const char *member,
	artifs_oid *blob, uint64_t *size)
{
	int rc;

	if ((rc = artifs_writer_file_begin(m->w)))
		return rc;
	for (;;) {
		uint8_t *buf;
		size_t avail;
		la_ssize_t n;
		if ((rc = artifs_writer_file_buf(m->w, &buf, &avail)))
			goto abort;
		n = archive_read_data(a, buf, avail);
		if (n < 0) {
			rc = arch_fail(m, a, member);
			goto abort;
		}
		if (n == 0)
			break;
		artifs_writer_file_fill(m->w, (size_t)n);
		m->st->bytes_read += (uint64_t)n;
		if (m->o->progress && m->st->bytes_read % (16u << 20) < (uint64_t)n) {
			artifs_progress pr = { m->st->files, m->st->bytes_read, m->st->bytes_read, 0, 0 };
			m->o->progress(&pr, m->o->ctx);
		}
	}
	if ((rc = artifs_writer_file_end(m->w, blob, size)))
		return rc;
	if (archive_entry_size_is_set(e) && (int64_t)*size != archive_entry_size(e))
		return artifs_error(ARTIFS_EINVAL, "%s: member '%s' holds %llu bytes but claims %lld",
			m->path, member, (unsigned long long)*size, (long long)archive_entry_size(e));
	return 0;
abort:
	artifs_writer_file_abort(m->w);
	return rc;
}

/* The .labels.jsonl member: parsed as labels, not stored. */
static int read_labels(struct imp *m, struct archive *a)
{
	artifs_buf b = { 0 };
	FILE *f;
	int rc = 0;

	for (;;) {
		la_ssize_t n;
		if ((rc = artifs_buf_grow(&b, 1 << 20)))
			goto done;
		n = archive_read_data(a, b.ptr + b.len, b.cap - b.len);
		if (n < 0) {
			rc = arch_fail(m, a, LABELS_MEMBER);
			goto done;
		}
		if (n == 0)
			break;
		b.len += (size_t)n;
		if (b.len > LABELS_MEMBER_MAX) {
			rc = artifs_error(ARTIFS_EINVAL, "%s: member '%s' is larger than 2 GiB", m->path,
				LABELS_MEMBER);
			goto done;
		}
	}
	if (!b.len)
		goto done;
	if (!(f = fmemopen(b.ptr, b.len, "r"))) {
		rc = artifs_error(-errno, "cannot read labels: %s", strerror(errno));
		goto done;
	}
	if (!m->labels->source) {
		/* name the member when its labels are refused later */
		if (asprintf(&m->labels_source, "%s: member %s", m->path, LABELS_MEMBER) < 0)
			m->labels_source = NULL;
		m->labels->source = m->labels_source;
	}
	rc = artifs_label_file_parse(m->labels, m->labels_source ? m->labels_source : LABELS_MEMBER, f,
		ARTIFS_LABELS_JSONL);
	fclose(f);
done:
	artifs_buf_release(&b);
	return rc;
}

/*
 * Names as UTF-8 where the archive says what they are (zip, 7z, pax),
 * else the raw bytes: the process locale must not decide.
 */
static const char *entry_path(struct archive_entry *e)
{
	const char *p = archive_entry_pathname_utf8(e);

	return p ? p : archive_entry_pathname(e);
}

static const char *entry_hardlink(struct archive_entry *e)
{
	const char *p = archive_entry_hardlink_utf8(e);

	return p ? p : archive_entry_hardlink(e);
}

static const char *entry_symlink(struct archive_entry *e)
{
	const char *p = archive_entry_symlink_utf8(e);

	return p ? p : archive_entry_symlink(e);
}

static int one_member(struct imp *m, struct archive *a, struct archive_entry *e)
{
	const char *raw = entry_path(e), *hl = entry_hardlink(e);
	mode_t type = archive_entry_filetype(e);
	struct anode *dir = NULL, *x = NULL;
	char *member = NULL, *path = NULL;
	int skip, rc;

	if (!raw)
		return artifs_error(ARTIFS_EINVAL, "%s: a member has no name", m->path);
	if (!(member = strdup(raw)))
		return artifs_error(-ENOMEM, "out of memory");
	if ((rc = normalise(m, member, raw, &skip)) || skip)
		goto done;
	if (!(path = strdup((const char *)m->norm.ptr))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	if (!*path) {
		/* "./" itself */
		rc = type == AE_IFDIR ? 0 : artifs_error(ARTIFS_EINVAL,
			"%s: member '%s' names the top of the tree but is not a directory", m->path, member);
		goto done;
	}
	if (!strcmp(path, LABELS_MEMBER) && !hl && type == AE_IFREG) {
		rc = m->labels ? read_labels(m, a) : 0;
		goto done;
	}
	if ((rc = parents(m, member, path, strlen(path), &dir)))
		goto done;
	if ((x = find(m, path, strlen(path)))) {
		if (x->member || x->type != ARTIFS_T_DIR || (type != AE_IFDIR && !hl) || hl) {
			rc = artifs_error(ARTIFS_EINVAL, "%s: member '%s' appears twice in the archive (as '%s')",
				m->path, member, path);
			goto done;
		}
		/* an explicit entry for a directory already implied */
		x->member = 1;
		goto done;
	}
	if (hl) {
		struct anode *t;
		int s2;
		char *target;
		if ((rc = normalise(m, member, hl, &s2)))
			goto done;
		target = (char *)m->norm.ptr;
		if (s2 || !(t = find(m, target, strlen(target))) || t->type != ARTIFS_T_FILE) {
			rc = artifs_error(ARTIFS_EINVAL, "%s: member '%s' is a hard link to '%s', which is not an "
				"earlier regular file of the archive", m->path, member, hl);
			goto done;
		}
		if ((rc = get_node(m, path, strlen(path), dir, ARTIFS_T_FILE, &x)))
			goto done;
		/* one group per inode: x joins t's */
		x->lhead = t->lhead ? t->lhead : t;
		x->lnext = x->lhead->lnext;
		x->lhead->lnext = x;
		x->id = t->id;
		x->size = t->size;
		x->flags = t->flags;
		m->st->files++;
		m->st->bytes += x->size;
		if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0) {
			/*
			 * newc cpio stores a file's data with its last link: the
			 * data belongs to every member of the group.
			 */
			artifs_oid blob;
			uint64_t size;
			if ((rc = read_data(m, a, e, member, &blob, &size)))
				goto done;
			for (struct anode *y = x->lhead; y; y = y->lnext) {
				m->st->bytes += size - y->size;
				y->id = blob;
				y->size = size;
			}
		}
	} else if (type == AE_IFREG) {
		artifs_oid blob;
		uint64_t size;
		if ((rc = read_data(m, a, e, member, &blob, &size)) ||
		    (rc = get_node(m, path, strlen(path), dir, ARTIFS_T_FILE, &x)))
			goto done;
		x->id = blob;
		x->size = size;
		x->flags = (archive_entry_perm(e) & 0111) ? ARTIFS_F_EXEC : 0;
		m->st->files++;
		m->st->bytes += size;
	} else if (type == AE_IFDIR) {
		if ((rc = get_node(m, path, strlen(path), dir, ARTIFS_T_DIR, &x)))
			goto done;
	} else if (type == AE_IFLNK) {
		const char *target = entry_symlink(e);
		artifs_oid blob;
		uint64_t size;
		if (!target || !link_ok(path, target)) {
			rc = artifs_error(ARTIFS_EINVAL, "%s: member '%s' is a symbolic link to '%s', outside the "
				"archive's tree; refusing the archive", m->path, member, target ? target : "");
			goto done;
		}
		if (strlen(target) > PATH_LIMIT) {
			rc = artifs_error(ARTIFS_EINVAL, "%s: member '%s': link target too long", m->path, member);
			goto done;
		}
		if ((rc = artifs_writer_file_begin(m->w)) ||
		    (rc = artifs_writer_file_write(m->w, target, strlen(target))) ||
		    (rc = artifs_writer_file_end(m->w, &blob, &size)) ||
		    (rc = get_node(m, path, strlen(path), dir, ARTIFS_T_LINK, &x)))
			goto done;
		x->id = blob;
		x->size = size;
		if (!(x->target = strdup(target))) {
			rc = artifs_error(-ENOMEM, "out of memory");
			goto done;
		}
		if (m->nlinks == m->caplinks) {
			size_t cap = m->caplinks ? m->caplinks * 2 : 64;
			void *p = realloc(m->links, cap * sizeof(*m->links));
			if (!p) {
				rc = artifs_error(-ENOMEM, "out of memory");
				goto done;
			}
			m->links = p;
			m->caplinks = cap;
		}
		m->links[m->nlinks++] = x;
		m->st->links++;
	} else {
		rc = artifs_error(ARTIFS_EINVAL, "%s: member '%s' is a %s; archives may hold files, directories "
			"and symbolic links only", m->path, member,
			type == AE_IFCHR ? "character device" : type == AE_IFBLK ? "block device" :
			type == AE_IFIFO ? "FIFO" : type == AE_IFSOCK ? "socket" : "special file");
		goto done;
	}
	x->member = 1;
done:
	free(member);
	free(path);
	return rc;
}

/* Encode directory x bottom-up; prev: the head's tree here, for labels. */
static int encode(struct imp *m, struct anode *x, const artifs_oid *prev, artifs_oid *out,
	uint64_t *bytes)
{
	artifs_prevdir pd = { 0 };
	artifs_tree_builder tb;
	artifs_buf rec = { 0 };
	int rc = 0;

	artifs_tree_builder_init(&tb);
	*bytes = 0;
	if (prev && (rc = artifs_prevdir_load(&pd, m->s, artifs_writer_rtxn(m->w), prev)))
		goto done;
	for (size_t i = 0; i < x->nkids && !rc; i++) {
		struct anode *k = x->kids[i];
		const artifs_prev_ent *pe = prev ? artifs_prevdir_find(&pd, k->name) : NULL;
		artifs_oid sub;
		uint64_t subbytes;
		switch (k->type) {
		case ARTIFS_T_DIR:
			if (!(rc = encode(m, k, pe && pe->type == ARTIFS_T_DIR ? &pe->id : NULL, &sub,
					&subbytes))) {
				m->st->dirs++;
				*bytes += subbytes;
				rc = artifs_tree_builder_add(&tb, k->name, strlen(k->name), ARTIFS_T_DIR, 0,
					subbytes, &sub, NULL);
			}
			break;
		case ARTIFS_T_FILE:
			if (pe && pe->type == ARTIFS_T_FILE)
				m->st->labelled++;
			*bytes += k->size;
			rc = artifs_tree_builder_add(&tb, k->name, strlen(k->name), ARTIFS_T_FILE, k->flags,
				k->size, &k->id, pe && pe->type == ARTIFS_T_FILE ? &pe->labels : NULL);
			break;
		default:
			rc = artifs_tree_builder_add(&tb, k->name, strlen(k->name), ARTIFS_T_LINK, 0,
				k->size, &k->id, NULL);
			break;
		}
	}
	if (!rc && !(rc = artifs_tree_builder_encode(&tb, &rec)))
		rc = artifs_writer_put_tree(m->w, out, rec.ptr, rec.len);
done:
	artifs_prevdir_release(&pd);
	artifs_tree_builder_release(&tb);
	artifs_buf_release(&rec);
	return rc;
}

/*
 * Does symlink x, followed through the other links of the archive, stay
 * inside the tree?  Lexical per component, as the kernel would walk it:
 * ".." above the root escapes; a component that is itself a link is
 * resolved from where it sits (at most 40 links deep, as Linux).
 */
static int resolve(struct imp *m, artifs_buf *cur, const char *target, int budget)
{
	const char *p = target;

	if (target[0] == '/')
		return 0;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			char *slash;
			if (!cur->len)
				return 0;	/* above the root */
			cur->ptr[cur->len] = '\0';
			slash = strrchr((char *)cur->ptr, '/');
			cur->len = slash ? (size_t)(slash - (char *)cur->ptr) : 0;
		} else if (n && !(n == 1 && p[0] == '.')) {
			size_t old = cur->len;
			struct anode *x;
			if ((old && artifs_buf_put(cur, "/", 1)) || artifs_buf_put(cur, p, n) ||
			    artifs_buf_grow(cur, 1))
				return -1;
			x = find(m, (const char *)cur->ptr, cur->len);
			if (x && x->type == ARTIFS_T_LINK && x->target) {
				int r;
				if (budget <= 0)
					return 1;	/* a loop: ELOOP for readers, not an escape */
				cur->len = old;	/* a link resolves from its directory */
				if ((r = resolve(m, cur, x->target, budget - 1)) != 1)
					return r;
			}
		}
		p += n + (e ? 1 : 0);
	}
	return 1;
}

static int check_links(struct imp *m)
{
	artifs_buf cur = { 0 };
	int rc = 0;

	for (size_t i = 0; i < m->nlinks && !rc; i++) {
		struct anode *x = m->links[i];
		const char *slash = strrchr(x->path, '/');
		int r;
		cur.len = 0;
		if (slash && artifs_buf_put(&cur, x->path, (size_t)(slash - x->path)))
			return -ENOMEM;
		if (artifs_buf_grow(&cur, 1))
			return -ENOMEM;
		if ((r = resolve(m, &cur, x->target, 40)) < 0)
			rc = artifs_error(-ENOMEM, "out of memory");
		else if (r == 0)
			rc = artifs_error(ARTIFS_EINVAL, "%s: member '%s' is a symbolic link to '%s', which "
				"leads outside the archive's tree through other links; refusing the archive",
				m->path, x->path, x->target);
	}
	artifs_buf_release(&cur);
	return rc;
}

/*
 * Standard input that cannot seek, read through a peek at its first bytes:
 * zip and 7z keep their index at the end, which a pipe cannot reach
 * (libarchive would read a zip without its modes and links), so those are
 * spooled to an unnamed temporary file first.
 */
struct pipein {
	int fd;
	int spool;		/* zip or 7z from a pipe: spooled here, or -1 */
	uint8_t peek[8];
	size_t npeek, given;
	uint8_t buf[1 << 16];
};

static la_ssize_t pipe_read(struct archive *a, void *ud, const void **out)
{
	struct pipein *p = ud;
	ssize_t n;

	if (p->given < p->npeek) {
		*out = p->peek + p->given;
		n = (ssize_t)(p->npeek - p->given);
		p->given = p->npeek;
		return n;
	}
	do
		n = read(p->fd, p->buf, sizeof(p->buf));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		archive_set_error(a, errno, "cannot read standard input: %s", strerror(errno));
	*out = p->buf;
	return n;
}

static int open_input(struct imp *m, struct archive *a, struct pipein *pin)
{
	struct stat st;

	if (strcmp(m->path, "-"))
		return archive_read_open_filename(a, m->path, 1 << 20) == ARCHIVE_OK ? 0 : arch_fail(m, a, NULL);
	if (fstat(0, &st) == 0 && S_ISREG(st.st_mode))	/* "< file": seekable */
		return archive_read_open_fd(a, 0, 1 << 20) == ARCHIVE_OK ? 0 : arch_fail(m, a, NULL);
	pin->fd = 0;
	pin->spool = -1;
	while (pin->npeek < sizeof(pin->peek)) {
		ssize_t n = read(0, pin->peek + pin->npeek, sizeof(pin->peek) - pin->npeek);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return artifs_error(-errno, "cannot read standard input: %s", strerror(errno));
		if (n == 0)
			break;
		pin->npeek += (size_t)n;
	}
	if ((pin->npeek >= 4 && !memcmp(pin->peek, "PK\x03\x04", 4)) ||
	    (pin->npeek >= 6 && !memcmp(pin->peek, "7z\xbc\xaf\x27\x1c", 6))) {
		/*
		 * Spool it to an unnamed file next to the store (gone when
		 * closed) and read that: the archive's bytes, not extracted.
		 */
		int fd = open(artifs_store_path(m->s), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		const void *buf;
		ssize_t n;
		if (fd < 0)
			return artifs_error(-errno, "cannot make a temporary file for the %s archive on "
				"stdin: %s", pin->peek[0] == 'P' ? "zip" : "7z", strerror(errno));
		pin->spool = fd;
		while ((n = pipe_read(a, pin, &buf)) > 0) {
			const uint8_t *q = buf;
			while (n > 0) {
				ssize_t w = write(fd, q, (size_t)n);
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					return artifs_error(-errno, "cannot spool the archive on stdin: %s",
						strerror(errno));
				q += w;
				n -= w;
			}
		}
		if (n < 0)
			return arch_fail(m, a, NULL);
		if (lseek(fd, 0, SEEK_SET) < 0)
			return artifs_error(-errno, "cannot spool the archive on stdin: %s", strerror(errno));
		return archive_read_open_fd(a, fd, 1 << 20) == ARCHIVE_OK ? 0 : arch_fail(m, a, NULL);
	}
	return archive_read_open(a, pin, NULL, pipe_read, NULL) == ARCHIVE_OK ? 0 : arch_fail(m, a, NULL);
}

static int build(artifs_writer *w, const artifs_oid *prev, artifs_oid *root, artifs_snapshot_stats *st,
	void *ctx)
{
	struct imp *m = ctx;
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	struct pipein *pin = NULL;
	uint64_t bytes, members = 0;
	int rc = 0, r;

	m->w = w;
	m->st = st;
	if (!a || !(pin = calloc(1, sizeof(*pin)))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	if ((rc = open_input(m, a, pin)))
		goto done;
	while ((r = archive_read_next_header(a, &e)) != ARCHIVE_EOF) {
		/* a warning here is damage or a guess (mtree from text): refuse both */
		if (r != ARCHIVE_OK) {
			rc = arch_fail(m, a, r == ARCHIVE_WARN ? entry_path(e) : NULL);
			goto done;
		}
		if (members++ == 0 &&
		    (archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_MTREE) {
			rc = artifs_error(ARTIFS_EINVAL, "%s: an mtree description, not an archive", m->path);
			goto done;
		}
		if ((rc = one_member(m, a, e)))
			goto done;
	}
	if (!members) {
		rc = artifs_error(ARTIFS_EINVAL, "%s: empty, or not an archive (no members); nothing "
			"committed", m->path);
		goto done;
	}
	if ((rc = check_links(m)) || (rc = encode(m, &m->root, prev, root, &bytes)))
		goto done;
	if (archive_read_close(a) != ARCHIVE_OK)
		rc = arch_fail(m, a, NULL);
done:
	if (a)
		archive_read_free(a);
	if (pin && pin->spool > 0)
		close(pin->spool);
	free(pin);
	return rc;
}

int artifs_archive_commit(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	const char *path, unsigned int strip, const artifs_snapshot_opts *o,
	artifs_snapshot_stats *stats)
{
	struct imp m;
	artifs_tree_source src = { build, &m };
	locale_t loc, old;
	int rc;

	memset(&m, 0, sizeof(m));
	m.s = s;
	m.path = path;
	m.strip = strip;
	m.labels = o->labels;
	m.o = o;
	m.root.type = ARTIFS_T_DIR;
	m.root.path = (char *)"";	/* never freed: free_node skips "" */
	m.root.name = "";
	m.nbuckets = 1024;
	if (!(m.table = calloc(m.nbuckets, sizeof(*m.table))))
		return artifs_error(-ENOMEM, "out of memory");
	loc = utf8_enter(&old);
	rc = artifs_snapshot_source(out, s, repo, branch, &src, o, stats);
	utf8_leave(loc, old);
	if (m.labels && m.labels->source == m.labels_source)
		m.labels->source = NULL;
	free(m.labels_source);
	free(m.links);
	free_node(&m.root);
	free(m.table);
	artifs_buf_release(&m.norm);
	return rc;
}

/* ---- export ---- */

struct exp {
	artifs_store *s;
	int fd;			/* the output, for a full disk's message */
	MDB_txn *txn;
	struct archive *a;
	struct archive_entry *e;
	int64_t mtime;
	artifs_buf path;
	artifs_export_stats *st;
};

static int wr_fail(struct exp *x, const char *what)
{
	const char *e = archive_error_string(x->a);
	int en = archive_errno(x->a);
	struct statvfs vfs;

	/* libarchive may lose the errno of a failed write: look at the disk */
	if (en == ENOSPC || (x->fd >= 0 && fstatvfs(x->fd, &vfs) == 0 &&
			(uint64_t)vfs.f_bavail * vfs.f_frsize < ((uint64_t)1 << 20)))
		return artifs_error(-ENOSPC, "no space left on device writing the archive (at %s)", what);

	return artifs_error(en > 0 ? -en : -EIO, "cannot write %s: %s", what, e ? e : "write failed");
}

static void entry_init(struct exp *x, const char *path, mode_t type, int perm, uint64_t size)
{
	archive_entry_clear(x->e);
	/* UTF-8 names as UTF-8 whatever the locale; other bytes as they are */
	if (artifs_utf8_valid(path, strlen(path)))
		archive_entry_update_pathname_utf8(x->e, path);
	else
		archive_entry_copy_pathname(x->e, path);
	archive_entry_set_filetype(x->e, type);
	archive_entry_set_perm(x->e, perm);
	archive_entry_set_size(x->e, (la_int64_t)size);
	archive_entry_set_uid(x->e, 0);
	archive_entry_set_gid(x->e, 0);
	archive_entry_set_uname(x->e, "root");
	archive_entry_set_gname(x->e, "root");
	archive_entry_set_mtime(x->e, (time_t)x->mtime, 0);
}

/* A blob's bytes, each chunk verified, into the archive. */
static int put_blob(struct exp *x, const artifs_oid *id, const char *what)
{
	artifs_blob_view b;
	int rc;

	if ((rc = artifs_blob_load(&b, x->s, x->txn, id)))
		return rc;
	for (uint32_t i = 0; i < b.nchunks; i++) {
		const uint8_t *data;
		size_t len;
		if ((rc = artifs_blob_chunk(&data, &len, x->s, x->txn, &b, i, 1)))
			return rc;
		if (archive_write_data(x->a, data, len) != (la_ssize_t)len)
			return wr_fail(x, what);
		x->st->bytes += len;
	}
	return 0;
}

static int put_link(struct exp *x, const char *path, const artifs_oid *id, uint64_t size)
{
	artifs_blob_view b;
	artifs_buf t = { 0 };
	int rc;

	if ((rc = artifs_blob_load(&b, x->s, x->txn, id)))
		return rc;
	for (uint32_t i = 0; i < b.nchunks && !rc; i++) {
		const uint8_t *data;
		size_t len;
		if (!(rc = artifs_blob_chunk(&data, &len, x->s, x->txn, &b, i, 1)))
			rc = artifs_buf_put(&t, data, len);
	}
	if (!rc && !(rc = artifs_buf_put(&t, "", 1))) {
		entry_init(x, path, AE_IFLNK, 0777, 0);
		if (artifs_utf8_valid((const char *)t.ptr, t.len - 1))
			archive_entry_update_symlink_utf8(x->e, (const char *)t.ptr);
		else
			archive_entry_copy_symlink(x->e, (const char *)t.ptr);
		if (archive_write_header(x->a, x->e) != ARCHIVE_OK)
			rc = wr_fail(x, path);
		x->st->links++;
	}
	(void)size;
	artifs_buf_release(&t);
	return rc;
}

static int export_dir(struct exp *x, const artifs_oid *tree, int top_labels)
{
	artifs_tree_view t;
	int rc;

	if ((rc = artifs_tree_load(&t, x->s, x->txn, tree)))
		return rc;
	for (uint32_t i = 0; i < t.count; i++) {
		artifs_tree_entry en;
		size_t old = x->path.len;
		const char *p;
		if ((rc = artifs_tree_entry_at(&t, i, &en)))
			return rc;
		/* the generated manifest went first; a file of that name would repeat it */
		if (top_labels && en.name_len == sizeof(LABELS_MEMBER) - 1 &&
		    !memcmp(en.name, LABELS_MEMBER, en.name_len))
			continue;
		if (old)
			artifs_buf_put(&x->path, "/", 1);
		artifs_buf_put(&x->path, en.name, en.name_len);
		if ((rc = artifs_buf_put(&x->path, "", 1)))
			return rc;
		x->path.len--;
		p = (const char *)x->path.ptr;
		if (en.type == ARTIFS_T_DIR) {
			entry_init(x, p, AE_IFDIR, 0755, 0);
			if (archive_write_header(x->a, x->e) != ARCHIVE_OK)
				return wr_fail(x, p);
			x->st->dirs++;
			rc = export_dir(x, &en.id, 0);
		} else if (en.type == ARTIFS_T_LINK) {
			rc = put_link(x, p, &en.id, en.size);
		} else {
			entry_init(x, p, AE_IFREG, (en.flags & ARTIFS_F_EXEC) ? 0755 : 0644, en.size);
			if (archive_write_header(x->a, x->e) != ARCHIVE_OK)
				return wr_fail(x, p);
			x->st->files++;
			rc = put_blob(x, &en.id, p);
		}
		x->path.len = old;
		if (rc)
			return rc;
	}
	return 0;
}

int artifs_archive_export(artifs_store *s, const artifs_oid *commit, const char *path, int fd,
	enum artifs_archive_format fmt, artifs_export_stats *stats)
{
	artifs_export_stats local = { 0 };
	struct exp x = { 0 };
	artifs_commit *c = NULL;
	artifs_tree_entry root;
	locale_t loc, old;
	int rc = 0;

	loc = utf8_enter(&old);
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	x.s = s;
	x.fd = fd;
	x.st = stats;
	if ((rc = artifs_rtxn_begin(s, &x.txn)) || (rc = artifs_commit_load(&c, s, x.txn, commit)) ||
	    (rc = artifs_tree_resolve(&root, s, x.txn, &c->tree, path)))
		goto done;
	if (root.type != ARTIFS_T_DIR) {
		rc = artifs_error(ARTIFS_EINVAL, "'%s' is not a directory; export takes a directory", path);
		goto done;
	}
	x.mtime = c->time;
	if (!(x.a = archive_write_new()) || !(x.e = archive_entry_new())) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	switch (fmt) {
	case ARTIFS_ARCHIVE_ZIP:
		rc = archive_write_set_format_zip(x.a);
		break;
	default:
		/* pax headers only where ustar cannot say it (long or non-ASCII names) */
		rc = archive_write_set_format_pax_restricted(x.a);
		if (rc == ARCHIVE_OK && fmt == ARTIFS_ARCHIVE_TGZ) {
			rc = archive_write_add_filter_gzip(x.a);
			/* no time in the gzip header: the same version, the same bytes */
			if (rc == ARCHIVE_OK)
				rc = archive_write_set_filter_option(x.a, "gzip", "timestamp", NULL);
		} else if (rc == ARCHIVE_OK && fmt == ARTIFS_ARCHIVE_TZST) {
			rc = archive_write_add_filter_zstd(x.a);
		}
		break;
	}
	if (rc != ARCHIVE_OK || archive_write_set_bytes_in_last_block(x.a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(x.a, fd) != ARCHIVE_OK) {
		rc = wr_fail(&x, "archive");
		goto done;
	}
	rc = 0;
	if (!*path && !artifs_oid_is_zero(&c->labels)) {
		artifs_blob_view b;
		if ((rc = artifs_blob_load(&b, s, x.txn, &c->labels)))
			goto done;
		entry_init(&x, LABELS_MEMBER, AE_IFREG, 0644, b.size);
		if (archive_write_header(x.a, x.e) != ARCHIVE_OK) {
			rc = wr_fail(&x, LABELS_MEMBER);
			goto done;
		}
		if ((rc = put_blob(&x, &c->labels, LABELS_MEMBER)))
			goto done;
	}
	if ((rc = export_dir(&x, &root.id, !*path && !artifs_oid_is_zero(&c->labels))))
		goto done;
	if (archive_write_close(x.a) != ARCHIVE_OK)
		rc = wr_fail(&x, "archive");
done:
	if (x.a)
		archive_write_free(x.a);
	if (x.e)
		archive_entry_free(x.e);
	artifs_buf_release(&x.path);
	artifs_commit_free(c);
	if (x.txn)
		mdb_txn_abort(x.txn);
	utf8_leave(loc, old);
	return rc;
}
