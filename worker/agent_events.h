/*
 * agent_events.h - reads what `opencode run --format json` printed.
 *
 * opencode prints one JSON event per line: step_start, tool_use, text,
 * step_finish (token counts and cost), error. This module turns that
 * stream into the job's result: the final text, token usage, cost, the
 * first error, and a summary object stored as the job's result_json.
 */
#ifndef OC_AGENT_EVENTS_H
#define OC_AGENT_EVENTS_H

#include <cjson/cJSON.h>
#include <stddef.h>

struct agent_report {
    char     *text;             /* text of the last assistant message, or NULL */
    char     *error;            /* readable first error ("name: message"), or NULL */
    int       has_usage;        /* at least one step_finish was seen */
    long long tokens_input, tokens_output, tokens_reasoning;
    long long tokens_cache_read, tokens_cache_write;
    double    cost;             /* summed over steps */
    cJSON    *summary;          /* {text, error, tokens{...}, cost, tools:[{tool,status}]} */
    size_t    events;           /* lines that parsed as events */
};

/*
 * Parses the event stream in buf (len bytes; lines need not be complete at
 * the end, junk lines are skipped). Returns 0 with *r filled (caller frees
 * with agent_report_free), or -1 when out of memory.
 */
int agent_report_parse(const char *buf, size_t len, struct agent_report *r);

void agent_report_free(struct agent_report *r);

/*
 * The live form of one event line, as GET /job/events sends it: *kind
 * gets "text" ({text, truncated}), "tool" ({tool, status, phase}), "step"
 * ({phase, reason, tokens{input, output, reasoning, cache_read,
 * cache_write}, cost_usd}) or "error" ({message}), and the data object is
 * returned (the caller deletes it). NULL for anything else (junk, a
 * truncated line, step_start) and when out of memory.
 */
cJSON *agent_event_live(const char *line, size_t len, const char **kind);

#endif
