/*
 * archfmt.c - archive format names.  Apart from archio.c, which needs
 * libarchive and is loaded only by the commands that read or write
 * archives, so that choosing a format costs no library load.
 */
#include "archio.h"

#include <string.h>

int artifs_archive_format_parse(const char *s, enum artifs_archive_format *out)
{
	if (!strcmp(s, "tar"))
		*out = ARTIFS_ARCHIVE_TAR;
	else if (!strcmp(s, "tar.gz") || !strcmp(s, "tgz"))
		*out = ARTIFS_ARCHIVE_TGZ;
	else if (!strcmp(s, "tar.zst") || !strcmp(s, "tzst"))
		*out = ARTIFS_ARCHIVE_TZST;
	else if (!strcmp(s, "zip"))
		*out = ARTIFS_ARCHIVE_ZIP;
	else
		return -1;
	return 0;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

enum artifs_archive_format artifs_archive_format_of(const char *name)
{
	if (ends_with(name, ".tar.gz") || ends_with(name, ".tgz"))
		return ARTIFS_ARCHIVE_TGZ;
	if (ends_with(name, ".tar.zst") || ends_with(name, ".tzst"))
		return ARTIFS_ARCHIVE_TZST;
	if (ends_with(name, ".zip"))
		return ARTIFS_ARCHIVE_ZIP;
	if (ends_with(name, ".tar"))
		return ARTIFS_ARCHIVE_TAR;
	return ARTIFS_ARCHIVE_AUTO;
}
