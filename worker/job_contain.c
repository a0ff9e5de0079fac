/*
 * job_contain.c - containment around one attempt's agent (see job.h):
 * its own uid, the hand-over and take-back of its folders, the optional
 * cgroup and the watchdog's settings.
 *
 * Order matters: the trees are taken back (fs_reclaim_tree) only after
 * agent_run() returned, which kills every process of the uid; the uid is
 * given back only after that, so the next job that leases it finds no
 * process and no file of this one.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "job.h"
#include "log.h"
#include "sandbox.h"

/* How often (in watchdog samples) the disk is walked: about once a second. */
static unsigned job_disk_every(const struct cfg *cfg)
{
    long every = 1000 / cfg->job_watchdog_ms;
    return every < 1 ? 1 : (unsigned)every;
}

static void job_watchdog_init(struct job_attempt *ja)
{
    const struct cfg *cfg = ja->w->cfg;
    struct watchdog *wd = &ja->wd;
    memset(wd, 0, sizeof(*wd));
    wd->by_uid = ja->lease.fd >= 0;
    wd->uid = ja->lease.uid;
    wd->max_memory_mb = cfg->job_max_memory_mb;
    wd->max_procs = cfg->job_max_procs;
    wd->max_cpu_s = cfg->job_max_cpu_s;
    wd->max_disk_mb = cfg->job_max_disk_mb;
    /* A walk over more files than this is itself the problem. */
    wd->max_disk_files = (uint64_t)cfg->job_max_output_files * 10 + 100000;
    wd->dirs[0] = ja->a.work;
    wd->dirs[1] = ja->a.home;
    wd->disk_every = job_disk_every(cfg);
}

/* Leases a uid (root only), kills what a crashed predecessor may have
 * left running as it, and hands work/ and HOME to it. */
static int job_take_uid(struct job_attempt *ja)
{
    const struct cfg *cfg = ja->w->cfg;
    int rc = uidlease_acquire(cfg->agent_uid_lock_dir, cfg->agent_uid_min, cfg->agent_uid_max,
                              &ja->lease);
    if (rc == -EAGAIN)
        return job_fail(ja, JOBERR_INTERNAL, "no free agent uid: all %ld uids of "
                        "AGENT_UID_RANGE are in use on this host",
                        cfg->agent_uid_max - cfg->agent_uid_min + 1);
    if (rc != 0)
        return job_fail(ja, JOBERR_INTERNAL, "could not lease an agent uid in "
                        "AGENT_UID_LOCK_DIR %s: %s", cfg->agent_uid_lock_dir, strerror(-rc));
    /* Nothing of a crashed predecessor may be charged to this job. */
    if (sandbox_kill_uid(ja->lease.uid) != 0)
        return job_fail(ja, JOBERR_INTERNAL, "processes of agent uid %u could not be "
                        "stopped", (unsigned)ja->lease.uid);
    uid_t u = ja->lease.uid;
    ja->chowned = 1;
    rc = fs_chown_tree(ja->a.work, u, (gid_t)u);
    if (rc == 0)
        rc = fs_chown_tree(ja->a.home, u, (gid_t)u);
    if (rc != 0)
        return job_fail(ja, JOBERR_WORKSPACE, "could not hand the workspace to the agent's "
                        "uid: %s", strerror(-rc));
    return 0;
}

static int job_make_cgroup(struct job_attempt *ja)
{
    const struct cfg *cfg = ja->w->cfg;
    char name[256];
    snprintf(name, sizeof(name), "job-%s-%s", ja->c->job_id, ja->c->lease_token);
    struct cgroup_limits l = { cfg->job_max_memory_mb, cfg->job_max_procs, CGROUP_JOB_CPUS };
    int rc = cgroup_job_create(cfg->cgroup_root, name, &l, &ja->cg);
    if (rc != 0)
        return job_fail(ja, JOBERR_INTERNAL, "could not create the job's cgroup below "
                        "CGROUP_ROOT %s: %s", cfg->cgroup_root, strerror(-rc));
    return 0;
}

int job_contain_begin(struct job_attempt *ja)
{
    const struct cfg *cfg = ja->w->cfg;
    if (ja->w->own_uids && job_take_uid(ja) != 0)
        return -1;
    if (cfg->cgroup_root != NULL && job_make_cgroup(ja) != 0)
        return -1;
    job_watchdog_init(ja);
    return 0;
}

void job_contain_spec(struct job_attempt *ja, struct agent_spec *spec,
                      struct agent_limits *limits, char *procs, size_t procs_len)
{
    const struct cfg *cfg = ja->w->cfg;
    memset(limits, 0, sizeof(*limits));
    limits->nproc = ja->lease.fd >= 0 ? cfg->job_max_procs : 0;
    limits->fsize_mb = cfg->job_max_disk_mb;
    limits->nofile = cfg->job_max_open_files;
    limits->nice = (int)cfg->agent_nice;
    limits->tmp_mb = cfg->job_tmp_mb;
    limits->seccomp = 1;
    limits->disable_userns = ja->w->disable_userns;
    spec->limits = limits;
    spec->tick_ms = (int)cfg->job_watchdog_ms;
    spec->drop = ja->lease.fd >= 0;
    spec->uid = ja->lease.uid;
    spec->gid = (gid_t)ja->lease.uid;
    spec->cgroup_procs = NULL;
    if (ja->cg.dir[0] != '\0' &&
        snprintf(procs, procs_len, "%s/cgroup.procs", ja->cg.dir) < (int)procs_len)
        spec->cgroup_procs = procs;
}

void job_contain_end(struct job_attempt *ja)
{
    if (ja->wd.checks > 0)
        log_info("job.usage", "job=%s uid=%u peak_rss_kb=%llu peak_tasks=%llu cpu_ms=%llu "
                 "peak_disk_bytes=%llu samples=%u", ja->c->job_id, (unsigned)ja->lease.uid,
                 (unsigned long long)ja->wd.rss_kb_max, (unsigned long long)ja->wd.tasks_max,
                 (unsigned long long)ja->wd.cpu_ms_max, (unsigned long long)ja->wd.disk_max,
                 ja->wd.checks);
    if (ja->chowned && ja->own_dir) {
        /* agent_run() killed every process of the uid before returning. */
        int rc = fs_reclaim_tree(ja->a.work);
        int rc2 = fs_reclaim_tree(ja->a.home);
        if (rc != 0 || rc2 != 0) {
            log_warn("job.reclaim_failed", "job=%s errno=%d", ja->c->job_id, rc ? -rc : -rc2);
            ja->reclaim_failed = 1;
        }
    }
    ja->chowned = 0;
    enum joberr e = cgroup_job_outcome(&ja->cg);
    if (e != JOBERR_NONE && ja->limit == JOBERR_NONE) {
        ja->limit = e;
        if (e == JOBERR_MEMORY_LIMIT)
            snprintf(ja->limit_msg, sizeof(ja->limit_msg), "the job used more than %ld MiB "
                     "of memory (JOB_MAX_MEMORY_MB)", ja->w->cfg->job_max_memory_mb);
        else
            snprintf(ja->limit_msg, sizeof(ja->limit_msg), "the job reached %ld processes "
                     "and threads (JOB_MAX_PROCS)", ja->w->cfg->job_max_procs);
    }
    int rc = cgroup_job_remove(&ja->cg);
    if (rc != 0)
        log_warn("job.cgroup_remove_failed", "job=%s errno=%d", ja->c->job_id, -rc);
    /* A uid whose processes would not go is kept (not leased again)
     * until this worker exits. */
    if (ja->lease.fd >= 0 && sandbox_kill_uid(ja->lease.uid) != 0) {
        log_error("job.uid_quarantined", "job=%s uid=%u", ja->c->job_id,
                  (unsigned)ja->lease.uid);
        ja->lease.fd = -1;
        return;
    }
    uidlease_release(&ja->lease);
}
