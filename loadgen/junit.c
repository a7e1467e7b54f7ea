/* The verdict as JUnit XML for CI: one testsuite for the run, a testcase per check and per threshold; see report.h. */
#include "loadgen/report.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

/* s as XML attribute or text: the five special characters escaped, other control characters dropped. */
static void xml_text(FILE *fp, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': fputs("&amp;", fp); break;
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '"': fputs("&quot;", fp); break;
        case '\'': fputs("&apos;", fp); break;
        default:
            if (c >= 0x20 || c == '\n' || c == '\t')
                fputc(c, fp);
        }
    }
}

/* A testcase failing with the reasons [from, to) (passing when the range is empty). */
static void testcase(FILE *fp, const char *cls, const char *name, const struct lg_result *r, int from, int to)
{
    fputs("    <testcase classname=\"", fp);
    xml_text(fp, cls);
    fputs("\" name=\"", fp);
    xml_text(fp, name);
    if (from >= to) {
        fputs("\"/>\n", fp);
        return;
    }
    fputs("\">\n      <failure message=\"", fp);
    xml_text(fp, r->reasons[from]);
    fputs("\" type=\"fail\">", fp);
    for (int i = from; i < to; i++) {
        xml_text(fp, r->reasons[i]);
        fputc('\n', fp);
    }
    fputs("</failure>\n    </testcase>\n", fp);
}

static int count_failures(const struct lg_result *r)
{
    int n = (r->reasons_connect > 0) + (r->reasons_checks > r->reasons_connect) + (r->nreasons > r->reasons_thresholds);
    for (int i = 0; i < r->opts->nthresholds; i++)
        n += !r->threshold_ok[i];
    return n;
}

int lg_report_junit(FILE *fp, const struct lg_result *r)
{
    const struct lg_opts *o = r->opts;
    int tests = 3 + o->nthresholds, failures = count_failures(r);
    char when[40];
    time_t sec = (time_t)r->start_epoch;
    struct tm tm;
    gmtime_r(&sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    double secs = (double)r->total_ns / 1e9;
    fprintf(fp, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"%d\" failures=\"%d\" time=\"%.3f\">\n",
            tests, failures, secs);
    fputs("  <testsuite name=\"loadgen ", fp);
    xml_text(fp, o->targets[0].url);
    fprintf(fp, "\" tests=\"%d\" failures=\"%d\" errors=\"0\" skipped=\"0\" time=\"%.3f\" timestamp=\"%s\" hostname=\"",
            tests, failures, secs, when);
    xml_text(fp, r->host);
    fputs("\">\n", fp);
    testcase(fp, "loadgen", "connect", r, 0, r->reasons_connect);
    testcase(fp, "loadgen", "delivery", r, r->reasons_connect, r->reasons_checks);
    int next = r->reasons_checks; /* a failed threshold's reason, in the thresholds' order */
    for (int i = 0; i < o->nthresholds; i++) {
        char name[160];
        snprintf(name, sizeof name, "threshold %s", o->thresholds[i].text);
        bool fail = !r->threshold_ok[i] && next < r->reasons_thresholds;
        testcase(fp, "loadgen.threshold", name, r, fail ? next : 0, fail ? next + 1 : 0);
        next += fail;
    }
    testcase(fp, "loadgen", "run", r, r->reasons_thresholds, r->nreasons);
    fputs("  </testsuite>\n</testsuites>\n", fp);
    return ferror(fp) ? -1 : 0;
}
