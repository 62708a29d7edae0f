/*
 * labelfile.c - label files: CSV (libcsv) and JSON Lines (jansson).
 *
 * Both are read a line at a time so that every problem names its line; a
 * CSV record with a quoted line break is reported at the line it starts on.
 * Nothing here touches the store: the result is a list of edits that
 * artifs_labels_apply() checks against a tree all at once.
 */
#include "label.h"
#include "error.h"

#include <csv.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPORTED 10

struct lf {
	artifs_label_edits *e;
	const char *name;
	artifs_buf errs;
	int nerr;
	uint64_t line;
	int fatal;		/* out of memory: stop */
	artifs_buf quoted;	/* a JSON line with its numbers quoted */
};

static void problem(struct lf *l, uint64_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void problem(struct lf *l, uint64_t line, const char *fmt, ...)
{
	char msg[1024], pre[48];
	va_list ap;

	if (l->nerr++ >= MAX_REPORTED)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(pre, sizeof(pre), "%sline %llu: ", l->errs.len ? "\n  " : "", (unsigned long long)line);
	artifs_buf_put(&l->errs, pre, strlen(pre));
	artifs_buf_put(&l->errs, msg, strlen(msg));
}

/* Check one pair and add it; problems are collected, not returned. */
static int add(struct lf *l, uint64_t line, const char *path, size_t plen, const char *key,
	size_t klen, const char *value, size_t vlen)
{
	int rc;

	if (!plen) {
		problem(l, line, "empty path");
		return 0;
	}
	if (!artifs_label_key_valid(key, klen)) {
		problem(l, line, "invalid label key '%.*s' (1-%d of a-z 0-9 _ . -, starting with a "
			"letter or digit)", (int)(klen > 200 ? 200 : klen), key, ARTIFS_LABEL_KEY_MAX);
		return 0;
	}
	if (value && !artifs_label_value_valid(value, vlen)) {
		problem(l, line, "invalid value for '%.*s' (%s)", (int)klen, key,
			vlen == 0 ? "empty; to remove a label use null in JSON Lines or 'label rm'" :
			vlen > ARTIFS_LABEL_VALUE_MAX ? "longer than 4096 bytes" :
			"must be UTF-8 without NUL or line breaks");
		return 0;
	}
	rc = artifs_label_edits_add(l->e, path, plen, key, klen, value, vlen, line);
	if (rc == ARTIFS_EINVAL) {
		problem(l, line, "%s", artifs_error_last());
		return 0;
	}
	if (rc)
		l->fatal = 1;
	return rc;
}

/* ---- CSV ---- */

struct csvrow {
	struct lf *l;
	char **f;
	size_t *flen;
	size_t n, cap;
	uint64_t row_line;	/* where the current record began */
	int header_done, long_form;
	char **keys;		/* wide form: header keys */
	size_t *klen;
	size_t nkeys;
};

static void csv_field(void *s, size_t len, void *ctx)
{
	struct csvrow *r = ctx;
	char *p;

	if (r->l->fatal)
		return;
	if (r->n == 0)
		r->row_line = r->l->line;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		void *a = realloc(r->f, cap * sizeof(*r->f)), *b;
		if (!a) {
			r->l->fatal = 1;
			return;
		}
		r->f = a;
		if (!(b = realloc(r->flen, cap * sizeof(*r->flen)))) {
			r->l->fatal = 1;
			return;
		}
		r->flen = b;
		r->cap = cap;
	}
	if (!(p = malloc(len + 1))) {
		r->l->fatal = 1;
		return;
	}
	memcpy(p, s, len);
	p[len] = '\0';
	r->f[r->n] = p;
	r->flen[r->n++] = len;
}

static void row_clear(struct csvrow *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->f[i]);
	r->n = 0;
}

static void csv_header(struct csvrow *r)
{
	struct lf *l = r->l;

	r->header_done = 1;
	/* a UTF-8 byte order mark before the first name */
	if (r->n && r->flen[0] >= 3 && !memcmp(r->f[0], "\xef\xbb\xbf", 3)) {
		memmove(r->f[0], r->f[0] + 3, r->flen[0] - 2);
		r->flen[0] -= 3;
	}
	if (r->n < 2 || strcmp(r->f[0], "path")) {
		problem(l, r->row_line, "the header must be 'path,KEY,...' or 'path,key,value'");
		return;
	}
	if (r->n == 3 && !strcmp(r->f[1], "key") && !strcmp(r->f[2], "value")) {
		r->long_form = 1;
		return;
	}
	r->keys = calloc(r->n, sizeof(*r->keys));
	r->klen = calloc(r->n, sizeof(*r->klen));
	if (!r->keys || !r->klen) {
		l->fatal = 1;
		return;
	}
	for (size_t i = 1; i < r->n; i++) {
		if (!artifs_label_key_valid(r->f[i], r->flen[i]))
			problem(l, r->row_line, "column %zu: invalid label key '%s'", i + 1, r->f[i]);
		for (size_t j = 1; j < i; j++)
			if (!strcmp(r->f[i], r->keys[j]))
				problem(l, r->row_line, "column %zu: key '%s' is also column %zu",
					i + 1, r->f[i], j + 1);
		r->keys[i] = r->f[i];
		r->klen[i] = r->flen[i];
		r->f[i] = NULL;
	}
	r->nkeys = r->n;
}

static void csv_row(int c, void *ctx)
{
	struct csvrow *r = ctx;
	struct lf *l = r->l;

	(void)c;
	if (l->fatal)
		return;
	if (!r->header_done) {
		csv_header(r);
	} else if (r->long_form) {
		if (r->n != 3)
			problem(l, r->row_line, "%zu fields; 'path,key,value' rows have 3", r->n);
		else
			add(l, r->row_line, r->f[0], r->flen[0], r->f[1], r->flen[1], r->f[2], r->flen[2]);
	} else if (r->n != r->nkeys) {
		problem(l, r->row_line, "%zu fields; the header has %zu", r->n, r->nkeys);
	} else {
		for (size_t i = 1; i < r->n && !l->fatal; i++)
			if (r->flen[i])	/* an empty cell leaves the key alone */
				add(l, r->row_line, r->f[0], r->flen[0], r->keys[i], r->klen[i],
					r->f[i], r->flen[i]);
	}
	row_clear(r);
}

static int no_space(unsigned char c)
{
	(void)c;
	return 0;	/* keep spaces: they are part of values */
}

static void parse_csv(struct lf *l, FILE *f)
{
	struct csv_parser p;
	struct csvrow r = { 0 };
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	r.l = l;
	if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI)) {
		l->fatal = 1;
		return;
	}
	csv_set_space_func(&p, no_space);
	while (!l->fatal && l->nerr <= MAX_REPORTED && (n = getline(&line, &cap, f)) > 0) {
		l->line++;
		if (csv_parse(&p, line, (size_t)n, csv_field, csv_row, &r) != (size_t)n) {
			problem(l, l->line, "malformed CSV: %s", csv_strerror(csv_error(&p)));
			break;
		}
	}
	if (ferror(f))
		problem(l, l->line + 1, "cannot read: %s", strerror(errno));
	else if (!l->nerr && !l->fatal && csv_fini(&p, csv_field, csv_row, &r))
		problem(l, r.row_line ? r.row_line : l->line,
			"malformed CSV: %s", csv_strerror(csv_error(&p)));
	if (!r.header_done && !l->nerr)
		problem(l, 1, "no header line");
	row_clear(&r);
	for (size_t i = 0; i < r.nkeys; i++)
		free(r.keys[i]);
	free(r.keys);
	free(r.klen);
	free(r.f);
	free(r.flen);
	free(line);
	csv_free(&p);
}

/* ---- JSON Lines ---- */

/*
 * Numbers as written: jansson would turn 1.10 into 1.1 and refuse integers
 * past 64 bits, so every number outside a string is quoted first and
 * arrives as a string holding its own text.
 */
static int quote_numbers(artifs_buf *out, const char *s, size_t len)
{
	int in_str = 0, rc = 0;

	out->len = 0;
	for (size_t i = 0; i < len && !rc; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\' && i + 1 < len) {
				rc = artifs_buf_put(out, s + i, 2);
				i++;
				continue;
			}
			if (c == '"')
				in_str = 0;
		} else if (c == '"') {
			in_str = 1;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t j = i;
			while (j < len && strchr("0123456789.eE+-", s[j]))
				j++;
			if (!(rc = artifs_buf_put(out, "\"", 1)) && !(rc = artifs_buf_put(out, s + i, j - i)))
				rc = artifs_buf_put(out, "\"", 1);
			i = j - 1;
			continue;
		}
		rc = artifs_buf_put(out, &c, 1);
	}
	return rc;
}

static void jsonl_line(struct lf *l, const char *s, size_t len)
{
	json_error_t err;
	json_t *o, *path, *labels, *v;
	const char *key;
	size_t i = 0;

	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	if (i == len)
		return;	/* blank line */
	if (quote_numbers(&l->quoted, s, len)) {
		l->fatal = 1;
		return;
	}
	s = (const char *)l->quoted.ptr;
	len = l->quoted.len;
	if (!(o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &err))) {
		problem(l, l->line, "malformed JSON: %s", err.text);
		return;
	}
	path = json_object_get(o, "path");
	labels = json_object_get(o, "labels");
	if (!json_is_object(o) || !json_is_string(path) || !json_is_object(labels)) {
		problem(l, l->line, "expected {\"path\": \"...\", \"labels\": {...}}");
		goto out;
	}
	json_object_foreach(labels, key, v) {
		const char *val = NULL;
		size_t vlen = 0;
		if (json_is_string(v)) {
			val = json_string_value(v);
			vlen = json_string_length(v);
		} else if (json_is_boolean(v)) {
			val = json_is_true(v) ? "true" : "false";
		} else if (!json_is_null(v)) {
			problem(l, l->line, "label '%s': a value must be a string, number, boolean "
				"or null (null removes the label)", key);
			continue;
		}
		if (val && val != json_string_value(v))
			vlen = strlen(val);
		if (add(l, l->line, json_string_value(path), json_string_length(path), key,
				strlen(key), val, vlen))
			break;
	}
out:
	json_decref(o);
}

static void parse_jsonl(struct lf *l, FILE *f)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	while (!l->fatal && l->nerr <= MAX_REPORTED && (n = getline(&line, &cap, f)) > 0) {
		l->line++;
		jsonl_line(l, line, (size_t)n);
	}
	if (ferror(f))
		problem(l, l->line + 1, "cannot read: %s", strerror(errno));
	free(line);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcasecmp(s + a - b, suffix);
}

int artifs_label_file_parse(artifs_label_edits *e, const char *name, FILE *f,
	enum artifs_label_format fmt)
{
	struct lf l = { 0 };
	FILE *own = NULL;
	int rc = 0;

	l.e = e;
	l.name = name;
	if (fmt == ARTIFS_LABELS_AUTO) {
		if (ends_with(name, ".csv"))
			fmt = ARTIFS_LABELS_CSV;
		else if (ends_with(name, ".jsonl") || ends_with(name, ".ndjson") || ends_with(name, ".json"))
			fmt = ARTIFS_LABELS_JSONL;
		else
			return artifs_error(ARTIFS_EINVAL,
				"cannot tell the format of '%s' from its name; pass --format csv or jsonl", name);
	}
	if (!f) {
		if (!(own = fopen(name, "re")))
			return artifs_error(-errno, "cannot open '%s': %s", name, strerror(errno));
		f = own;
	}
	if (fmt == ARTIFS_LABELS_CSV)
		parse_csv(&l, f);
	else
		parse_jsonl(&l, f);
	if (l.fatal) {
		rc = artifs_error(-ENOMEM, "out of memory reading '%s'", name);
	} else if (l.nerr) {
		if (l.nerr > MAX_REPORTED) {
			char more[64];
			snprintf(more, sizeof(more), "\n  ... and more");
			artifs_buf_put(&l.errs, more, strlen(more));
		}
		artifs_buf_put(&l.errs, "", 1);
		rc = artifs_error(ARTIFS_EINVAL, "%s: refused, nothing changed:\n  %s",
			strcmp(name, "-") ? name : "<stdin>", (char *)l.errs.ptr);
	}
	if (own)
		fclose(own);
	artifs_buf_release(&l.errs);
	artifs_buf_release(&l.quoted);
	return rc;
}
