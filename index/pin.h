/*
 * pin.h - commits a live reader needs, kept safe from gc.
 *
 * A long-lived reader (the mount daemon) may serve a version whose ref has
 * moved on.  It lists the commits it still serves in a pin file,
 * STORE/pins/PID.pin, which it holds flock()ed while it lives.  gc treats
 * the commits of every locked pin file as roots and deletes pin files whose
 * holder is gone.  Writers of pins hold
 * the pin gate (STORE/pins/gate) shared, so a gc, which holds the gate
 * exclusive while it marks and sweeps, sees every pin written before it
 * started, and a reader that pins after it reads the refs gc left.  The
 * gate is apart from the store lock so a reader never makes gc look like a
 * running commit, and gc waits for it instead of failing.
 */
#ifndef ARTIFS_PIN_H
#define ARTIFS_PIN_H

#include <stddef.h>

#include "oid.h"
#include "oidset.h"
#include "store.h"

typedef struct artifs_pins artifs_pins;

/* Create and lock this process's pin file (empty). */
int artifs_pins_open(artifs_pins **out, artifs_store *s);
/* Replace the pinned set with ids[0..n) (written whole, then renamed in). */
int artifs_pins_write(artifs_pins *p, const artifs_oid *ids, size_t n);
/* Hold / release the pin gate shared (a reader about to pin). */
int artifs_pins_gate(artifs_pins *p);
void artifs_pins_ungate(artifs_pins *p);

/* Remove the pin file and release it; NULL is a no-op. */
void artifs_pins_free(artifs_pins *p);

/*
 * gc: take the gate exclusive (waiting for readers pinning now); returns
 * a descriptor for artifs_pins_gate_close(), or a negative error.
 */
int artifs_pins_gate_exclusive(artifs_store *s);
void artifs_pins_gate_close(int fd);

/*
 * Every commit pinned by a live holder, added to `out`; stale pin files
 * are removed.  Call holding the gate exclusive.
 */
int artifs_pins_collect(artifs_store *s, artifs_oidset *out);

#endif
