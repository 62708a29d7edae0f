/*
 * pin.c - pin files.  Layout of STORE/pins/PID.pin (text):
 *
 *   artifs-pins 1
 *   <32 hex digits>            one pinned commit per line
 *
 * The holder keeps STORE/pins/PID.lock flock()ed (LOCK_EX) for its whole
 * life; the pin file itself is replaced by rename, so readers never see a
 * half-written list.  A lock file nobody holds means its process is gone.
 * STORE/pins/gate is the gate: shared while a reader pins, exclusive while
 * gc runs.
 */
#include "pin.h"
#include "codec.h"
#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIN_MAGIC "artifs-pins 1\n"

struct artifs_pins {
	char *dir;		/* STORE/pins */
	char *lock_path, *pin_path, *tmp_path;
	int lock_fd;
	int gate_fd;		/* STORE/pins/gate */
};

/* Open (creating) STORE/pins/gate; a descriptor or a negative error. */
static int open_gate(const char *store)
{
	char *dir = artifs_strfmt("%s/pins", store), *path = artifs_strfmt("%s/pins/gate", store);
	int fd = -1;

	if (!dir || !path) {
		fd = artifs_error(-ENOMEM, "out of memory");
	} else if (mkdir(dir, 0755) && errno != EEXIST) {
		fd = artifs_error(-errno, "cannot create '%s': %s", dir, strerror(errno));
	} else if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		fd = artifs_error(-errno, "cannot open '%s': %s", path, strerror(errno));
	}
	free(dir);
	free(path);
	return fd;
}

static int gate_lock(int fd, int how)
{
	while (flock(fd, how) < 0)
		if (errno != EINTR)
			return artifs_error(-errno, "cannot lock the pin gate: %s", strerror(errno));
	return 0;
}

int artifs_pins_gate(artifs_pins *p)
{
	return gate_lock(p->gate_fd, LOCK_SH);
}

void artifs_pins_ungate(artifs_pins *p)
{
	flock(p->gate_fd, LOCK_UN);
}

int artifs_pins_gate_exclusive(artifs_store *s)
{
	int fd = open_gate(artifs_store_path(s)), rc;

	if (fd < 0)
		return fd;
	if ((rc = gate_lock(fd, LOCK_EX))) {
		close(fd);
		return rc;
	}
	return fd;
}

void artifs_pins_gate_close(int fd)
{
	if (fd >= 0)
		close(fd);	/* releases the lock */
}

int artifs_pins_open(artifs_pins **out, artifs_store *s)
{
	artifs_pins *p = calloc(1, sizeof(*p));
	int pid = (int)getpid(), rc;

	*out = NULL;
	if (!p)
		return artifs_error(-ENOMEM, "out of memory");
	p->lock_fd = p->gate_fd = -1;
	if (!(p->dir = artifs_strfmt("%s/pins", artifs_store_path(s))) ||
	    !(p->lock_path = artifs_strfmt("%s/%d.lock", p->dir, pid)) ||
	    !(p->pin_path = artifs_strfmt("%s/%d.pin", p->dir, pid)) ||
	    !(p->tmp_path = artifs_strfmt("%s/%d.tmp", p->dir, pid))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto fail;
	}
	if (mkdir(p->dir, 0755) && errno != EEXIST) {
		rc = artifs_error(-errno, "cannot create '%s': %s", p->dir, strerror(errno));
		goto fail;
	}
	if ((p->lock_fd = open(p->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 ||
	    flock(p->lock_fd, LOCK_EX | LOCK_NB)) {
		rc = artifs_error(-errno, "cannot lock '%s': %s", p->lock_path, strerror(errno));
		goto fail;
	}
	if ((p->gate_fd = open_gate(artifs_store_path(s))) < 0) {
		rc = p->gate_fd;
		goto fail;
	}
	if ((rc = artifs_pins_write(p, NULL, 0)))
		goto fail;
	*out = p;
	return 0;
fail:
	artifs_pins_free(p);
	return rc;
}

int artifs_pins_write(artifs_pins *p, const artifs_oid *ids, size_t n)
{
	char hex[ARTIFS_OID_HEXSZ + 2];
	FILE *f = fopen(p->tmp_path, "we");
	int ok;

	if (!f)
		return artifs_error(-errno, "cannot write '%s': %s", p->tmp_path, strerror(errno));
	ok = fputs(PIN_MAGIC, f) >= 0;
	for (size_t i = 0; ok && i < n; i++) {
		artifs_oid_fmt(hex, &ids[i]);
		ok = fprintf(f, "%s\n", hex) > 0;
	}
	/* no fsync: pins only matter while the holder lives, not across a crash */
	if (fclose(f) || !ok || rename(p->tmp_path, p->pin_path)) {
		int e = errno;

		unlink(p->tmp_path);
		return artifs_error(-e, "cannot write '%s': %s", p->pin_path, strerror(e));
	}
	return 0;
}

void artifs_pins_free(artifs_pins *p)
{
	if (!p)
		return;
	if (p->lock_fd >= 0) {
		unlink(p->pin_path);
		unlink(p->lock_path);
		close(p->lock_fd);
	}
	if (p->gate_fd >= 0)
		close(p->gate_fd);
	free(p->dir);
	free(p->lock_path);
	free(p->pin_path);
	free(p->tmp_path);
	free(p);
}

/* Read the ids of one pin file into out; a malformed file is an error. */
static int read_pins(const char *path, artifs_oidset *out)
{
	FILE *f = fopen(path, "re");
	char line[128];
	int rc = 0, first = 1;

	if (!f)
		return errno == ENOENT ? 0 : artifs_error(-errno, "cannot read '%s': %s", path, strerror(errno));
	while (!rc && fgets(line, sizeof(line), f)) {
		artifs_oid id;
		size_t len = strlen(line);

		if (first) {
			first = 0;
			if (strcmp(line, PIN_MAGIC))
				rc = artifs_error(ARTIFS_ECORRUPT, "'%s' is not a pin file", path);
			continue;
		}
		if (len && line[len - 1] == '\n')
			line[--len] = '\0';
		if (artifs_oid_parse(&id, line))
			rc = artifs_error(ARTIFS_ECORRUPT, "'%s': bad line '%s'", path, line);
		else if ((rc = artifs_oidset_add(out, &id)) > 0)
			rc = 0;
	}
	fclose(f);
	return rc;
}

int artifs_pins_collect(artifs_store *s, artifs_oidset *out)
{
	char *dir = artifs_strfmt("%s/pins", artifs_store_path(s));
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (!dir)
		return artifs_error(-ENOMEM, "out of memory");
	if (!(d = opendir(dir))) {
		rc = errno == ENOENT ? 0 : artifs_error(-errno, "cannot read '%s': %s", dir, strerror(errno));
		free(dir);
		return rc;
	}
	while (!rc && (de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char *lock, *pin;
		int fd;

		if (len < 6 || strcmp(de->d_name + len - 5, ".lock"))
			continue;
		lock = artifs_strfmt("%s/%s", dir, de->d_name);
		pin = artifs_strfmt("%s/%.*s.pin", dir, (int)(len - 5), de->d_name);
		if (!lock || !pin) {
			rc = artifs_error(-ENOMEM, "out of memory");
		} else if ((fd = open(lock, O_RDWR | O_CLOEXEC)) >= 0) {
			if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
				/* nobody holds it: the reader is gone */
				unlink(pin);
				unlink(lock);
			} else {
				rc = read_pins(pin, out);
			}
			close(fd);
		}
		free(lock);
		free(pin);
	}
	closedir(d);
	free(dir);
	return rc;
}
