/*
 * LD_PRELOAD shim for the accuracy bench: every call that would set or
 * steer the system clock succeeds and does nothing, so a daemon under
 * test (ntpd-rs) can never change this machine's time even if it tried.
 * Reads (adjtimex / clock_adjtime / ntp_adjtime with modes == 0) go to the
 * real function, found with dlsym(RTLD_NEXT). A write is answered with
 * the clock's current state, as a read would be. The bench also drops
 * CAP_SYS_TIME and configures the daemon never to steer: this is the third
 * guard, not the only one.
 *
 * benches/accuracy.sh compiles it at run time:
 *   gcc -shared -fPIC -O2 -o noclockset.so noclockset.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>

typedef int (*adjtimex_fn)(struct timex *);
typedef int (*clock_adjtime_fn)(clockid_t, struct timex *);

int clock_settime(clockid_t clock, const struct timespec *tp)
{
    (void)clock;
    (void)tp;
    return 0;
}

int settimeofday(const struct timeval *tv, const struct timezone *tz)
{
    (void)tv;
    (void)tz;
    return 0;
}

/* Gone from glibc's headers, still an exported symbol on some. */
int stime(const time_t *t)
{
    (void)t;
    return 0;
}

/* modes != 0 is a write: read the current state instead and report it. */
static int read_instead(struct timex *buf, int (*read)(struct timex *, clockid_t), clockid_t clock)
{
    unsigned int modes = buf->modes;
    buf->modes = 0;
    int result = read(buf, clock);
    buf->modes = modes;
    return result;
}

static int call_adjtimex(struct timex *buf, clockid_t clock)
{
    static adjtimex_fn real;
    (void)clock;
    if (!real)
        real = (adjtimex_fn)dlsym(RTLD_NEXT, "adjtimex");
    return real ? real(buf) : -1;
}

static int call_ntp_adjtime(struct timex *buf, clockid_t clock)
{
    static adjtimex_fn real;
    (void)clock;
    if (!real)
        real = (adjtimex_fn)dlsym(RTLD_NEXT, "ntp_adjtime");
    return real ? real(buf) : -1;
}

static int call_clock_adjtime(struct timex *buf, clockid_t clock)
{
    static clock_adjtime_fn real;
    if (!real)
        real = (clock_adjtime_fn)dlsym(RTLD_NEXT, "clock_adjtime");
    return real ? real(clock, buf) : -1;
}

int adjtimex(struct timex *buf)
{
    if (buf->modes != 0)
        return read_instead(buf, call_adjtimex, CLOCK_REALTIME);
    return call_adjtimex(buf, CLOCK_REALTIME);
}

int ntp_adjtime(struct timex *buf)
{
    if (buf->modes != 0)
        return read_instead(buf, call_ntp_adjtime, CLOCK_REALTIME);
    return call_ntp_adjtime(buf, CLOCK_REALTIME);
}

int clock_adjtime(clockid_t clock, struct timex *buf)
{
    if (buf->modes != 0)
        return read_instead(buf, call_clock_adjtime, clock);
    return call_clock_adjtime(buf, clock);
}
