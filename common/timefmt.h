/*
 * timefmt.h - ISO-8601 UTC timestamps as the API prints them.
 *
 * The database hands timestamps over as microseconds since the Unix epoch
 * (see store_*.c); the API prints them as 2026-01-02T03:04:05.123456Z, the
 * form the seed service's FastAPI models produced.
 */
#ifndef OC_TIMEFMT_H
#define OC_TIMEFMT_H

#include <stdint.h>

#define TIME_ISO_LEN 28   /* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" + NUL */

/* Formats usec (microseconds since 1970-01-01T00:00:00Z) into out.
 * Returns 0, or -1 when the year falls outside 0..9999 (out is then ""). */
int time_format_iso(int64_t usec, char out[TIME_ISO_LEN]);

/* Current time in microseconds since the epoch (CLOCK_REALTIME). */
int64_t time_now_usec(void);

/* Monotonic clock in milliseconds, for timeouts and intervals. */
int64_t time_mono_ms(void);

#endif
