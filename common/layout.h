/*
 * layout.h - where a session's files live on the shared volume. This is
 * the only place that builds an on-disk path.
 *
 *   DATA_DIR/sessions/<session>/input/        uploaded files (never changed)
 *   DATA_DIR/sessions/<session>/jobs/<job>/   a job's published outputs: the
 *                                             workspace of the attempt that
 *                                             recorded the job's outcome
 *   DATA_DIR/sessions/<session>/attempts/<job>-<lease token>/
 *       work/                                 that attempt's workspace
 *       run/                                  its scratch: the agent's HOME,
 *                                             prompt and logs
 *   DATA_DIR/sessions/<session>/trash/        outputs a stale attempt
 *                                             published, displaced by the
 *                                             live one, awaiting removal
 *   DATA_DIR/sessions/<session>/env.json      per-session variables (0600)
 *   DATA_DIR/sessions/<session>/conversations/<job>/
 *                                             the agent's conversation as that
 *                                             succeeded job left it (worker/
 *                                             conversation.h); never served
 *
 * Every attempt of a job has folders of its own, keyed by its lease token,
 * so an attempt whose lease was lost (its worker cut off, then back) can
 * never delete or overwrite the files of the attempt that replaced it.
 * The session's current files are those of its latest succeeded job, or
 * its input when no job succeeded yet. Only an attempt's own workspace
 * and HOME are ever visible to its agent.
 *
 * Each function writes into caller buffers and returns 0, or -ENAMETOOLONG
 * when a path does not fit.
 */
#ifndef OC_LAYOUT_H
#define OC_LAYOUT_H

#include <stddef.h>

#define LAYOUT_PATH_MAX 4096

int layout_sessions_root(const char *data_dir, char *buf, size_t len);
int layout_session_dir(const char *data_dir, const char *session, char *buf, size_t len);
int layout_input_dir(const char *data_dir, const char *session, char *buf, size_t len);
int layout_env_file(const char *data_dir, const char *session, char *buf, size_t len);

/* The folder holding a session's current files: its input when job is ""
 * or NULL, else that job's published outputs. */
int layout_files_dir(const char *data_dir, const char *session, const char *job, char *buf,
                     size_t len);

/* Every path one attempt of a job uses. */
struct layout_attempt {
    char dir[LAYOUT_PATH_MAX];        /* attempts/<job>-<token>: removed whole */
    char work[LAYOUT_PATH_MAX];       /* the agent's workspace */
    char run[LAYOUT_PATH_MAX];        /* scratch */
    char home[LAYOUT_PATH_MAX];       /* run/home: the agent's HOME */
    char prompt[LAYOUT_PATH_MAX];     /* run/prompt */
    char events[LAYOUT_PATH_MAX];     /* run/stdout.jsonl: opencode's events */
    char log[LAYOUT_PATH_MAX];        /* run/stderr.log: opencode's log */
    char base[LAYOUT_PATH_MAX];       /* the files the attempt starts from */
    char jobs[LAYOUT_PATH_MAX];       /* sessions/<session>/jobs */
    char published[LAYOUT_PATH_MAX];  /* jobs/<job>: where work goes on success */
    char trash[LAYOUT_PATH_MAX];      /* sessions/<session>/trash */
    char env_file[LAYOUT_PATH_MAX];   /* the session's variables */
    /* Conversations (worker/conversation.h) */
    char conv_from[LAYOUT_PATH_MAX];  /* conversations/<job> to continue, or "" */
    char conv_stage[LAYOUT_PATH_MAX]; /* attempts/<job>-<token>/conversation */
    char conversations[LAYOUT_PATH_MAX]; /* sessions/<session>/conversations */
    char conv_published[LAYOUT_PATH_MAX]; /* conversations/<job>: on success */
};

/* Fills *a for attempt token of job in session, starting from the files of
 * base_job ("" = the input files). */
int layout_attempt(const char *data_dir, const char *session, const char *job,
                   const char *token, const char *base_job, struct layout_attempt *a);

/* Sets a->conv_from to the conversation of conv_job in session ("" or
 * NULL: none, a->conv_from becomes ""). */
int layout_attempt_conversation(const char *data_dir, const char *session,
                                const char *conv_job, struct layout_attempt *a);

/* A fresh name under trash (for a displaced folder): trash/<job>-<random>. */
int layout_trash_entry(const struct layout_attempt *a, const char *job, char *buf,
                       size_t len);

#endif
