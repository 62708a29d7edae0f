/*
 * sync.c - push and pull.
 *
 * The remote holds packs/ID.pack + packs/ID.idx (an index is written only
 * after its pack, so a listed index names a complete pack) and
 * refs/REPO/REF/SEQ records, created exclusively: the record with the
 * highest SEQ is the ref's value, and two writers of the same SEQ cannot
 * both win.  Objects are pushed children first (chunks, then manifests and
 * labelsets, trees, commits), so an object on the remote always has
 * everything below it there too, and a walk can stop at the first object
 * the remote has.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "commit.h"
#include "error.h"
#include "label.h"
#include "oidset.h"
#include "pack.h"
#include "ref.h"
#include "store_int.h"
#include "sync.h"
#include "pagecache.h"
#include "tree.h"

#define SEQ_DIGITS 16
/* Range reads: neighbours closer than this are read in one request. */
#define RANGE_GAP (256u << 10)
#define RANGE_MAX (16u << 20)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- shared state of one push or pull ---- */

struct rref {
	char *repo, *name;
	char kind;
	uint64_t seq;		/* highest record; 0: none */
	artifs_oid target;
	int64_t time_ns;	/* of the move the newest record logs (details.time_ns), or 0 */
};

struct sync {
	artifs_store *s;
	const artifs_sync_opts *o;
	artifs_remote *r;		/* the main thread's handle */
	artifs_pack_entry *idx;		/* every object on the remote, sorted by id */
	size_t nidx, capidx;
	char **packs;			/* pack number -> hex id */
	uint32_t npacks;
	struct rref *refs;		/* the remote's refs */
	size_t nrefs, caprefs;
	pthread_mutex_t mu;
	artifs_sync_progress prog;
	double t0, last;
	uint64_t worker_requests;
	int jobs;
	int holes;			/* a pack was left out: what the remote has may lack children */
};

static void progress(struct sync *y, int force)
{
	double t = now_s();

	if (!y->o->progress || (!force && t - y->last < 0.5))
		return;
	y->last = t;
	y->prog.seconds = t - y->t0;
	y->prog.requests = (y->r ? artifs_remote_requests(y->r) : 0) + y->worker_requests;
	y->o->progress(&y->prog, y->o->ctx);
}

static void warn(struct sync *y, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warn(struct sync *y, int error, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!y->o->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	y->o->warn(error, msg, y->o->ctx);
}

static int cmp_entry(const void *a, const void *b)
{
	return artifs_oid_cmp(&((const artifs_pack_entry *)a)->id,
		&((const artifs_pack_entry *)b)->id);
}

static const artifs_pack_entry *remote_find(const struct sync *y, const artifs_oid *id)
{
	artifs_pack_entry key;

	if (!y->nidx)
		return NULL;
	key.id = *id;
	return bsearch(&key, y->idx, y->nidx, sizeof(*y->idx), cmp_entry);
}

static int add_entries(struct sync *y, const artifs_pack_entry *v, size_t n)
{
	if (!n)
		return 0;
	if (y->nidx + n > y->capidx) {
		size_t cap = y->capidx ? y->capidx : 4096;
		void *p;
		while (cap < y->nidx + n)
			cap *= 2;
		if (!(p = realloc(y->idx, cap * sizeof(*y->idx))))
			return -ENOMEM;
		y->idx = p;
		y->capidx = cap;
	}
	memcpy(y->idx + y->nidx, v, n * sizeof(*v));
	y->nidx += n;
	return 0;
}

static int add_pack_name(struct sync *y, const char *hex)
{
	char **p = realloc(y->packs, (y->npacks + 1) * sizeof(*p));

	if (!p)
		return -ENOMEM;
	y->packs = p;
	if (!(p[y->npacks] = strndup(hex, ARTIFS_OID_HEXSZ)))
		return -ENOMEM;
	y->npacks++;
	return 0;
}

/* index cache: DIR/HEX.idx, immutable like the packs they describe */
static int cache_read(struct sync *y, const char *hex, artifs_buf *out)
{
	char *path;
	FILE *f;
	int rc = ARTIFS_ENOTFOUND;

	if (!y->o->cache_dir || !(path = artifs_strfmt("%s/%s.idx", y->o->cache_dir, hex)))
		return ARTIFS_ENOTFOUND;
	f = fopen(path, "rb");
	if (f) {
		char tmp[65536];
		size_t n;
		rc = 0;
		while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
			if (artifs_buf_put(out, tmp, n)) {
				rc = -ENOMEM;
				break;
			}
		if (ferror(f))
			rc = ARTIFS_ENOTFOUND;
		fclose(f);
	}
	free(path);
	return rc;
}

static void cache_write(struct sync *y, const char *hex, const artifs_buf *b)
{
	char *path, *tmp;
	FILE *f;

	if (!y->o->cache_dir)
		return;
	mkdir(y->o->cache_dir, 0777);
	path = artifs_strfmt("%s/%s.idx", y->o->cache_dir, hex);
	tmp = artifs_strfmt("%s/.%s.idx.%ld", y->o->cache_dir, hex, (long)getpid());
	if (path && tmp && (f = fopen(tmp, "wb"))) {
		int ok = fwrite(b->ptr, 1, b->len, f) == b->len;
		ok = !fclose(f) && ok;
		if (!ok || rename(tmp, path))
			unlink(tmp);
	}
	free(path);
	free(tmp);
}

struct listing {
	struct sync *y;
	char **idx;		/* hex ids of listed indexes */
	uint64_t *size;		/* their packs' sizes (0 until seen) */
	size_t n, cap;
	int err;
};

static int hexname(const char *s, const char *ext)
{
	for (int i = 0; i < ARTIFS_OID_HEXSZ; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return !strcmp(s + ARTIFS_OID_HEXSZ, ext);
}

static int list_pack_cb(const char *key, uint64_t size, void *ctx)
{
	struct listing *l = ctx;
	const char *name = key + 6;	/* "packs/" */

	if (strlen(name) != ARTIFS_OID_HEXSZ + 4 && strlen(name) != ARTIFS_OID_HEXSZ + 5)
		return 0;
	if (hexname(name, ".pack")) {
		/* the listing is sorted: "HEX.idx" comes right after "HEX.pack"... no:
		 * ".idx" < ".pack", so the index is listed first */
		if (l->n && !strncmp(l->idx[l->n - 1], name, ARTIFS_OID_HEXSZ))
			l->size[l->n - 1] = size;
		return 0;
	}
	if (!hexname(name, ".idx"))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **a = realloc(l->idx, cap * sizeof(*a));
		uint64_t *b;
		if (!a)
			return -ENOMEM;
		l->idx = a;
		if (!(b = realloc(l->size, cap * sizeof(*b))))
			return -ENOMEM;
		l->size = b;
		l->cap = cap;
	}
	if (!(l->idx[l->n] = strndup(name, ARTIFS_OID_HEXSZ)))
		return -ENOMEM;
	l->size[l->n++] = 0;
	return 0;
}

/*
 * Load every pack index of the remote (fetching the ones not cached).  A
 * damaged index leaves its pack out, with a warning: a push sends that
 * pack's objects again in a new one, and a fetch takes them from another
 * pack or reports them missing.  Failing instead, one damaged index (an
 * upload cut off on a store that is not atomic) would stop every push and
 * pull for good.
 */
static int load_index(struct sync *y)
{
	struct listing l = { y, NULL, NULL, 0, 0, 0 };
	artifs_buf b = { 0 };
	int rc;

	y->prog.phase = "index";
	progress(y, 1);
	rc = artifs_remote_list(y->r, "packs/", list_pack_cb, &l);
	for (size_t i = 0; !rc && i < l.n; i++) {
		artifs_pack_entry *v;
		size_t n;
		int cached;

		if (!l.size[i])
			continue;	/* an index without its pack: not ours to trust */
		b.len = 0;
		cached = cache_read(y, l.idx[i], &b) == 0;
		if (!cached) {
			char *key = artifs_strfmt("packs/%s.idx", l.idx[i]);
			if (!key) {
				rc = -ENOMEM;
				break;
			}
			rc = artifs_remote_get(y->r, key, &b);
			free(key);
			if (rc)
				break;
		}
		rc = artifs_pack_idx_parse(b.ptr, b.len, l.size[i], y->npacks, &v, &n);
		if (rc) {
			warn(y, 0, "pack index %s on remote '%s' is damaged (%s): its pack is left out",
				l.idx[i], artifs_remote_url(y->r), artifs_error_last());
			y->holes = 1;
			rc = 0;
			continue;
		}
		if (!cached)
			cache_write(y, l.idx[i], &b);
		rc = add_pack_name(y, l.idx[i]);
		if (!rc)
			rc = add_entries(y, v, n);
		free(v);
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.idx[i]);
	free(l.idx);
	free(l.size);
	artifs_buf_release(&b);
	if (rc)
		return rc;
	if (y->nidx)
		qsort(y->idx, y->nidx, sizeof(*y->idx), cmp_entry);
	return 0;
}

/* ---- refs on the remote ---- */

static char *ref_key(const char *repo, const char *name, uint64_t seq)
{
	return artifs_strfmt("refs/%s/%s/%0*llu", repo, name, SEQ_DIGITS, (unsigned long long)seq);
}

static struct rref *rref_find(struct sync *y, const char *repo, const char *name)
{
	for (size_t i = 0; i < y->nrefs; i++)
		if (!strcmp(y->refs[i].repo, repo) && !strcmp(y->refs[i].name, name))
			return &y->refs[i];
	return NULL;
}

/* keys: refs/datasets/NAME/REF/SEQ */
static int list_ref_cb(const char *key, uint64_t size, void *ctx)
{
	struct sync *y = ctx;
	char buf[512], *parts[5], *p, *save = NULL;
	int n = 0;
	struct rref *r;
	char repo[256];
	unsigned long long seq;
	char *end;

	(void)size;
	if (strlen(key) >= sizeof(buf))
		return 0;
	strcpy(buf, key);
	for (p = strtok_r(buf, "/", &save); p && n < 5; p = strtok_r(NULL, "/", &save))
		parts[n++] = p;
	if (n != 5 || p)
		return 0;
	snprintf(repo, sizeof(repo), "%s/%s", parts[1], parts[2]);
	if (!artifs_repo_name_valid(repo) || !artifs_ref_name_valid(parts[3]) ||
	    strlen(parts[4]) != SEQ_DIGITS)
		return 0;
	seq = strtoull(parts[4], &end, 10);
	if (*end || !seq)
		return 0;
	r = rref_find(y, repo, parts[3]);
	if (!r) {
		if (y->nrefs == y->caprefs) {
			size_t cap = y->caprefs ? y->caprefs * 2 : 16;
			void *q = realloc(y->refs, cap * sizeof(*y->refs));
			if (!q)
				return -ENOMEM;
			y->refs = q;
			y->caprefs = cap;
		}
		r = &y->refs[y->nrefs];
		memset(r, 0, sizeof(*r));
		if (!(r->repo = strdup(repo)) || !(r->name = strdup(parts[3]))) {
			free(r->repo);
			return -ENOMEM;
		}
		y->nrefs++;
	}
	if (seq > r->seq)
		r->seq = seq;
	return 0;
}

struct refrec {
	char kind;
	artifs_oid target, old;
	json_t *json;
};

static int parse_refrec(struct refrec *out, const char *key, const artifs_buf *b)
{
	json_error_t err;
	const char *kind, *target, *old = NULL;
	json_t *j = json_loadb((const char *)b->ptr, b->len, 0, &err);

	memset(out, 0, sizeof(*out));
	if (!j || json_unpack(j, "{s:s, s:s, s?s}", "kind", &kind, "target", &target,
			"old", &old) ||
	    artifs_oid_parse(&out->target, target) || (old && artifs_oid_parse(&out->old, old)) ||
	    (strcmp(kind, "branch") && strcmp(kind, "tag") && strcmp(kind, "environment"))) {
		json_decref(j);
		return artifs_error(ARTIFS_ECORRUPT, "ref record '%s' on the remote is malformed", key);
	}
	out->kind = kind[0] == 'b' ? ARTIFS_REF_BRANCH : kind[0] == 't' ? ARTIFS_REF_TAG :
		ARTIFS_REF_ENV;
	out->json = j;
	return 0;
}

static int get_refrec(struct sync *y, const char *repo, const char *name, uint64_t seq,
	struct refrec *out)
{
	char *key = ref_key(repo, name, seq);
	artifs_buf b = { 0 };
	int rc;

	if (!key)
		return -ENOMEM;
	rc = artifs_remote_get(y->r, key, &b);
	if (!rc)
		rc = parse_refrec(out, key, &b);
	free(key);
	artifs_buf_release(&b);
	return rc;
}

/* List the remote's refs and read the newest record of each. */
static int load_refs(struct sync *y)
{
	int rc = artifs_remote_list(y->r, "refs/", list_ref_cb, y);

	for (size_t i = 0; !rc && i < y->nrefs; i++) {
		struct refrec rec;
		struct rref *r = &y->refs[i];
		if ((rc = get_refrec(y, r->repo, r->name, r->seq, &rec)))
			break;
		r->kind = rec.kind;
		r->target = rec.target;
		r->time_ns = json_integer_value(json_object_get(json_object_get(rec.json, "details"),
			"time_ns"));
		json_decref(rec.json);
	}
	return rc;
}

static int sync_open(struct sync *y, artifs_store *s, const artifs_sync_opts *o, int create)
{
	int rc;

	memset(y, 0, sizeof(*y));
	y->s = s;
	y->o = o;
	y->jobs = o->jobs > 0 ? o->jobs : 8;
	y->t0 = now_s();
	pthread_mutex_init(&y->mu, NULL);
	if (o->version != ARTIFS_SYNC_OPTS_VERSION)
		return artifs_error(ARTIFS_EINVAL, "sync options of unknown version");
	if ((rc = artifs_remote_open(&y->r, o->url, o->ropts, create)))
		return rc;
	if ((rc = load_index(y)))
		return rc;
	return load_refs(y);
}

static void sync_close(struct sync *y, artifs_sync_stats *st)
{
	if (st) {
		st->requests = (y->r ? artifs_remote_requests(y->r) : 0) + y->worker_requests;
		st->seconds = now_s() - y->t0;
	}
	artifs_remote_free(y->r);
	free(y->idx);
	for (uint32_t i = 0; i < y->npacks; i++)
		free(y->packs[i]);
	free(y->packs);
	for (size_t i = 0; i < y->nrefs; i++) {
		free(y->refs[i].repo);
		free(y->refs[i].name);
	}
	free(y->refs);
	pthread_mutex_destroy(&y->mu);
}

/* ---- a pool of threads, each with its own remote handle ---- */

struct pool {
	struct sync *y;
	size_t njobs, next;
	int (*fn)(struct pool *p, artifs_remote *r, size_t job, void *arg);
	void *arg;
	int rc;
	char err[512];
	int running;			/* workers not yet finished */
	pthread_cond_t cond;		/* signalled with y->mu held: a worker ended, or a queue moved */
};

static void pool_fail(struct pool *p, int rc)
{
	/* with y->mu held */
	if (rc && !p->rc) {
		p->rc = rc;
		snprintf(p->err, sizeof(p->err), "%s", artifs_error_last());
	}
}

static void *pool_main(void *arg)
{
	struct pool *p = arg;
	struct sync *y = p->y;
	artifs_remote *r = NULL;
	int rc = artifs_remote_open(&r, y->o->url, y->o->ropts, 0);

	for (;;) {
		size_t job;
		pthread_mutex_lock(&y->mu);
		pool_fail(p, rc);
		if (p->rc || p->next >= p->njobs) {
			pthread_mutex_unlock(&y->mu);
			break;
		}
		job = p->next++;
		pthread_mutex_unlock(&y->mu);
		rc = p->fn(p, r, job, p->arg);
	}
	pthread_mutex_lock(&y->mu);
	if (r)
		y->worker_requests += artifs_remote_requests(r);
	p->running--;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&y->mu);
	artifs_remote_free(r);
	return NULL;
}

/*
 * Run jobs 0..njobs-1 on up to y->jobs threads.  `consume`, when given,
 * runs on this thread meanwhile (LMDB writes belong to one thread) and
 * returns once p->running is 0 and it has drained what the workers made.
 */
static int pool_run(struct sync *y, size_t njobs,
	int (*fn)(struct pool *p, artifs_remote *r, size_t job, void *arg), void *arg,
	void (*consume)(struct pool *p, void *arg))
{
	struct pool p;
	pthread_t th[64];
	int n = y->jobs < 64 ? y->jobs : 64, started = 0;

	memset(&p, 0, sizeof(p));
	p.y = y;
	p.njobs = njobs;
	p.fn = fn;
	p.arg = arg;
	pthread_cond_init(&p.cond, NULL);
	if ((size_t)n > njobs)
		n = (int)njobs;
	p.running = n;
	for (int i = 0; i < n; i++) {
		if (artifs_thread_start(&th[i], pool_main, &p))
			break;
		started++;
	}
	pthread_mutex_lock(&y->mu);
	p.running -= n - started;
	pthread_mutex_unlock(&y->mu);
	if (!started && njobs) {
		pthread_cond_destroy(&p.cond);
		return artifs_error(-EAGAIN, "cannot start transfer threads");
	}
	if (consume)
		consume(&p, arg);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_cond_destroy(&p.cond);
	if (p.rc)
		return artifs_error(p.rc, "%s", p.err);
	return 0;
}

/* ---- push ---- */

struct pobj {
	artifs_oid id;
	uint8_t kind;
	uint32_t len;
};

struct objlist {
	struct pobj *v;
	size_t n, cap;
	uint64_t bytes;
};

static int objlist_add(struct objlist *l, uint8_t kind, const artifs_oid *id, size_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		void *p = realloc(l->v, cap * sizeof(*l->v));
		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n].id = *id;
	l->v[l->n].kind = kind;
	l->v[l->n].len = (uint32_t)len;
	l->n++;
	l->bytes += len;
	return 0;
}

struct walk {
	struct sync *y;
	MDB_txn *txn;
	artifs_oidset seen;
	struct objlist chunks, blobs, trees, commits;
	uint64_t skipped;
};

static MDB_dbi kind_dbi(artifs_store *s, uint8_t kind)
{
	switch (kind) {
	case ARTIFS_OBJ_CHUNK: return s->chunks;
	case ARTIFS_OBJ_BLOB: return s->blobs;
	case ARTIFS_OBJ_TREE: return s->trees;
	case ARTIFS_OBJ_LABELSET: return s->labelsets;
	default: return s->commits;
	}
}

static const char *kind_name(uint8_t kind)
{
	switch (kind) {
	case ARTIFS_OBJ_CHUNK: return "chunk";
	case ARTIFS_OBJ_BLOB: return "manifest";
	case ARTIFS_OBJ_TREE: return "tree";
	case ARTIFS_OBJ_LABELSET: return "labelset";
	default: return "commit";
	}
}

/* 1: needs sending, 0: the remote has it or it was seen */
static int need_send(struct walk *w, const artifs_oid *id)
{
	int rc;

	if (remote_find(w->y, id)) {
		w->skipped++;
		return 0;
	}
	rc = artifs_oidset_add(&w->seen, id);
	return rc;
}

/*
 * For a record with children: 1 to walk it (*send: and send it), 0 not.
 * What the remote has is complete below it (objects go children first),
 * unless a damaged index left a pack out (y->holes): then records the
 * remote has are walked too, so the children that pack held are sent again.
 */
static int visit(struct walk *w, const artifs_oid *id, int *send)
{
	*send = 1;
	if (w->y->holes && remote_find(w->y, id)) {
		*send = 0;
		w->skipped++;
		return artifs_oidset_add(&w->seen, id);
	}
	return need_send(w, id);
}

static int local_get(struct walk *w, uint8_t kind, const artifs_oid *id, MDB_val *v)
{
	int rc = artifs_store_get(w->txn, kind_dbi(w->y->s, kind), id, v);

	if (rc == ARTIFS_ENOTFOUND) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		return artifs_error(ARTIFS_ENOTFOUND, "%s %s is missing from the local store "
			"(run 'artifs fsck')", kind_name(kind), artifs_oid_fmt(hex, id));
	}
	return rc;
}

static int walk_blob(struct walk *w, const artifs_oid *id)
{
	artifs_blob_view b;
	MDB_val v;
	int rc, send;

	if ((rc = visit(w, id, &send)) <= 0)
		return rc;
	if ((rc = local_get(w, ARTIFS_OBJ_BLOB, id, &v)))
		return rc;
	if ((rc = artifs_blob_parse(&b, v.mv_data, v.mv_size)))
		return rc;
	for (uint32_t i = 0; i < b.nchunks; i++) {
		artifs_oid c;
		artifs_blob_chunk_id(&b, i, &c);
		if ((rc = need_send(w, &c)) < 0)
			return rc;
		if (rc && (rc = objlist_add(&w->chunks, ARTIFS_OBJ_CHUNK, &c,
				artifs_blob_chunk_len(&b, i))))
			return rc;
	}
	return send ? objlist_add(&w->blobs, ARTIFS_OBJ_BLOB, id, v.mv_size) : 0;
}

static int walk_tree(struct walk *w, const artifs_oid *id)
{
	artifs_tree_view t;
	MDB_val v;
	int rc, send;

	if ((rc = visit(w, id, &send)) <= 0)
		return rc;
	if ((rc = local_get(w, ARTIFS_OBJ_TREE, id, &v)))
		return rc;
	if ((rc = artifs_tree_parse(&t, v.mv_data, v.mv_size)))
		return rc;
	for (uint32_t i = 0; i < t.count; i++) {
		artifs_tree_entry e;
		if ((rc = artifs_tree_entry_at(&t, i, &e)))
			return rc;
		rc = e.type == ARTIFS_T_DIR ? walk_tree(w, &e.id) : walk_blob(w, &e.id);
		if (!rc && !artifs_oid_is_zero(&e.labels) && (rc = need_send(w, &e.labels)) > 0) {
			MDB_val lv;
			rc = local_get(w, ARTIFS_OBJ_LABELSET, &e.labels, &lv);
			if (!rc)
				rc = objlist_add(&w->blobs, ARTIFS_OBJ_LABELSET, &e.labels, lv.mv_size);
		}
		if (rc < 0)
			return rc;
		/* the tree view points into the map: still valid, same txn */
	}
	return send ? objlist_add(&w->trees, ARTIFS_OBJ_TREE, id, v.mv_size) : 0;
}

/* Commits in post order (parents first), iteratively: histories can be long. */
static int walk_commits(struct walk *w, const artifs_oid *tip)
{
	struct frame { artifs_oid id; int expanded, send; } *st = NULL;
	size_t n = 0, cap = 0;
	int rc = 0, send;

	if (artifs_oid_is_zero(tip) || (rc = visit(w, tip, &send)) <= 0)
		return rc;
#define PUSHF(x) do { \
	if (n == cap) { \
		size_t c2 = cap ? cap * 2 : 64; \
		void *p2 = realloc(st, c2 * sizeof(*st)); \
		if (!p2) { rc = -ENOMEM; goto out; } \
		st = p2; cap = c2; \
	} \
	st[n].id = (x); st[n].expanded = 0; st[n].send = send; n++; \
} while (0)
	PUSHF(*tip);
	while (n) {
		struct frame *f = &st[n - 1];
		artifs_commit *c = NULL;
		MDB_val v;
		if ((rc = local_get(w, ARTIFS_OBJ_COMMIT, &f->id, &v)))
			goto out;
		if (f->expanded) {
			artifs_oid id = f->id;
			int sendit = f->send;
			n--;
			if ((rc = artifs_commit_decode(&c, v.mv_data, v.mv_size)))
				goto out;
			rc = walk_tree(w, &c->tree);
			if (!rc && !artifs_oid_is_zero(&c->labels))
				rc = walk_blob(w, &c->labels);
			artifs_commit_free(c);
			if (rc < 0 || (sendit &&
			    (rc = objlist_add(&w->commits, ARTIFS_OBJ_COMMIT, &id, v.mv_size))))
				goto out;
			continue;
		}
		f->expanded = 1;
		if ((rc = artifs_commit_decode(&c, v.mv_data, v.mv_size)))
			goto out;
		for (uint32_t i = 0; i < c->nparents; i++) {
			int need = visit(w, &c->parents[i], &send);
			if (need < 0) {
				rc = need;
				break;
			}
			if (need) {
				artifs_oid pid = c->parents[i];
				PUSHF(pid);
			}
		}
		artifs_commit_free(c);
		if (rc)
			goto out;
	}
#undef PUSHF
out:
	free(st);
	return rc < 0 ? rc : 0;
}

struct packjob {
	struct objlist *l;
	size_t *starts;		/* pack i is l->v[starts[i] .. starts[i+1]) */
	size_t npacks;
};

static int send_pack(struct sync *y, artifs_remote *r, const struct pobj *v, size_t n)
{
	artifs_pack_builder b;
	artifs_buf idx = { 0 };
	artifs_oid pid;
	MDB_txn *txn = NULL;
	char hex[ARTIFS_OID_HEXSZ + 1], *key = NULL;
	uint64_t bytes = 0;
	int rc;

	artifs_pack_builder_init(&b);
	if ((rc = artifs_rtxn_begin(y->s, &txn)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		MDB_val val;
		if ((rc = artifs_store_get(txn, kind_dbi(y->s, v[i].kind), &v[i].id, &val)))
			goto out;
		artifs_store_fetch(y->s, val.mv_data, val.mv_size);	/* cold: one read */
		if ((rc = artifs_pack_add(&b, v[i].kind, &v[i].id, val.mv_data, val.mv_size)))
			goto out;
		bytes += val.mv_size;
	}
	mdb_txn_abort(txn);
	txn = NULL;
	if ((rc = artifs_pack_finish(&b, &pid, &idx)))
		goto out;
	artifs_oid_fmt(hex, &pid);
	if (!(key = artifs_strfmt("packs/%s.pack", hex))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = artifs_remote_put(r, key, b.data.ptr, b.data.len, 0)))
		goto out;
	free(key);
	if (!(key = artifs_strfmt("packs/%s.idx", hex))) {
		rc = -ENOMEM;
		goto out;
	}
	rc = artifs_remote_put(r, key, idx.ptr, idx.len, 0);
	if (!rc)
		cache_write(y, hex, &idx);	/* the next push or pull need not fetch it */
	if (!rc) {
		pthread_mutex_lock(&y->mu);
		y->prog.objects += n;
		y->prog.bytes += bytes;
		y->prog.packs++;
		progress(y, 0);
		pthread_mutex_unlock(&y->mu);
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	free(key);
	artifs_buf_release(&idx);
	artifs_pack_builder_release(&b);
	return rc;
}

static int packjob_fn(struct pool *p, artifs_remote *r, size_t job, void *arg)
{
	struct packjob *j = arg;

	return send_pack(p->y, r, j->l->v + j->starts[job], j->starts[job + 1] - j->starts[job]);
}

/* cut a list into packs of about ARTIFS_PACK_TARGET bytes */
static int cut_packs(struct objlist *l, size_t **starts, size_t *npacks)
{
	size_t *s = malloc((l->n + 2) * sizeof(*s)), np = 0;
	uint64_t acc = 0;

	if (!s)
		return -ENOMEM;
	s[np++] = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (acc && acc + l->v[i].len > ARTIFS_PACK_TARGET) {
			s[np++] = i;
			acc = 0;
		}
		acc += l->v[i].len;
	}
	if (l->n)
		s[np++] = l->n;
	*starts = s;
	*npacks = l->n ? np - 1 : 0;
	return 0;
}

static int send_list(struct sync *y, struct objlist *l, int parallel)
{
	struct packjob j = { l, NULL, 0 };
	int rc;

	if (!l->n)
		return 0;
	if ((rc = cut_packs(l, &j.starts, &j.npacks)))
		return rc;
	if (parallel) {
		rc = pool_run(y, j.npacks, packjob_fn, &j, NULL);
	} else {
		for (size_t i = 0; !rc && i < j.npacks; i++)
			rc = send_pack(y, y->r, l->v + j.starts[i], j.starts[i + 1] - j.starts[i]);
	}
	free(j.starts);
	return rc;
}

/* ---- ancestry in the local store ---- */

/* Is `anc` reachable from `desc` through parents (or equal)? */
static int is_ancestor(artifs_store *s, MDB_txn *txn, const artifs_oid *anc,
	const artifs_oid *desc)
{
	artifs_oidset seen;
	artifs_oid *q = NULL;
	size_t n = 0, cap = 0;
	int found = 0, rc = 0;

	if (!artifs_oid_cmp(anc, desc))
		return 1;
	if (artifs_oid_is_zero(anc))
		return 1;
	artifs_oidset_init(&seen);
	if (!(q = malloc(64 * sizeof(*q))))
		return -ENOMEM;
	cap = 64;
	q[n++] = *desc;
	while (n && !found) {
		artifs_oid id = q[--n];
		artifs_commit *c;
		if (artifs_commit_load(&c, s, txn, &id))
			continue;	/* not local: its history is not here */
		for (uint32_t i = 0; i < c->nparents && !found; i++) {
			if (!artifs_oid_cmp(&c->parents[i], anc)) {
				found = 1;
				break;
			}
			if ((rc = artifs_oidset_add(&seen, &c->parents[i])) < 0)
				break;
			if (rc == 0)
				continue;
			rc = 0;
			if (n == cap) {
				void *p = realloc(q, cap * 2 * sizeof(*q));
				if (!p) {
					rc = -ENOMEM;
					break;
				}
				q = p;
				cap *= 2;
			}
			q[n++] = c->parents[i];
		}
		artifs_commit_free(c);
		if (rc < 0)
			break;
	}
	free(q);
	artifs_oidset_release(&seen);
	return rc < 0 ? rc : found;
}

/* ---- selection of refs ---- */

struct lref {
	char *repo, *name;
	artifs_ref ref;
};

struct lrefs {
	struct lref *v;
	size_t n, cap;
	const char *repo;
	const char *only;	/* one ref name, or NULL for all */
};

static int lref_cb(const char *name, const artifs_ref *ref, void *ctx)
{
	struct lrefs *l = ctx;

	if (l->only && strcmp(l->only, name))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		void *p = realloc(l->v, cap * sizeof(*l->v));
		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n].repo = strdup(l->repo);
	l->v[l->n].name = strdup(name);
	l->v[l->n].ref = *ref;
	if (!l->v[l->n].repo || !l->v[l->n].name)
		return -ENOMEM;
	l->n++;
	return 0;
}

static void lrefs_release(struct lrefs *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].repo);
		free(l->v[i].name);
	}
	free(l->v);
}

/* "REPO" or "REPO@REF" into repo and ref (ref NULL when absent) */
static int split_spec(const char *spec, char *repo, size_t rlen, const char **ref)
{
	const char *at = strchr(spec, '@');
	size_t n = at ? (size_t)(at - spec) : strlen(spec);

	if (n >= rlen)
		return artifs_error(ARTIFS_EINVAL, "'%s' is not REPO or REPO@REF", spec);
	memcpy(repo, spec, n);
	repo[n] = '\0';
	*ref = at ? at + 1 : NULL;
	if (!artifs_repo_name_valid(repo))
		return artifs_error(ARTIFS_EINVAL,
			"'%s': want datasets/NAME or models/NAME, optionally @REF", spec);
	if (*ref && !artifs_ref_name_valid(*ref))
		return artifs_error(ARTIFS_EINVAL, "'%s': invalid ref name '%s'", spec, *ref);
	return 0;
}

struct allrepos {
	artifs_store *s;
	MDB_txn *txn;
	struct lrefs *l;
};

static int allrepo_cb(const char *repo, int64_t created, void *ctx)
{
	struct allrepos *a = ctx;

	(void)created;
	a->l->repo = repo;
	a->l->only = NULL;
	return artifs_ref_foreach(a->s, a->txn, repo, lref_cb, a->l);
}

static int select_local(artifs_store *s, MDB_txn *txn, char *const *specs, size_t nspecs,
	struct lrefs *l)
{
	int rc = 0;

	if (!nspecs) {
		struct allrepos a = { s, txn, l };
		return artifs_repo_foreach(s, txn, allrepo_cb, &a);
	}
	for (size_t i = 0; !rc && i < nspecs; i++) {
		char repo[ARTIFS_REF_NAME_MAX + 16];
		const char *ref;
		size_t before = l->n;
		if ((rc = split_spec(specs[i], repo, sizeof(repo), &ref)))
			break;
		if ((rc = artifs_repo_check(s, txn, repo)))
			break;
		l->repo = repo;
		l->only = ref;
		rc = artifs_ref_foreach(s, txn, repo, lref_cb, l);
		if (!rc && ref && l->n == before)
			rc = artifs_error(ARTIFS_ENOTFOUND, "no ref '%s' in '%s'", ref, repo);
	}
	return rc;
}

/* ---- push: refs ---- */

static char *refrec_json(const char *repo, const char *name, char kind, uint64_t seq,
	const artifs_oid *old, const artifs_oid *target, const char *details, const char *remote,
	const char *author, const char *message)
{
	char h1[ARTIFS_OID_HEXSZ + 1], h2[ARTIFS_OID_HEXSZ + 1];
	json_t *o = json_object(), *d = NULL;
	char *out;

	if (details) {
		json_error_t err;
		d = json_loads(details, 0, &err);
	}
	json_object_set_new(o, "repo", json_string(repo));
	json_object_set_new(o, "ref", json_string(name));
	json_object_set_new(o, "kind", json_string(artifs_ref_kind_name(kind)));
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	json_object_set_new(o, "old", json_string(artifs_oid_fmt(h1, old)));
	json_object_set_new(o, "target", json_string(artifs_oid_fmt(h2, target)));
	json_object_set_new(o, "pushed_to", json_string(remote));
	if (author)
		json_object_set_new(o, "author", json_string(author));
	if (message)
		json_object_set_new(o, "message", json_string(message));
	if (json_is_object(d))
		json_object_set(o, "details", d);
	json_decref(d);
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return out;
}

static int put_refrec(struct sync *y, const char *repo, const char *name, char kind,
	uint64_t seq, const artifs_oid *old, const artifs_oid *target, const char *details,
	const artifs_reflog_entry *e)
{
	char *key = ref_key(repo, name, seq);
	char *author = e ? strndup(e->author, e->author_len) : NULL;
	char *message = e ? strndup(e->message, e->message_len) : NULL;
	char *js = refrec_json(repo, name, kind, seq, old, target, details,
		y->o->name ? y->o->name : artifs_remote_url(y->r), author, message);

	free(author);
	free(message);
	int rc;

	if (!key || !js) {
		free(key);
		free(js);
		return -ENOMEM;
	}
	rc = artifs_remote_put(y->r, key, js, strlen(js), 1);
	free(key);
	free(js);
	return rc;
}

struct envlog {
	artifs_reflog_entry *v;
	char **det;
	size_t n, cap;
};

static int envlog_cb(const artifs_reflog_entry *e, void *ctx)
{
	struct envlog *l = ctx;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		void *p = realloc(l->v, cap * sizeof(*l->v)), *q;
		if (!p)
			return -ENOMEM;
		l->v = p;
		if (!(q = realloc(l->det, cap * sizeof(*l->det))))
			return -ENOMEM;
		l->det = q;
		l->cap = cap;
	}
	l->v[l->n] = *e;
	l->det[l->n] = e->details ? strndup(e->details, e->details_len) : NULL;
	l->n++;
	return 0;
}

/* An environment's log, oldest move first. */
static int envlog_load(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	struct envlog *l)
{
	int rc = artifs_reflog_foreach(s, txn, repo, name, envlog_cb, l);

	for (size_t i = 0, j = l->n ? l->n - 1 : 0; !rc && i < j; i++, j--) {
		artifs_reflog_entry e = l->v[i];
		char *d = l->det[i];
		l->v[i] = l->v[j];
		l->det[i] = l->det[j];
		l->v[j] = e;
		l->det[j] = d;
	}
	return rc;
}

static void envlog_release(struct envlog *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->det[i]);
	free(l->det);
	free(l->v);
}

/*
 * Move one remote ref to the local value.  Returns 0 (moved or current),
 * or ARTIFS_ESTALE / ARTIFS_EIMMUTABLE with a message saying what to do.
 */
static int push_ref(struct sync *y, MDB_txn *txn, const struct lref *l, artifs_sync_stats *st)
{
	struct rref *r = rref_find(y, l->repo, l->name);
	artifs_oid rt = { { 0 } };
	uint64_t seq = r ? r->seq : 0;
	const char *rname = y->o->name ? y->o->name : artifs_remote_url(y->r);
	int tries, rc;

	for (tries = 0; tries < 5; tries++) {
		if (r)
			rt = r->target;
		if (r && r->kind != l->ref.kind)
			return artifs_error(ARTIFS_EEXISTS, "'%s' of '%s' is %s %s on remote '%s' but "
				"%s %s here", l->name, l->repo, r->kind == ARTIFS_REF_ENV ? "an" : "a",
				artifs_ref_kind_name(r->kind), rname,
				l->ref.kind == ARTIFS_REF_ENV ? "an" : "a", artifs_ref_kind_name(l->ref.kind));
		if (r && !artifs_oid_cmp(&rt, &l->ref.target) && l->ref.kind != ARTIFS_REF_ENV) {
			st->refs_current++;
			return 0;
		}
		if (l->ref.kind == ARTIFS_REF_TAG) {
			if (r)
				return artifs_error(ARTIFS_EIMMUTABLE, "tag '%s' of '%s' names a different "
					"commit on remote '%s'; tags never move", l->name, l->repo, rname);
			rc = put_refrec(y, l->repo, l->name, l->ref.kind, 1, &rt, &l->ref.target, NULL, NULL);
		} else if (l->ref.kind == ARTIFS_REF_BRANCH) {
			char h[ARTIFS_OID_HEXSZ + 1];
			int anc = is_ancestor(y->s, txn, &rt, &l->ref.target);
			if (anc < 0)
				return anc;
			if (!anc)
				return artifs_error(ARTIFS_ESTALE, "branch '%s' of '%s' on remote '%s' has "
					"commits this store does not (at %.12s): non-fast-forward; run "
					"'artifs pull %s %s@%s' and commit on top, or push to a new branch",
					l->name, l->repo, rname, artifs_oid_fmt(h, &rt), rname, l->repo,
					l->name);
			rc = put_refrec(y, l->repo, l->name, l->ref.kind, seq + 1, &rt, &l->ref.target,
				NULL, NULL);
		} else {
			/* an environment: send the moves logged here since the remote's value */
			struct envlog el = { 0 };
			size_t from = 0;
			int known = !r || artifs_oid_is_zero(&rt);
			rc = envlog_load(y->s, txn, l->repo, l->name, &el);
			for (size_t i = 0; !rc && i < el.n; i++)
				if (r && !artifs_oid_cmp(&el.v[i].new_id, &rt)) {
					known = 1;
					from = i + 1;
				}
			/* the move the remote logged last, recognised by its time: what came after it is new */
			for (size_t i = 0; !rc && r && r->time_ns && i < el.n; i++) {
				json_t *d = el.det[i] ? json_loads(el.det[i], 0, NULL) : NULL;
				if (json_integer_value(json_object_get(d, "time_ns")) == r->time_ns) {
					known = 1;
					from = i + 1;
				}
				json_decref(d);
			}
			if (!rc && known && from >= el.n) {
				envlog_release(&el);
				if (artifs_oid_cmp(&rt, &l->ref.target))
					return artifs_error(ARTIFS_ESTALE, "environment '%s' of '%s' differs on "
						"remote '%s'; pull it first", l->name, l->repo, rname);
				st->refs_current++;
				return 0;
			}
			if (!rc && !known)
				rc = artifs_error(ARTIFS_ESTALE, "environment '%s' of '%s' was moved on "
					"remote '%s' to a version it never had here; run 'artifs pull %s "
					"%s@%s' first", l->name, l->repo, rname, rname, l->repo, l->name);
			for (size_t i = from; !rc && i < el.n; i++) {
				rc = put_refrec(y, l->repo, l->name, l->ref.kind, seq + 1, &el.v[i].old_id,
					&el.v[i].new_id, el.det[i], &el.v[i]);
				if (!rc)
					seq++;
				else if (rc == ARTIFS_EEXISTS && i > from)
					rc = artifs_error(ARTIFS_ESTALE, "environment '%s' of '%s' moved on "
						"remote '%s' during the push", l->name, l->repo, rname);
			}
			envlog_release(&el);
		}
		if (rc != ARTIFS_EEXISTS)
			break;
		/* lost the race for that record: read the ref again and retry */
		{
			struct refrec rec;
			{
				/* re-list this ref's records */
				char *pfx = artifs_strfmt("refs/%s/%s/", l->repo, l->name);
				if (!pfx)
					return -ENOMEM;
				rc = artifs_remote_list(y->r, pfx, list_ref_cb, y);
				free(pfx);
				if (rc)
					return rc;
			}
			r = rref_find(y, l->repo, l->name);
			if (!r)
				return artifs_error(ARTIFS_ESTALE, "ref '%s' of '%s' vanished on the remote",
					l->name, l->repo);
			if ((rc = get_refrec(y, l->repo, l->name, r->seq, &rec)))
				return rc;
			r->kind = rec.kind;
			r->target = rec.target;
			json_decref(rec.json);
			seq = r->seq;
		}
	}
	if (rc == ARTIFS_EEXISTS)
		rc = artifs_error(ARTIFS_ESTALE, "'%s' of '%s' kept moving on remote '%s'; try again",
			l->name, l->repo, rname);
	if (!rc) {
		st->refs_updated++;
		if (r) {
			r->target = l->ref.target;
			r->seq = seq + 1;
		}
	}
	return rc;
}

int artifs_push(artifs_store *s, const artifs_sync_opts *o, char *const *specs, size_t nspecs,
	artifs_sync_stats *stats)
{
	struct sync y;
	struct walk w;
	struct lrefs l = { 0 };
	artifs_sync_stats st = { 0 };
	int rc, failed = 0;
	char firsterr[1024] = "";

	memset(&w, 0, sizeof(w));
	artifs_oidset_init(&w.seen);
	if ((rc = sync_open(&y, s, o, 1)))
		goto out;
	if ((rc = artifs_rtxn_begin(s, &w.txn)))
		goto out;
	w.y = &y;
	if ((rc = select_local(s, w.txn, specs, nspecs, &l)))
		goto out;
	for (size_t i = 0; !rc && i < l.n; i++) {
		rc = walk_commits(&w, &l.v[i].ref.target);
		if (!rc && l.v[i].ref.kind == ARTIFS_REF_ENV) {
			/* every version the environment's pushed log names */
			struct envlog el = { 0 };
			rc = envlog_load(s, w.txn, l.v[i].repo, l.v[i].name, &el);
			for (size_t k = 0; !rc && k < el.n; k++)
				rc = walk_commits(&w, &el.v[k].new_id);
			envlog_release(&el);
		}
	}
	mdb_txn_abort(w.txn);
	w.txn = NULL;
	if (rc)
		goto out;
	y.prog.phase = "objects";
	y.prog.objects_total = w.chunks.n + w.blobs.n + w.trees.n + w.commits.n;
	y.prog.bytes_total = w.chunks.bytes + w.blobs.bytes + w.trees.bytes + w.commits.bytes;
	progress(&y, 1);
	/* chunks in parallel; then the records, children before parents, one pack at a time */
	if ((rc = send_list(&y, &w.chunks, 1)) || (rc = send_list(&y, &w.blobs, 0)) ||
	    (rc = send_list(&y, &w.trees, 0)) || (rc = send_list(&y, &w.commits, 0)))
		goto out;
	y.prog.phase = "refs";
	progress(&y, 1);
	if ((rc = artifs_rtxn_begin(s, &w.txn)))
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		int r1 = push_ref(&y, w.txn, &l.v[i], &st);
		if (r1 && r1 != ARTIFS_ESTALE && r1 != ARTIFS_EIMMUTABLE && r1 != ARTIFS_EEXISTS) {
			rc = r1;
			break;
		}
		if (r1) {
			if (!failed++)
				snprintf(firsterr, sizeof(firsterr), "%s", artifs_error_last());
			else
				warn(&y, 1, "%s", artifs_error_last());
		}
	}
	if (!rc && failed)
		rc = artifs_error(ARTIFS_ESTALE, "%s%s", firsterr,
			failed > 1 ? " (and other refs, above)" : "");
out:
	if (w.txn)
		mdb_txn_abort(w.txn);
	st.objects = y.prog.objects;
	st.bytes = y.prog.bytes;
	st.packs = y.prog.packs;
	st.objects_skipped = w.skipped;
	progress(&y, 1);
	sync_close(&y, &st);
	if (stats)
		*stats = st;
	free(w.chunks.v);
	free(w.blobs.v);
	free(w.trees.v);
	free(w.commits.v);
	artifs_oidset_release(&w.seen);
	lrefs_release(&l);
	return rc;
}

/* ---- pull ---- */

/* An object fetched from the remote, kept until it is written. */
struct fobj {
	artifs_oid id;
	uint8_t kind;
	uint8_t *data;
	uint32_t len;
};

struct fetchset {
	const artifs_pack_entry **want;	/* sorted by pack, offset */
	size_t n, cap;
};

struct fetched {
	struct fobj *v;
	size_t n, cap;
};

struct range {
	size_t first, count;	/* entries of the fetchset */
};

struct filled {
	struct filled *next;
	size_t range;
	uint8_t *buf;
	uint64_t len;
};

struct rangejob {
	struct fetchset *fs;
	struct range *ranges;
	size_t nranges;
	struct fetched *out;		/* records: kept in memory */
	int write_chunks;		/* chunks: queued for this thread to write */
	struct filled *head, **tail;
	uint64_t queued;		/* bytes in the queue */
};

/* At most this many fetched bytes wait for the writer. */
#define QUEUE_MAX (192u << 20)

static int cmp_want(const void *a, const void *b)
{
	const artifs_pack_entry *x = *(const artifs_pack_entry *const *)a;
	const artifs_pack_entry *y = *(const artifs_pack_entry *const *)b;

	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

static int fetchset_add(struct fetchset *f, const artifs_pack_entry *e)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 1024;
		void *p = realloc(f->want, cap * sizeof(*f->want));
		if (!p)
			return -ENOMEM;
		f->want = p;
		f->cap = cap;
	}
	f->want[f->n++] = e;
	return 0;
}

/* The writer: chunks into the store in transactions of about 64 MiB. */
static void write_queue(struct pool *p, void *arg)
{
	struct rangejob *j = arg;
	struct sync *y = p->y;
	MDB_txn *txn = NULL;
	uint64_t inbatch = 0;
	int rc = 0;

	pthread_mutex_lock(&y->mu);
	for (;;) {
		struct filled *f;
		while (!j->head && p->running)
			pthread_cond_wait(&p->cond, &y->mu);
		if (!j->head)
			break;
		f = j->head;
		j->head = f->next;
		if (!j->head)
			j->tail = &j->head;
		j->queued -= f->len;
		pthread_cond_broadcast(&p->cond);
		rc = p->rc;
		pthread_mutex_unlock(&y->mu);
		if (!rc) {
			const struct range *g = &j->ranges[f->range];
			uint64_t base = j->fs->want[g->first]->off;
			if (!txn)
				rc = artifs_wtxn_begin(y->s, (size_t)f->len + (96u << 20), &txn);
			for (size_t i = 0; !rc && i < g->count; i++) {
				const artifs_pack_entry *e = j->fs->want[g->first + i];
				rc = artifs_store_put(txn, y->s->chunks, &e->id, f->buf + (e->off - base),
					e->len);
				if (rc == MDB_MAP_FULL)
					rc = artifs_error(ARTIFS_ELMDB, "the store's map is full");
				if (rc > 0)
					rc = 0;
			}
			inbatch += f->len;
			if (!rc && inbatch >= (64u << 20)) {
				rc = artifs_txn_commit(txn);
				txn = NULL;
				inbatch = 0;
			}
		}
		free(f->buf);
		free(f);
		pthread_mutex_lock(&y->mu);
		pool_fail(p, rc);
	}
	pthread_mutex_unlock(&y->mu);
	if (txn) {
		if (!rc)
			rc = artifs_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		pthread_mutex_lock(&y->mu);
		pool_fail(p, rc);
		pthread_mutex_unlock(&y->mu);
	}
}

static int range_fn(struct pool *p, artifs_remote *r, size_t job, void *arg)
{
	struct rangejob *j = arg;
	struct sync *y = p->y;
	struct range *g = &j->ranges[job];
	const artifs_pack_entry *a = j->fs->want[g->first];
	const artifs_pack_entry *z = j->fs->want[g->first + g->count - 1];
	uint64_t off = a->off, end = z->off + z->len;
	uint8_t *buf = malloc(end - off ? end - off : 1);
	char *key;
	int rc;

	if (!buf)
		return -ENOMEM;
	if (!(key = artifs_strfmt("packs/%s.pack", y->packs[a->pack]))) {
		free(buf);
		return -ENOMEM;
	}
	rc = artifs_remote_get_range(r, key, off, end - off, buf);
	for (size_t i = 0; !rc && i < g->count; i++) {
		const artifs_pack_entry *e = j->fs->want[g->first + i];
		const uint8_t *d = buf + (e->off - off);
		if ((rc = artifs_obj_verify(e->kind, &e->id, d, e->len))) {
			char hex[ARTIFS_OID_HEXSZ + 1];
			rc = artifs_error(ARTIFS_ECORRUPT, "%s %s in pack %s on remote '%s' does not "
				"match its id; nothing of it was stored", kind_name(e->kind),
				artifs_oid_fmt(hex, &e->id), y->packs[e->pack], artifs_remote_url(r));
			break;
		}
		if (!j->write_chunks) {
			struct fobj f = { e->id, e->kind, malloc(e->len ? e->len : 1), e->len };
			if (!f.data) {
				rc = -ENOMEM;
				break;
			}
			memcpy(f.data, d, e->len);
			pthread_mutex_lock(&y->mu);
			if (j->out->n == j->out->cap) {
				size_t cap = j->out->cap ? j->out->cap * 2 : 1024;
				void *q = realloc(j->out->v, cap * sizeof(*j->out->v));
				if (!q) {
					pthread_mutex_unlock(&y->mu);
					free(f.data);
					rc = -ENOMEM;
					break;
				}
				j->out->v = q;
				j->out->cap = cap;
			}
			j->out->v[j->out->n++] = f;
			pthread_mutex_unlock(&y->mu);
		}
	}
	if (!rc) {
		struct filled *f = NULL;
		if (j->write_chunks && !(f = malloc(sizeof(*f))))
			rc = -ENOMEM;
		pthread_mutex_lock(&y->mu);
		if (f) {
			/* wait for room: the writer is the slower side on a fast link */
			while (j->queued && j->queued + (end - off) > QUEUE_MAX && !p->rc)
				pthread_cond_wait(&p->cond, &y->mu);
			f->next = NULL;
			f->range = job;
			f->buf = buf;
			f->len = end - off;
			buf = NULL;
			*j->tail = f;
			j->tail = &f->next;
			j->queued += f->len;
			pthread_cond_broadcast(&p->cond);
		}
		y->prog.objects += g->count;
		y->prog.bytes += end - off;
		progress(y, 0);
		pthread_mutex_unlock(&y->mu);
	}
	free(key);
	free(buf);
	return rc;
}

/* Fetch every entry of `fs`: records into `out`, or chunks straight into the store. */
static int fetch(struct sync *y, struct fetchset *fs, struct fetched *out, int chunks)
{
	struct rangejob j;
	size_t i = 0;
	int rc;

	memset(&j, 0, sizeof(j));
	if (!fs->n)
		return 0;
	qsort(fs->want, fs->n, sizeof(*fs->want), cmp_want);
	j.fs = fs;
	j.out = out;
	j.write_chunks = chunks;
	j.tail = &j.head;
	j.ranges = malloc(fs->n * sizeof(*j.ranges));
	if (!j.ranges)
		return -ENOMEM;
	while (i < fs->n) {
		size_t k = i + 1;
		uint64_t start = fs->want[i]->off;
		while (k < fs->n && fs->want[k]->pack == fs->want[i]->pack &&
		       fs->want[k]->off <= fs->want[k - 1]->off + fs->want[k - 1]->len + RANGE_GAP &&
		       fs->want[k]->off + fs->want[k]->len - start <= RANGE_MAX)
			k++;
		j.ranges[j.nranges].first = i;
		j.ranges[j.nranges].count = k - i;
		j.nranges++;
		i = k;
	}
	rc = pool_run(y, j.nranges, range_fn, &j, chunks ? write_queue : NULL);
	while (j.head) {
		struct filled *f = j.head;
		j.head = f->next;
		free(f->buf);
		free(f);
	}
	free(j.ranges);
	return rc;
}

static int local_has(artifs_store *s, MDB_txn *txn, uint8_t kind, const artifs_oid *id)
{
	MDB_val k = { 16, (void *)id->id }, v;

	return mdb_get(txn, kind_dbi(s, kind), &k, &v) == 0;
}

struct pull {
	struct sync *y;
	MDB_txn *txn;			/* read: what is local */
	artifs_oidset queued;
	struct fetched recs;
	struct fetchset next;
	uint64_t chunk_bytes;
};

/* Queue `id` unless it is local or queued; the remote must have it. */
static int want(struct pull *p, uint8_t kind, const artifs_oid *id, struct fetchset *into)
{
	const artifs_pack_entry *e;
	int rc;

	if (artifs_oid_is_zero(id) || local_has(p->y->s, p->txn, kind, id))
		return 0;
	if ((rc = artifs_oidset_add(&p->queued, id)) <= 0)
		return rc;
	e = remote_find(p->y, id);
	if (!e || e->kind != kind) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		return artifs_error(ARTIFS_ENOTFOUND, "%s %s is not on remote '%s' (an interrupted "
			"push from elsewhere?)", kind_name(kind), artifs_oid_fmt(hex, id),
			artifs_remote_url(p->y->r));
	}
	return fetchset_add(into, e);
}

/* Decode the records fetched from `from` on and queue what they name. */
static int expand(struct pull *p, size_t from, struct fetchset *recs, struct fetchset *chunks)
{
	int rc = 0;

	for (size_t i = from; !rc && i < p->recs.n; i++) {
		struct fobj *f = &p->recs.v[i];
		if (f->kind == ARTIFS_OBJ_COMMIT) {
			artifs_commit *c;
			if ((rc = artifs_commit_decode(&c, f->data, f->len)))
				break;
			rc = want(p, ARTIFS_OBJ_TREE, &c->tree, recs);
			if (!rc)
				rc = want(p, ARTIFS_OBJ_BLOB, &c->labels, recs);
			for (uint32_t k = 0; !rc && k < c->nparents; k++)
				rc = want(p, ARTIFS_OBJ_COMMIT, &c->parents[k], recs);
			artifs_commit_free(c);
		} else if (f->kind == ARTIFS_OBJ_TREE) {
			artifs_tree_view t;
			if ((rc = artifs_tree_parse(&t, f->data, f->len)) || (rc = artifs_tree_validate(&t)))
				break;
			for (uint32_t k = 0; !rc && k < t.count; k++) {
				artifs_tree_entry e;
				if ((rc = artifs_tree_entry_at(&t, k, &e)))
					break;
				rc = want(p, e.type == ARTIFS_T_DIR ? ARTIFS_OBJ_TREE : ARTIFS_OBJ_BLOB,
					&e.id, recs);
				if (!rc)
					rc = want(p, ARTIFS_OBJ_LABELSET, &e.labels, recs);
			}
		} else if (f->kind == ARTIFS_OBJ_BLOB) {
			artifs_blob_view b;
			if ((rc = artifs_blob_parse(&b, f->data, f->len)))
				break;
			for (uint32_t k = 0; !rc && k < b.nchunks; k++) {
				artifs_oid c;
				artifs_blob_chunk_id(&b, k, &c);
				rc = want(p, ARTIFS_OBJ_CHUNK, &c, chunks);
			}
		}
	}
	return rc;
}

static int write_records(struct sync *y, MDB_txn *txn, const struct fetched *recs)
{
	int rc = 0;

	for (size_t i = 0; !rc && i < recs->n; i++) {
		const struct fobj *f = &recs->v[i];
		rc = artifs_store_put(txn, kind_dbi(y->s, f->kind), &f->id, f->data, f->len);
		if (rc > 0)
			rc = 0;
	}
	return rc;
}

/*
 * An environment moved on the remote: replay its records after the one
 * that holds the local value (all of them when the environment is new
 * here), so the local history shows each promotion with its details.
 */
static int env_replay(struct sync *y, MDB_txn *txn, const struct rref *r, const artifs_ref *cur,
	const char *rname, artifs_sync_stats *st)
{
	struct refrec *recs = calloc(r->seq ? r->seq : 1, sizeof(*recs));
	size_t from = 0;
	int known = !cur || artifs_oid_is_zero(&cur->target), exists = cur != NULL, rc = 0;
	artifs_oid prev = { { 0 } };

	if (!recs)
		return -ENOMEM;
	for (uint64_t i = 0; !rc && i < r->seq; i++) {
		rc = get_refrec(y, r->repo, r->name, i + 1, &recs[i]);
		if (rc == ARTIFS_ENOTFOUND) {
			recs[i].kind = 0;	/* a gap: cannot happen with exclusive creates */
			rc = 0;
		}
	}
	if (cur) {
		struct envlog el = { 0 };
		prev = cur->target;
		for (uint64_t i = 0; !rc && i < r->seq; i++)
			if (recs[i].json && !artifs_oid_cmp(&recs[i].target, &cur->target)) {
				known = 1;
				from = i + 1;
			}
		/* the last move here came from this remote: go on after the record it copied */
		rc = envlog_load(y->s, txn, r->repo, r->name, &el);
		if (!rc && el.n && el.det[el.n - 1]) {
			json_t *d = json_loads(el.det[el.n - 1], 0, NULL);
			const char *from_name = json_string_value(json_object_get(d, "pulled_from"));
			uint64_t k = (uint64_t)json_integer_value(json_object_get(d, "remote_seq"));
			if (from_name && !strcmp(from_name, rname) && k >= 1 && k <= r->seq &&
			    recs[k - 1].json && !artifs_oid_cmp(&recs[k - 1].target, &cur->target)) {
				known = 1;
				from = k;
			}
			json_decref(d);
		}
		envlog_release(&el);
	}
	if (!rc && !known)
		rc = artifs_error(ARTIFS_ESTALE, "environment '%s' of '%s' was moved here to a "
			"version remote '%s' never had; push it ('artifs push %s %s@%s') or "
			"promote again", r->name, r->repo, rname, rname, r->repo, r->name);
	for (uint64_t i = from; !rc && i < r->seq; i++) {
		json_t *orig, *d;
		const char *op;
		char *dj, *msg;
		if (!recs[i].json)
			continue;
		orig = json_object_get(recs[i].json, "details");
		op = json_string_value(json_object_get(orig, "op"));
		d = json_object();
		json_object_set_new(d, "pulled_from", json_string(rname));
		json_object_set_new(d, "remote_seq", json_integer((json_int_t)(i + 1)));
		if (json_is_object(orig))
			json_object_set(d, "origin", orig);
		dj = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(d);
		{
			const char *m = json_string_value(json_object_get(recs[i].json, "message"));
			msg = m ? strdup(m) : artifs_strfmt("pull from %s", rname);
		}
		if (!dj || !msg)
			rc = -ENOMEM;
		else
			rc = artifs_ref_update_ex(y->s, txn, r->repo, r->name, ARTIFS_REF_ENV,
				exists ? &prev : NULL, &recs[i].target,
				json_string_value(json_object_get(recs[i].json, "author")) ?
				json_string_value(json_object_get(recs[i].json, "author")) :
				artifs_author_default(),
				msg, op ? op : "pull", dj, NULL);
		free(dj);
		free(msg);
		prev = recs[i].target;
		exists = 1;
	}
	if (!rc && from < r->seq)
		st->refs_updated++;
	else if (!rc)
		st->refs_current++;
	for (uint64_t i = 0; i < r->seq; i++)
		json_decref(recs[i].json);
	free(recs);
	return rc;
}

static int pull_ref(struct sync *y, MDB_txn *txn, const struct rref *r, artifs_sync_stats *st)
{
	artifs_ref cur;
	const char *rname = y->o->name ? y->o->name : artifs_remote_url(y->r);
	char *msg = artifs_strfmt("pull from %s", rname);
	char *det = artifs_strfmt("{\"remote\":\"%s\",\"remote_seq\":%llu}", rname,
		(unsigned long long)r->seq);
	int rc = artifs_ref_get(&cur, y->s, txn, r->repo, r->name);

	if (!msg || !det) {
		rc = -ENOMEM;
		goto out;
	}
	if (rc == ARTIFS_ENOTFOUND && r->kind == ARTIFS_REF_ENV) {
		rc = env_replay(y, txn, r, NULL, rname, st);
		goto out;
	}
	if (rc == ARTIFS_ENOTFOUND) {
		rc = artifs_ref_update_ex(y->s, txn, r->repo, r->name, r->kind, NULL, &r->target,
			artifs_author_default(), msg, "pull", det, NULL);
		if (!rc)
			st->refs_updated++;
		goto out;
	}
	if (rc)
		goto out;
	if (cur.kind != r->kind) {
		rc = artifs_error(ARTIFS_EEXISTS, "'%s' of '%s' is %s here but %s on remote '%s'",
			r->name, r->repo, artifs_ref_kind_name(cur.kind), artifs_ref_kind_name(r->kind),
			rname);
		goto out;
	}
	if (!artifs_oid_cmp(&cur.target, &r->target) && r->kind != ARTIFS_REF_ENV) {
		st->refs_current++;
		goto out;
	}
	if (r->kind == ARTIFS_REF_TAG) {
		rc = artifs_error(ARTIFS_EIMMUTABLE, "tag '%s' of '%s' names a different commit on "
			"remote '%s'; tags never move (delete neither: rename one of them)", r->name,
			r->repo, rname);
		goto out;
	}
	if (r->kind == ARTIFS_REF_BRANCH) {
		int fwd = is_ancestor(y->s, txn, &cur.target, &r->target), back;
		if (fwd < 0) {
			rc = fwd;
			goto out;
		}
		if (!fwd) {
			back = is_ancestor(y->s, txn, &r->target, &cur.target);
			if (back < 0) {
				rc = back;
				goto out;
			}
			if (back) {	/* local is ahead: push to publish it */
				st->refs_current++;
				goto out;
			}
			rc = artifs_error(ARTIFS_ESTALE, "branch '%s' of '%s' has diverged from remote "
				"'%s': both have commits the other lacks; commit your work to a new "
				"branch ('artifs branch %s NEW %s'), then reset this one by pulling into a "
				"fresh store, or push yours under another name", r->name, r->repo, rname,
				r->repo, r->name);
			goto out;
		}
	} else {
		rc = env_replay(y, txn, r, &cur, rname, st);
		goto out;
	}
	rc = artifs_ref_update_ex(y->s, txn, r->repo, r->name, r->kind, &cur.target, &r->target,
		artifs_author_default(), msg, "pull", det, NULL);
	if (!rc)
		st->refs_updated++;
out:
	free(msg);
	free(det);
	return rc;
}

static int rref_selected(const struct rref *r, char *const *specs, size_t nspecs)
{
	if (!nspecs)
		return 1;
	for (size_t i = 0; i < nspecs; i++) {
		char repo[ARTIFS_REF_NAME_MAX + 16];
		const char *ref;
		if (split_spec(specs[i], repo, sizeof(repo), &ref))
			continue;
		if (!strcmp(repo, r->repo) && (!ref || !strcmp(ref, r->name)))
			return 1;
	}
	return 0;
}

int artifs_pull(artifs_store *s, const artifs_sync_opts *o, char *const *specs, size_t nspecs,
	artifs_sync_stats *stats)
{
	struct sync y;
	struct pull p;
	struct fetchset recs = { 0 }, chunks = { 0 };
	artifs_sync_stats st = { 0 };
	MDB_txn *wtxn = NULL;
	int rc, locked = 0, failed = 0;
	char firsterr[1024] = "";

	memset(&p, 0, sizeof(p));
	artifs_oidset_init(&p.queued);
	for (size_t i = 0; i < nspecs; i++) {
		char repo[ARTIFS_REF_NAME_MAX + 16];
		const char *ref;
		if ((rc = split_spec(specs[i], repo, sizeof(repo), &ref)))
			return rc;
	}
	if ((rc = sync_open(&y, s, o, 0)))
		goto out;
	for (size_t i = 0; i < nspecs; i++) {
		size_t k;
		for (k = 0; k < y.nrefs && !rref_selected(&y.refs[k], &specs[i], 1); k++)
			;
		if (k == y.nrefs) {
			rc = artifs_error(ARTIFS_ENOTFOUND, "remote '%s' has no '%s'",
				o->name ? o->name : o->url, specs[i]);
			goto out;
		}
	}
	/* gc must not delete fetched objects before the refs name them */
	if ((rc = artifs_store_lock(s, 0, 1)))
		goto out;
	locked = 1;
	p.y = &y;
	if ((rc = artifs_rtxn_begin(s, &p.txn)))
		goto out;
	y.prog.phase = "trees";
	for (size_t i = 0; !rc && i < y.nrefs; i++)
		if (rref_selected(&y.refs[i], specs, nspecs))
			rc = want(&p, ARTIFS_OBJ_COMMIT, &y.refs[i].target, &recs);
	/* commits, then trees level by level, then manifests: one batch of ranged reads each */
	while (!rc && recs.n) {
		size_t from = p.recs.n;
		rc = fetch(&y, &recs, &p.recs, 0);
		recs.n = 0;
		if (!rc)
			rc = expand(&p, from, &recs, &chunks);
	}
	if (rc)
		goto out;
	mdb_txn_abort(p.txn);
	p.txn = NULL;
	if (o->records_only)
		chunks.n = 0;	/* fetched as they are read */
	y.prog.phase = "objects";
	for (size_t i = 0; i < chunks.n; i++)
		y.prog.bytes_total += chunks.want[i]->len;
	y.prog.objects_total = y.prog.objects + chunks.n;
	progress(&y, 1);
	if ((rc = fetch(&y, &chunks, NULL, 1)))
		goto out;
	/* records and refs in one transaction: a version appears whole or not at all */
	{
		size_t need = 1u << 20;
		for (size_t i = 0; i < p.recs.n; i++)
			need += p.recs.v[i].len + 64;
		if ((rc = artifs_wtxn_begin(s, need + need / 2, &wtxn)))
			goto out;
	}
	if ((rc = write_records(&y, wtxn, &p.recs)))
		goto out;
	y.prog.phase = "refs";
	for (size_t i = 0; i < y.nrefs; i++) {
		const struct rref *r = &y.refs[i];
		int r1;
		if (!rref_selected(r, specs, nspecs))
			continue;
		r1 = artifs_repo_check(s, wtxn, r->repo);
		if (r1 == ARTIFS_ENOTFOUND) {
			/* a repository new here: create it inside this transaction */
			MDB_val k = { strlen(r->repo), (void *)r->repo }, v;
			uint8_t rec[16] = { 1 };
			put_le64(rec + 8, (uint64_t)time(NULL));
			v.mv_data = rec;
			v.mv_size = sizeof(rec);
			r1 = mdb_put(wtxn, s->repos, &k, &v, MDB_NOOVERWRITE);
			if (r1)
				r1 = artifs_error_lmdb(r1, "cannot create repository");
		}
		if (!r1)
			r1 = pull_ref(&y, wtxn, r, &st);
		if (r1 && r1 != ARTIFS_ESTALE && r1 != ARTIFS_EIMMUTABLE && r1 != ARTIFS_EEXISTS) {
			rc = r1;
			goto out;
		}
		if (r1) {
			if (!failed++)
				snprintf(firsterr, sizeof(firsterr), "%s", artifs_error_last());
			else
				warn(&y, 1, "%s", artifs_error_last());
		}
	}
	rc = artifs_txn_commit(wtxn);
	wtxn = NULL;
	if (!rc && failed)
		rc = artifs_error(ARTIFS_ESTALE, "%s%s", firsterr,
			failed > 1 ? " (and other refs, above)" : "");
out:
	if (wtxn)
		mdb_txn_abort(wtxn);
	if (p.txn)
		mdb_txn_abort(p.txn);
	if (locked)
		artifs_store_unlock(s);
	st.objects = y.prog.objects;
	st.bytes = y.prog.bytes;
	progress(&y, 1);
	sync_close(&y, &st);
	if (stats)
		*stats = st;
	for (size_t i = 0; i < p.recs.n; i++)
		free(p.recs.v[i].data);
	free(p.recs.v);
	free(recs.want);
	free(chunks.want);
	artifs_oidset_release(&p.queued);
	return rc;
}

/* ---- the remote's index on its own ---- */

struct artifs_rindex {
	struct sync y;
};

int artifs_rindex_load(artifs_rindex **out, const artifs_sync_opts *o)
{
	artifs_rindex *ix = calloc(1, sizeof(*ix));
	int rc;

	*out = NULL;
	if (!ix)
		return -ENOMEM;
	ix->y.o = o;
	ix->y.jobs = 1;
	ix->y.t0 = now_s();
	pthread_mutex_init(&ix->y.mu, NULL);
	rc = artifs_remote_open(&ix->y.r, o->url, o->ropts, 0);
	if (!rc)
		rc = load_index(&ix->y);
	if (rc) {
		artifs_rindex_free(ix);
		return rc;
	}
	*out = ix;
	return 0;
}

const artifs_pack_entry *artifs_rindex_find(const artifs_rindex *ix, const artifs_oid *id,
	const char **pack)
{
	const artifs_pack_entry *e = remote_find(&ix->y, id);

	if (e && pack)
		*pack = ix->y.packs[e->pack];
	return e;
}

void artifs_rindex_free(artifs_rindex *ix)
{
	if (!ix)
		return;
	sync_close(&ix->y, NULL);
	free(ix);
}
