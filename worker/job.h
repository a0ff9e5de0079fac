/*
 * job.h - one attempt of a claimed job, inside the worker: the state its
 * four steps pass along.
 *
 *   prepare  (job_run.c)     attempts/<job>-<token>/ (attempt_prepare()):
 *                            a copy of the session's current files as
 *                            work/, run/ with HOME and the prompt
 *   run      (job_run.c)     the agent in work/, renewing the lease
 *   collect  (job_collect.c) events and log -> the outcome; the manifest
 *                            of work/
 *   record   (job_record.c)  publish work/ as jobs/<job> while the lease
 *                            holds (attempt_publish()), store_job_finish()
 *
 * An attempt writes only below its own folder until it publishes, and
 * publishing never replaces a folder that is there unless a lease renewed
 * after seeing it proves that folder stale (attempt.h). Its folder (and a
 * stale folder it displaced into trash/) is removed when it ends, however
 * it ends; a lost lease or a shutdown removes nothing else.
 */
#ifndef OC_WORKER_JOB_H
#define OC_WORKER_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "agent_events.h"
#include "cgroup.h"
#include "layout.h"
#include "store.h"
#include "uidlease.h"
#include "watchdog.h"
#include "worker.h"

/* Longest cause taken from opencode's log into an error message. */
#define JOB_CAUSE_MAX 500
/* How long a worker keeps trying to record an outcome while the database
 * is down; past this the lease has long expired and the janitor re-runs
 * the job, so the fenced update would fail anyway. */
#define JOB_FINISH_RETRY_S 300

/* The output manifest, owned (strings and array are malloc'd). */
struct job_files {
    struct store_file *v;
    size_t n, cap;
    long skipped;            /* names left out: the API could not serve them */
    const char **change;     /* job_diff.c: v[i]'s change (static strings) */
    char **deleted;          /* job_diff.c: paths of the base gone from v */
    size_t ndeleted;
};

/* The agent's event file as the run goes (job_live.c). */
struct job_live {
    int    fd;               /* the event file, read as it grows; -1: not open */
    char  *line;             /* the incomplete last line read */
    size_t len, cap;
    int    skipping;         /* inside an over-long line: dropped to its end */
    long   stored, dropped;  /* events that went to the job's log, or not */
};

struct job_attempt {
    struct worker *w;
    struct db *db;
    const struct store_claim *c;
    struct layout_attempt a;
    int own_dir;             /* a.dir was created by this attempt */
    int publish;             /* work/ was listed: publish it with the outcome */
    char **env;
    struct agent_result res;
    struct agent_report rep;
    char *events;            /* the event stream (its tail) */
    char *stderr_tail;
    char *summary;           /* result_json text */
    struct job_files files;
    struct store_outcome o;
    char error[2 * JOB_CAUSE_MAX + 512];
    char trash_entry[LAYOUT_PATH_MAX];   /* "": nothing displaced */
    char conv_session[128];  /* opencode session to continue (conversation.h), or "" */

    /* Containment (job_contain.c) */
    struct uid_lease lease;  /* the agent's own uid; fd -1: worker not root */
    int chowned;             /* work/ and HOME were handed to that uid */
    int reclaim_failed;      /* ... and could not all be taken back: never publish */
    struct cgroup_job cg;    /* CGROUP_ROOT's job folder, or dir "" */
    struct watchdog wd;
    enum joberr limit;       /* a limit the watchdog or the kernel enforced */
    char limit_msg[256];

    /* The lease (job_run.c) */
    int lease_lost;          /* lost, or its deadline passed unrenewed: record nothing */
    int cancel;              /* a client asked to stop it: record it cancelled */
    struct job_live live;
    int aborted;             /* shutdown grace over */
    int64_t lease_ok_ms;     /* monotonic start of the last good renewal (or the claim) */
    int64_t next_renew_ms;

    /* The provider gateway (job_gateway.c, gateway.h) */
    struct gateway *gw;
    char *gw_sock;           /* its Unix socket (sandbox without network), or NULL */
};

/* Renews the lease when a third of it has passed (also from walks over
 * the workspace). Returns 0 while the attempt may go on, 1 when the lease
 * is lost or when it could not be renewed before its own deadline (the
 * database unreachable: a re-run may start elsewhere): ja->lease_lost. */
int job_lease_keep(struct job_attempt *ja);

/*
 * live (job_live.c): while the agent runs, its new events go to the job's
 * log (GET /job/events), and a client's cancel is heard on channel
 * job_cancel. begin listens (on the slot's connection) and drains what
 * came before; tick reads what the agent wrote since the last tick and
 * returns 1 once a cancel was asked (ja->cancel); end reads the rest
 * after the agent ended and closes the file.
 */
void job_live_begin(struct job_attempt *ja);
int job_live_tick(struct job_attempt *ja);
void job_live_end(struct job_attempt *ja);

/* fs_walk progress callback: job_lease_keep(arg). */
int job_walk_progress(void *arg);

/* Containment around the agent (job_contain.c): before the run, lease a
 * uid (worker running as root), hand work/ and HOME to it, create the
 * cgroup (CGROUP_ROOT) and arm the watchdog; returns 0 or -1 with the
 * outcome set. After it, take the trees back (fs_reclaim_tree), read and
 * remove the cgroup, give the uid back. */
int job_contain_begin(struct job_attempt *ja);
void job_contain_end(struct job_attempt *ja);
/* The agent's limits from the configuration, and its spec fields. */
void job_contain_spec(struct job_attempt *ja, struct agent_spec *spec,
                      struct agent_limits *limits, char *procs, size_t procs_len);

/* The provider gateway (job_gateway.c): starts the job's gateway and
 * returns the agent's environment built around it (worker_env_build_gw),
 * NULL on failure; spec sets the agent's network and socket; end stops
 * the gateway (idempotent). */
char **job_gateway_env(struct job_attempt *ja);
void job_gateway_spec(struct job_attempt *ja, struct agent_spec *spec);
void job_gateway_end(struct job_attempt *ja);
/* tick: 1 once the gateway refused a request for a budget (ja->limit
 * set to JOBERR_BUDGET_EXCEEDED: the worker stops the agent). usage: the
 * gateway's totals into the outcome (before it is recorded). */
int job_gateway_budget(struct job_attempt *ja);
void job_gateway_usage(struct job_attempt *ja);

/* Sets the outcome to failed with code and a formatted error. Returns -1. */
int job_fail(struct job_attempt *ja, enum joberr code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* collect: maps how the agent ended and what it printed to the outcome,
 * and lists work/ (job_collect.c). */
void job_collect(struct job_attempt *ja);
void job_files_free(struct job_files *f);

/*
 * What changed (job_diff.c), after the outputs were listed: hashes the
 * attempt's private copy of the files it started from, sets each output's
 * change and the deleted list into the outcome, and stores the job's
 * unified diff (git, clean environment), fenced by the lease. A failure
 * here leaves the changes unknown (null) and never fails the job.
 */
void job_diff(struct job_attempt *ja);

/* The pure comparison: sets change[i] (added | modified | unchanged) for
 * out[i] against base by path, sha256 and mode, and *deleted (malloc'd,
 * sorted bytewise, *ndeleted entries) to the base paths missing from out. */
void job_changes_compare(const struct store_file *base, size_t nbase,
                         const struct store_file *out, size_t nout, const char **change,
                         char ***deleted, size_t *ndeleted);

/* record: renews the lease, publishes work/ when ja->publish, removes the
 * attempt's folder and records the outcome (job_record.c). */
void job_record(struct job_attempt *ja);

/* Removes the attempt's folder when this attempt created it. */
void job_remove_dir(struct job_attempt *ja);

#endif
