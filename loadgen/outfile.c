/* loadgen's output files, opened before the run and renamed into place after it; see outfile.h. */
#include "loadgen/outfile.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int lg_outfile_open(struct lg_outfile *f, const char *flag, const char *path, FILE *fp_std, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->flag = flag;
    f->path = path;
    if (!path)
        return 0;
    if (!strcmp(path, "-")) {
        f->fp = fp_std;
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) { /* the rename at the end would fail: say it now */
        snprintf(err, errlen, "%s %s: %s", flag, path, strerror(EISDIR));
        return -1;
    }
    if ((size_t)snprintf(f->tmp, sizeof f->tmp, "%s.tmp", path) >= sizeof f->tmp) {
        snprintf(err, errlen, "%s: path too long", flag);
        return -1;
    }
    if (!(f->fp = fopen(f->tmp, "w"))) {
        snprintf(err, errlen, "%s %s: %s", flag, path, strerror(errno));
        return -1;
    }
    return 0;
}

int lg_outfile_commit(struct lg_outfile *f, char *err, size_t errlen)
{
    if (!f->fp)
        return 0;
    FILE *fp = f->fp;
    f->fp = NULL;
    if (!f->tmp[0])
        return fflush(fp) == 0 ? 0 : (snprintf(err, errlen, "%s: writing stdout: %s", f->flag, strerror(errno)), -1);
    bool bad = ferror(fp) != 0;
    if (fclose(fp) != 0 || bad || rename(f->tmp, f->path) < 0) {
        snprintf(err, errlen, "%s %s: %s", f->flag, f->path, bad ? "write error" : strerror(errno));
        unlink(f->tmp);
        return -1;
    }
    return 0;
}

void lg_outfile_abort(struct lg_outfile *f)
{
    if (!f->fp)
        return;
    if (f->tmp[0]) {
        fclose(f->fp);
        unlink(f->tmp);
    }
    f->fp = NULL;
}
