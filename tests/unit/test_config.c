/*
 * test_config.c - cfg_load() and its helpers (common/config.h).
 *
 * Each case starts from a clean environment (env_reset) holding only
 * DATABASE_URL, in a fresh temporary working folder with no .env file.
 *
 * It also checks that README.md's configuration tables are the ones the
 * table in config.c generates. README.md is argv[1], else
 * $OC_SOURCE_DIR/README.md, else found next to this source file.
 * "test_config --markdown" prints the tables README should hold.
 */
#include "check.h"
#include "config.h"
#include "fsutil.h"
#include "log.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DB_URL "postgresql://u:p@127.0.0.1:5432/opencode"

/* Every variable common/config.c reads, plus the ones the .env cases set. */
static const char *const cfg_vars[] = {
    "AGENT_CONFIG_FILE", "AGENT_ENV", "AGENT_SANDBOX", "AMQP_QUEUE", "AMQP_URL",
    "API_KEY", "API_LISTEN", "API_THREADS", "BWRAP_BIN", "DATABASE_URL",
    "DATA_DIR", "DEFAULT_JOB_TIMEOUT_S", "DEFAULT_MODEL", "DEFAULT_TTL_S",
    "ENV_FILE", "JANITOR_INTERVAL_S", "JOB_LEASE_S", "JOB_MAX_ATTEMPTS",
    "JOB_RETENTION_S", "LOG_LEVEL", "MAX_BODY_BYTES", "MAX_FILES",
    "MAX_JOB_TIMEOUT_S", "MAX_PROMPT_BYTES", "MAX_SESSION_BYTES",
    "MAX_STDOUT_BYTES", "MAX_TTL_S", "OPENCODE_BIN", "WORKER_CONCURRENCY",
    "WORKER_GRACE_S", "WORKER_ID",
    "OC_TEST_PLAIN", "OC_TEST_EMPTYQ", "OC_TEST_CRLF", "OC_TEST_EQ",
    "OC_TEST_PRESET", "OC_TEST_COMMENTED", "OC_TEST_SQ", "OC_TEST_UNBALANCED",
    "OC_TEST_OK",
};

static char tmpdir[PATH_MAX];

static void env_clear(void)
{
    for (size_t i = 0; i < sizeof(cfg_vars) / sizeof(cfg_vars[0]); i++)
        unsetenv(cfg_vars[i]);
    for (size_t i = 0; cfg_var_name(i) != NULL; i++)
        unsetenv(cfg_var_name(i));
}

/* Clean slate: only DATABASE_URL set. */
static void env_reset(void)
{
    env_clear();
    setenv("DATABASE_URL", DB_URL, 1);
}

/* Worker role that can succeed here: no bwrap needed, /bin/true as agent. */
static void env_worker(void)
{
    env_reset();
    setenv("OPENCODE_BIN", "/bin/true", 1);
    setenv("AGENT_SANDBOX", "none", 1);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

/* cfg_load must fail, name needle in its message, and leave c empty. */
static void expect_fail_at(int line, unsigned roles, const char *needle)
{
    struct cfg c;
    char err[1024] = "";
    int rc = cfg_load(&c, roles, err, sizeof(err));
    int ok = rc == -1 && strstr(err, needle) != NULL;
    CHECK(rc == -1);
    CHECK(strstr(err, needle) != NULL);
    if (rc == -1) {
        CHECK(c.database_url == NULL && c.data_dir == NULL && c.agent_env_count == 0 &&
              c.opencode_bin == NULL);
    } else {
        cfg_free(&c);
    }
    if (!ok)
        fprintf(stderr, "  case at line %d: rc=%d err=\"%s\" (wanted it to name %s)\n", line,
                rc, err, needle);
}
#define EXPECT_FAIL(roles, needle) expect_fail_at(__LINE__, (roles), (needle))

/* cfg_load must succeed; the caller frees c. */
static int load_ok_at(int line, struct cfg *c, unsigned roles)
{
    char err[1024] = "";
    int rc = cfg_load(c, roles, err, sizeof(err));
    CHECK(rc == 0);
    if (rc != 0)
        fprintf(stderr, "  case at line %d: cfg_load failed: %s\n", line, err);
    return rc;
}
#define LOAD_OK(c, roles) load_ok_at(__LINE__, (c), (roles))

/* ---- cfg_parse_long ------------------------------------------------------ */

static void test_parse_long(void)
{
    long v = 99;
    CHECK(cfg_parse_long("0", 0, 10, &v) == 0 && v == 0);
    CHECK(cfg_parse_long("10", 0, 10, &v) == 0 && v == 10);
    CHECK(cfg_parse_long("007", 0, 10, &v) == 0 && v == 7);
    CHECK(cfg_parse_long("-1", -5, 5, &v) == 0 && v == -1);
    CHECK(cfg_parse_long("-5", -5, 5, &v) == 0 && v == -5);
    CHECK(cfg_parse_long("9223372036854775807", LONG_MIN, LONG_MAX, &v) == 0 &&
          v == LONG_MAX);
    CHECK(cfg_parse_long("-9223372036854775808", LONG_MIN, LONG_MAX, &v) == 0 &&
          v == LONG_MIN);

    /* Bounds: out untouched on failure. */
    v = 99;
    CHECK(cfg_parse_long("11", 0, 10, &v) == -1);
    CHECK(cfg_parse_long("-6", -5, 5, &v) == -1);
    CHECK(cfg_parse_long("-1", 0, 5, &v) == -1);
    CHECK(cfg_parse_long("0", 1, 5, &v) == -1);
    CHECK(cfg_parse_long("9223372036854775808", LONG_MIN, LONG_MAX, &v) == -1);
    CHECK(cfg_parse_long("-9223372036854775809", LONG_MIN, LONG_MAX, &v) == -1);
    CHECK(cfg_parse_long("99999999999999999999999", 0, LONG_MAX, &v) == -1);
    CHECK(v == 99);

    /* Junk. */
    static const char *const junk[] = {
        "", "abc", "12x", "x12", " 1", "1 ", "+1", "--1", "-", "1-", "0x10",
        "1.0", "1e3", "1,000", "\t5", "5\n",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        int rc = cfg_parse_long(junk[i], LONG_MIN, LONG_MAX, &v);
        CHECK(rc == -1);
        if (rc != -1)
            fprintf(stderr, "  cfg_parse_long accepted \"%s\"\n", junk[i]);
    }
    CHECK(cfg_parse_long(NULL, 0, 10, &v) == -1);
    CHECK(v == 99);
}

/* ---- variable names ------------------------------------------------------ */

static void test_env_names(void)
{
    static const char *const reserved[] = {
        "API_KEY", "LD_PRELOAD", "LD_LIBRARY_PATH", "DATABASE_URL", "PATH", "HOME",
        "OPENCODE_CONFIG_CONTENT", "AMQP_URL", "PGPASSWORD", "NODE_OPTIONS",
        "BASH_ENV", "AGENT_CONFIG_FILE", "ENV_FILE",
    };
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        int r = cfg_env_name_reserved(reserved[i]);
        CHECK(r == 1);
        if (r != 1)
            fprintf(stderr, "  %s should be reserved\n", reserved[i]);
    }
    /* Every configuration variable, and those the hand-written list held
     * before the table did (with samples of its prefixes). */
    for (size_t i = 0; cfg_var_name(i) != NULL; i++) {
        int r = cfg_env_name_reserved(cfg_var_name(i));
        CHECK(r == 1);
        if (r != 1)
            fprintf(stderr, "  %s should be reserved\n", cfg_var_name(i));
    }
    static const char *const reserved_before[] = {
        "API_KEY", "API_LISTEN", "API_THREADS", "DATABASE_URL", "AMQP_URL", "AMQP_QUEUE",
        "DATA_DIR", "ENV_FILE", "LOG_LEVEL", "HOME", "PATH", "SHELL", "USER", "LOGNAME",
        "TMPDIR", "PWD", "BASH_ENV", "ENV", "NODE_OPTIONS", "NODE_PATH", "PYTHONPATH",
        "PYTHONSTARTUP", "PERL5OPT", "RUBYOPT", "GCONV_PATH", "HOSTALIASES",
        "RESOLV_HOST_CONF", "LOCALDOMAIN", "NLSPATH", "MALLOC_CHECK_", "OPENSSL_CONF",
        "LD_AUDIT", "PGHOST", "AMQP_X", "OPENCODE_CONFIG", "AGENT_X", "WORKER_X", "JOB_X",
        "MAX_X", "DEFAULT_X", "JANITOR_X", "BWRAP_X", "GLIBC_TUNABLES", "BUN_X",
        "API_DB_POOL",
    };
    for (size_t i = 0; i < sizeof(reserved_before) / sizeof(reserved_before[0]); i++) {
        int r = cfg_env_name_reserved(reserved_before[i]);
        CHECK(r == 1);
        if (r != 1)
            fprintf(stderr, "  %s should be reserved\n", reserved_before[i]);
    }
    static const char *const free_names[] = {
        "MY_TOKEN", "GITHUB_TOKEN", "FOO", "HOMEBREW_X", "XPATH", "API_OTHER", "ENV_X",
    };
    for (size_t i = 0; i < sizeof(free_names) / sizeof(free_names[0]); i++) {
        int r = cfg_env_name_reserved(free_names[i]);
        CHECK(r == 0);
        if (r != 0)
            fprintf(stderr, "  %s should not be reserved\n", free_names[i]);
    }

    CHECK(cfg_env_name_valid("A") == 1);
    CHECK(cfg_env_name_valid("_") == 1);
    CHECK(cfg_env_name_valid("a_1") == 1);
    CHECK(cfg_env_name_valid("MY_TOKEN") == 1);
    CHECK(cfg_env_name_valid("1A") == 0);
    CHECK(cfg_env_name_valid("A-B") == 0);
    CHECK(cfg_env_name_valid("") == 0);
    CHECK(cfg_env_name_valid("A B") == 0);
    CHECK(cfg_env_name_valid("A=B") == 0);
    CHECK(cfg_env_name_valid("\xc3\xa9") == 0);
    char name[130];
    memset(name, 'A', 128);
    name[128] = '\0';
    CHECK(cfg_env_name_valid(name) == 1);
    name[128] = 'A';
    name[129] = '\0';
    CHECK(cfg_env_name_valid(name) == 0);
}

/* ---- cfg_load ------------------------------------------------------------ */

static void test_defaults(void)
{
    struct cfg c;
    env_reset();
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK_STR(c.database_url, DB_URL);
        CHECK(c.max_files == 200);
        CHECK(c.max_session_bytes == 25L * 1024 * 1024);
        CHECK(c.max_body_bytes == 2 * 25L * 1024 * 1024 + 1024L * 1024);
        CHECK(c.max_prompt_bytes == 256L * 1024);
        CHECK(c.default_ttl_s == 3600);
        CHECK(c.max_ttl_s == 7L * 24 * 3600);
        CHECK(c.default_job_timeout_s == 600);
        CHECK(c.max_job_timeout_s == 1800);
        CHECK(c.log_level == LOG_INFO);
        CHECK_STR(c.amqp_url, "amqp://guest:guest@127.0.0.1:5672/");
        CHECK_STR(c.amqp_queue, "opencode.jobs");
        CHECK(c.default_model != NULL && strchr(c.default_model, '/') != NULL);
        char want[PATH_MAX + 32];
        snprintf(want, sizeof(want), "%s/var/data", tmpdir);
        CHECK_STR(c.data_dir, want);
        CHECK(c.api_key == NULL);
        CHECK(c.opencode_bin == NULL);
        CHECK(c.agent_env_count == 0);
        cfg_free(&c);
        CHECK(c.database_url == NULL && c.data_dir == NULL);
        cfg_free(&c); /* a zeroed struct is fine */
    }

    /* API defaults. */
    env_reset();
    setenv("API_KEY", "0123456789abcdef", 1);
    if (LOAD_OK(&c, CFG_ROLE_API) == 0) {
        CHECK_STR(c.api_key, "0123456789abcdef");
        CHECK_STR(c.api_listen, "127.0.0.1:8000");
        CHECK(c.api_threads == 1024);
        CHECK(c.api_db_pool == 8);
        CHECK(c.job_lease_s == 30);
        CHECK(c.job_max_attempts == 3);
        cfg_free(&c);
    }

    /* Janitor defaults. */
    env_reset();
    if (LOAD_OK(&c, CFG_ROLE_JANITOR) == 0) {
        CHECK(c.janitor_interval_s == 60);
        CHECK(c.job_retention_s == 7L * 24 * 3600);
        cfg_free(&c);
    }
}

static void test_required(void)
{
    env_clear();
    EXPECT_FAIL(CFG_ROLE_ADMIN, "DATABASE_URL");
    setenv("DATABASE_URL", "", 1);
    EXPECT_FAIL(CFG_ROLE_ADMIN, "DATABASE_URL");

    env_reset();
    EXPECT_FAIL(CFG_ROLE_API, "API_KEY");
    setenv("API_KEY", "0123456789abcde", 1); /* 15 characters */
    EXPECT_FAIL(CFG_ROLE_API, "API_KEY");
    setenv("API_KEY", "short", 1);
    EXPECT_FAIL(CFG_ROLE_API, "API_KEY");

    /* The admin role does not need a key. */
    env_reset();
    struct cfg c;
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0)
        cfg_free(&c);
}

static void test_integers(void)
{
    static const char *const bad_files[] = {
        "abc", "0", "12x", "-5", " 12", "+12", "100001", "1e3", "99999999999999999999",
    };
    for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
        env_reset();
        setenv("MAX_FILES", bad_files[i], 1);
        EXPECT_FAIL(CFG_ROLE_ADMIN, "MAX_FILES");
    }

    struct cfg c;
    env_reset();
    setenv("MAX_FILES", "7", 1);
    setenv("MAX_SESSION_BYTES", "1000", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK(c.max_files == 7);
        CHECK(c.max_session_bytes == 1000);
        /* MAX_BODY_BYTES follows the session size by default. */
        CHECK(c.max_body_bytes == 2 * 1000 + 1024L * 1024);
        cfg_free(&c);
    }
    env_reset();
    setenv("MAX_FILES", "100000", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK(c.max_files == 100000);
        cfg_free(&c);
    }

    /* A default above its maximum. */
    env_reset();
    setenv("DEFAULT_JOB_TIMEOUT_S", "2000", 1);
    EXPECT_FAIL(CFG_ROLE_ADMIN, "DEFAULT_JOB_TIMEOUT_S");
    env_reset();
    setenv("MAX_JOB_TIMEOUT_S", "100", 1);
    setenv("DEFAULT_JOB_TIMEOUT_S", "200", 1);
    EXPECT_FAIL(CFG_ROLE_ADMIN, "DEFAULT_JOB_TIMEOUT_S");
    env_reset();
    setenv("MAX_JOB_TIMEOUT_S", "100", 1);
    setenv("DEFAULT_JOB_TIMEOUT_S", "100", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK(c.max_job_timeout_s == 100);
        CHECK(c.default_job_timeout_s == 100);
        cfg_free(&c);
    }
    env_reset();
    setenv("MAX_TTL_S", "100", 1);
    setenv("DEFAULT_TTL_S", "101", 1);
    EXPECT_FAIL(CFG_ROLE_ADMIN, "DEFAULT_TTL_S");

    /* A maximum below the built-in default (600 s, 3600 s) with no explicit
     * default: cfg_load must either refuse or keep default <= max, or every
     * job without its own timeout would run past MAX_JOB_TIMEOUT_S. */
    env_reset();
    setenv("MAX_JOB_TIMEOUT_S", "300", 1);
    {
        char err[512] = "";
        int rc = cfg_load(&c, CFG_ROLE_ADMIN, err, sizeof(err));
        CHECK(rc == -1 || c.default_job_timeout_s <= c.max_job_timeout_s);
        if (rc == 0)
            cfg_free(&c);
    }
    env_reset();
    setenv("MAX_TTL_S", "60", 1);
    {
        char err[512] = "";
        int rc = cfg_load(&c, CFG_ROLE_ADMIN, err, sizeof(err));
        CHECK(rc == -1 || c.default_ttl_s <= c.max_ttl_s);
        if (rc == 0)
            cfg_free(&c);
    }

}

static void test_role_integers(void)
{
    /* Role-specific integers. */
    env_reset();
    setenv("API_KEY", "0123456789abcdef", 1);
    setenv("API_THREADS", "1", 1);
    EXPECT_FAIL(CFG_ROLE_API, "API_THREADS");
    env_reset();
    setenv("JOB_LEASE_S", "2", 1);
    EXPECT_FAIL(CFG_ROLE_JANITOR, "JOB_LEASE_S");
    env_reset();
    setenv("JOB_RETENTION_S", "59", 1);
    EXPECT_FAIL(CFG_ROLE_JANITOR, "JOB_RETENTION_S");
    env_worker();
    setenv("WORKER_CONCURRENCY", "0", 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "WORKER_CONCURRENCY");
    env_worker();
    setenv("WORKER_CONCURRENCY", "65", 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "WORKER_CONCURRENCY");
    env_worker();
    setenv("MAX_STDOUT_BYTES", "1023", 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "MAX_STDOUT_BYTES");
}

/* API_DB_POOL, and the wording of the messages the table's rows share. */
static void test_api_db_pool_and_messages(void)
{
    struct cfg c;

    env_reset();
    setenv("API_KEY", "0123456789abcdef", 1);
    setenv("API_DB_POOL", "0", 1);
    EXPECT_FAIL(CFG_ROLE_API, "API_DB_POOL must be an integer from 1 to 1024 (got \"0\")");
    setenv("API_DB_POOL", "1025", 1);
    EXPECT_FAIL(CFG_ROLE_API, "API_DB_POOL");
    setenv("API_DB_POOL", "1", 1);
    if (LOAD_OK(&c, CFG_ROLE_API) == 0) {
        CHECK(c.api_db_pool == 1);
        cfg_free(&c);
    }
    /* Only the api reads it. */
    env_reset();
    setenv("API_DB_POOL", "0", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0)
        cfg_free(&c);

    /* The messages' wording. */
    env_reset();
    setenv("MAX_FILES", "x", 1);
    EXPECT_FAIL(CFG_ROLE_ADMIN, "MAX_FILES must be an integer from 1 to 100000 (got \"x\")");
    env_reset();
    setenv("MAX_TTL_S", "100", 1);
    setenv("DEFAULT_TTL_S", "101", 1);
    EXPECT_FAIL(CFG_ROLE_ADMIN, "DEFAULT_TTL_S must be an integer from 1 to 100 (got \"101\")");
}

static void test_strings(void)
{
    struct cfg c;

    env_reset();
    setenv("LOG_LEVEL", "loud", 1);
    EXPECT_FAIL(CFG_ROLE_ADMIN, "LOG_LEVEL");
    EXPECT_FAIL(CFG_ROLE_ADMIN, "LOG_LEVEL must be debug, info, warn or error");
    env_reset();
    setenv("LOG_LEVEL", "debug", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK(c.log_level == LOG_DEBUG);
        cfg_free(&c);
    }
    env_reset();
    setenv("LOG_LEVEL", "warn", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK(c.log_level == LOG_WARN);
        cfg_free(&c);
    }

    env_reset();
    setenv("AMQP_URL", "http://x", 1);
    EXPECT_FAIL(CFG_ROLE_ADMIN, "AMQP_URL");
    env_reset();
    setenv("AMQP_URL", "amqp://a:b@mq:5673/vh", 1);
    setenv("AMQP_QUEUE", "q1", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK_STR(c.amqp_url, "amqp://a:b@mq:5673/vh");
        CHECK_STR(c.amqp_queue, "q1");
        cfg_free(&c);
    }

    env_reset();
    setenv("DATA_DIR", "rel/dir", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        char want[PATH_MAX + 32];
        snprintf(want, sizeof(want), "%s/rel/dir", tmpdir);
        CHECK(c.data_dir[0] == '/');
        CHECK_STR(c.data_dir, want);
        cfg_free(&c);
    }
    env_reset();
    setenv("DATA_DIR", "/srv/oc-data", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK_STR(c.data_dir, "/srv/oc-data");
        cfg_free(&c);
    }

    static const char *const bad_models[] = { "nomodel", "/b", "a/", "a b/c" };
    for (size_t i = 0; i < sizeof(bad_models) / sizeof(bad_models[0]); i++) {
        env_reset();
        setenv("DEFAULT_MODEL", bad_models[i], 1);
        EXPECT_FAIL(CFG_ROLE_ADMIN, "DEFAULT_MODEL");
    }
    env_reset();
    setenv("DEFAULT_MODEL", "openai/gpt-4o", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK_STR(c.default_model, "openai/gpt-4o");
        cfg_free(&c);
    }
}

static void test_worker(void)
{
    struct cfg c;

    env_worker();
    if (LOAD_OK(&c, CFG_ROLE_WORKER) == 0) {
        char *want = realpath("/bin/true", NULL);
        CHECK(want != NULL && c.opencode_bin != NULL && strcmp(c.opencode_bin, want) == 0);
        free(want);
        CHECK(c.sandbox == CFG_SANDBOX_NONE);
        CHECK(c.worker_concurrency == 2);
        CHECK(c.worker_grace_s == 30);
        CHECK(c.max_stdout_bytes == 1024L * 1024);
        CHECK(c.job_lease_s == 30);
        CHECK(c.worker_id != NULL && strchr(c.worker_id, ':') != NULL);
        CHECK(c.agent_config_json == NULL);
        CHECK(c.agent_env_count == 4);
        if (c.agent_env_count == 4) {
            CHECK_STR(c.agent_env[0], "ANTHROPIC_API_KEY");
            CHECK_STR(c.agent_env[1], "OPENAI_API_KEY");
            CHECK_STR(c.agent_env[2], "GEMINI_API_KEY");
            CHECK_STR(c.agent_env[3], "OPENROUTER_API_KEY");
        }
        cfg_free(&c);
    }

    env_worker();
    setenv("WORKER_ID", "w1", 1);
    if (LOAD_OK(&c, CFG_ROLE_WORKER) == 0) {
        CHECK_STR(c.worker_id, "w1");
        cfg_free(&c);
    }

}

static void test_worker_agent_env(void)
{
    struct cfg c;

    /* AGENT_ENV: secrets and bad names refused, others appended. */
    static const char *const secrets[] = {
        "DATABASE_URL", "API_KEY", "AMQP_URL", "PGPASSWORD", "MY_TOKEN,DATABASE_URL",
    };
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        env_worker();
        setenv("AGENT_ENV", secrets[i], 1);
        EXPECT_FAIL(CFG_ROLE_WORKER, "AGENT_ENV");
    }
    env_worker();
    setenv("AGENT_ENV", "DATABASE_URL", 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "DATABASE_URL");
    env_worker();
    setenv("AGENT_ENV", "1A", 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "AGENT_ENV");
    env_worker();
    setenv("AGENT_ENV", "A-B", 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "AGENT_ENV");

    env_worker();
    setenv("AGENT_ENV", "MY_TOKEN", 1);
    if (LOAD_OK(&c, CFG_ROLE_WORKER) == 0) {
        CHECK(c.agent_env_count == 5);
        if (c.agent_env_count == 5) {
            CHECK_STR(c.agent_env[0], "ANTHROPIC_API_KEY");
            CHECK_STR(c.agent_env[4], "MY_TOKEN");
        }
        cfg_free(&c);
    }
    env_worker();
    setenv("AGENT_ENV", " MY_TOKEN , OTHER_VAR,,OPENAI_API_KEY,MY_TOKEN ", 1);
    if (LOAD_OK(&c, CFG_ROLE_WORKER) == 0) {
        CHECK(c.agent_env_count == 6);
        if (c.agent_env_count == 6) {
            CHECK_STR(c.agent_env[4], "MY_TOKEN");
            CHECK_STR(c.agent_env[5], "OTHER_VAR");
        }
        cfg_free(&c);
    }

}

static void test_worker_files(void)
{
    struct cfg c;
    char path[PATH_MAX + 64];

    /* Sandbox. */
    env_worker();
    setenv("AGENT_SANDBOX", "maybe", 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "AGENT_SANDBOX");
    EXPECT_FAIL(CFG_ROLE_WORKER, "AGENT_SANDBOX must be \"bwrap\" or \"none\" (got \"maybe\")");
    env_worker();
    unsetenv("AGENT_SANDBOX");
    setenv("BWRAP_BIN", "/nonexistent/bwrap", 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "BWRAP_BIN");
    env_worker();
    setenv("AGENT_SANDBOX", "bwrap", 1);
    setenv("BWRAP_BIN", "/bin/true", 1);
    if (LOAD_OK(&c, CFG_ROLE_WORKER) == 0) {
        CHECK(c.sandbox == CFG_SANDBOX_BWRAP);
        CHECK_STR(c.bwrap_bin, "/bin/true");
        cfg_free(&c);
    }

    /* OPENCODE_BIN: must exist and be executable. */
    snprintf(path, sizeof(path), "%s/notexec", tmpdir);
    write_file(path, "#!/bin/sh\n", 0644);
    env_worker();
    setenv("OPENCODE_BIN", path, 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "OPENCODE_BIN");
    env_worker();
    setenv("OPENCODE_BIN", "/nonexistent/opencode", 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "OPENCODE_BIN");
    env_worker();
    unsetenv("OPENCODE_BIN"); /* default node_modules/.bin/opencode: not in tmpdir */
    EXPECT_FAIL(CFG_ROLE_WORKER, "OPENCODE_BIN");
    /* A folder is searchable (X_OK) but is not an executable file. */
    env_worker();
    setenv("OPENCODE_BIN", tmpdir, 1);
    EXPECT_FAIL(CFG_ROLE_WORKER, "OPENCODE_BIN");

    /* A relative OPENCODE_BIN is resolved to an absolute path. */
    snprintf(path, sizeof(path), "%s/bin", tmpdir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/bin/oc", tmpdir);
    write_file(path, "#!/bin/sh\nexit 0\n", 0755);
    env_worker();
    setenv("OPENCODE_BIN", "bin/oc", 1);
    if (LOAD_OK(&c, CFG_ROLE_WORKER) == 0) {
        CHECK_STR(c.opencode_bin, path);
        cfg_free(&c);
    }

    /* AGENT_CONFIG_FILE. */
    snprintf(path, sizeof(path), "%s/agent.json", tmpdir);
    write_file(path, "{\"model\": \"a/b\"}", 0644);
    env_worker();
    setenv("AGENT_CONFIG_FILE", path, 1);
    if (LOAD_OK(&c, CFG_ROLE_WORKER) == 0) {
        CHECK(c.agent_config_json != NULL &&
              strcmp(c.agent_config_json, "{\"model\": \"a/b\"}") == 0);
        cfg_free(&c);
    }
    write_file(path, "[1, 2]", 0644);
    EXPECT_FAIL(CFG_ROLE_WORKER, "AGENT_CONFIG_FILE");
    write_file(path, "{not json", 0644);
    EXPECT_FAIL(CFG_ROLE_WORKER, "AGENT_CONFIG_FILE");
    unlink(path);
    EXPECT_FAIL(CFG_ROLE_WORKER, "AGENT_CONFIG_FILE");
}

static void test_env_file(void)
{
    char path[PATH_MAX + 64];
    struct cfg c;

    snprintf(path, sizeof(path), "%s/test.env", tmpdir);
    write_file(path,
               "# a comment\n"
               "   # an indented comment\n"
               "#OC_TEST_COMMENTED=1\n"
               "\n"
               "   \n"
               "DATABASE_URL=postgresql://from-file/db\n"
               "MAX_FILES=\"42\"\n"
               "DEFAULT_MODEL='prov/model-x'\n"
               "export AMQP_QUEUE=queue.from.file\n"
               "LOG_LEVEL=debug\n"
               "OC_TEST_PRESET=changed\n"
               "OC_TEST_PLAIN=plain value with spaces\n"
               "OC_TEST_EMPTYQ=\"\"\n"
               "OC_TEST_SQ='it said \"hi\"'\n"
               "OC_TEST_UNBALANCED=\"abc\n"
               "OC_TEST_CRLF=crlf\r\n"
               "OC_TEST_EQ=a=b=c\n",
               0644);
    env_clear();
    setenv("ENV_FILE", path, 1);
    setenv("LOG_LEVEL", "warn", 1);          /* already set: the file must not win */
    setenv("OC_TEST_PRESET", "orig", 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK_STR(c.database_url, "postgresql://from-file/db");
        CHECK(c.max_files == 42);
        CHECK_STR(c.default_model, "prov/model-x");
        CHECK_STR(c.amqp_queue, "queue.from.file");
        CHECK(c.log_level == LOG_WARN);
        cfg_free(&c);
    }
    const char *v;
    CHECK((v = getenv("LOG_LEVEL")) != NULL && strcmp(v, "warn") == 0);
    CHECK((v = getenv("OC_TEST_PRESET")) != NULL && strcmp(v, "orig") == 0);
    CHECK((v = getenv("OC_TEST_PLAIN")) != NULL && strcmp(v, "plain value with spaces") == 0);
    CHECK((v = getenv("OC_TEST_EMPTYQ")) != NULL && strcmp(v, "") == 0);
    CHECK((v = getenv("OC_TEST_SQ")) != NULL && strcmp(v, "it said \"hi\"") == 0);
    CHECK((v = getenv("OC_TEST_UNBALANCED")) != NULL && strcmp(v, "\"abc") == 0);
    CHECK((v = getenv("OC_TEST_CRLF")) != NULL && strcmp(v, "crlf") == 0);
    CHECK((v = getenv("OC_TEST_EQ")) != NULL && strcmp(v, "a=b=c") == 0);
    CHECK(getenv("OC_TEST_COMMENTED") == NULL);

}

static void test_env_file_errors(void)
{
    char path[PATH_MAX + 64], err[1024];
    struct cfg c;

    /* The default is ./.env in the working folder. */
    snprintf(path, sizeof(path), "%s/.env", tmpdir);
    write_file(path, "DATABASE_URL=postgresql://dot-env/db\n", 0644);
    env_clear();
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0) {
        CHECK_STR(c.database_url, "postgresql://dot-env/db");
        cfg_free(&c);
    }
    unlink(path);

    /* A malformed line names path:line. */
    snprintf(path, sizeof(path), "%s/bad.env", tmpdir);
    write_file(path, "OC_TEST_OK=1\n\n# comment\nTHIS IS NOT AN ASSIGNMENT\n", 0644);
    char want[PATH_MAX + 80];
    snprintf(want, sizeof(want), "%s:4", path);
    env_reset();
    setenv("ENV_FILE", path, 1);
    EXPECT_FAIL(CFG_ROLE_ADMIN, want);
    env_reset();
    err[0] = '\0';
    CHECK(cfg_load_env_file(path, err, sizeof(err)) == -1);
    CHECK(strstr(err, want) != NULL);

    static const char *const bad_lines[] = { "1BAD=x\n", "=x\n", "BAD-NAME=x\n", "NOEQ\n",
                                             "SP ACE=x\n" };
    for (size_t i = 0; i < sizeof(bad_lines) / sizeof(bad_lines[0]); i++) {
        write_file(path, bad_lines[i], 0644);
        snprintf(want, sizeof(want), "%s:1", path);
        err[0] = '\0';
        int rc = cfg_load_env_file(path, err, sizeof(err));
        CHECK(rc == -1);
        CHECK(strstr(err, want) != NULL);
        if (rc != -1)
            fprintf(stderr, "  env file line accepted: %s", bad_lines[i]);
    }

    /* A missing file is not an error. */
    env_reset();
    snprintf(path, sizeof(path), "%s/missing.env", tmpdir);
    CHECK(cfg_load_env_file(path, err, sizeof(err)) == 0);
    setenv("ENV_FILE", path, 1);
    if (LOAD_OK(&c, CFG_ROLE_ADMIN) == 0)
        cfg_free(&c);
    env_clear();
}

/* ---- README's tables ----------------------------------------------------- */

#define README_BEGIN "<!-- config-table:begin -->"
#define README_END   "<!-- config-table:end -->"

/* README.md's path: argv[1], $OC_SOURCE_DIR/README.md, or the folder above
 * tests/unit/ of this file (absolute under CMake, relative to the source
 * folder when compiled from there). */
static void readme_path(int argc, char **argv, char *out, size_t n)
{
    const char *src = getenv("OC_SOURCE_DIR");
    const char *here = strstr(__FILE__, "tests/unit/test_config.c");
    if (argc > 1)
        snprintf(out, n, "%s", argv[1]);
    else if (src != NULL && *src != '\0')
        snprintf(out, n, "%s/README.md", src);
    else if (here != NULL)
        snprintf(out, n, "%.*sREADME.md", (int)(here - __FILE__), __FILE__);
    else
        snprintf(out, n, "README.md");
}

/* The whole file, NUL-terminated, or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t got;
    while (m != NULL && (got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, got, m);
    fclose(f);
    if (m != NULL)
        fclose(m);
    return buf;
}

/* Skips blank lines at *p; returns how many lines it skipped. */
static int skip_blank_lines(const char **p, const char *end)
{
    int n = 0;
    while (*p < end && **p == '\n') {
        (*p)++;
        n++;
    }
    return n;
}

/* Compares README's lines [a, a_end) with the generated text g, ignoring
 * blank lines at either end; reports the first line that differs. */
static void compare_tables(const char *path, int line, const char *a, const char *a_end,
                           const char *g)
{
    const char *g_end = g + strlen(g);
    line += skip_blank_lines(&a, a_end);
    skip_blank_lines(&g, g_end);
    while (a_end > a && a_end[-1] == '\n')
        a_end--;
    while (g_end > g && g_end[-1] == '\n')
        g_end--;
    while (a < a_end || g < g_end) {
        const char *an = memchr(a, '\n', (size_t)(a_end - a));
        const char *gn = memchr(g, '\n', (size_t)(g_end - g));
        size_t al = (size_t)((an ? an : a_end) - a), gl = (size_t)((gn ? gn : g_end) - g);
        int same = al == gl && memcmp(a, g, al) == 0;
        CHECK(same);
        if (!same) {
            fprintf(stderr, "%s:%d: configuration table differs from common/config.c's\n"
                            "  README:    %.*s\n  generated: %.*s\n"
                            "  (edit the table in common/config.c, then paste the output of "
                            "\"test_config --markdown\" between the markers)\n",
                    path, line, (int)al, a < a_end ? a : "(end)", (int)gl,
                    g < g_end ? g : "(end)");
            return;
        }
        a = an ? an + 1 : a_end;
        g = gn ? gn + 1 : g_end;
        line++;
    }
}

static void test_readme(const char *path)
{
    char *text = slurp(path);
    CHECK(text != NULL);
    if (text == NULL) {
        fprintf(stderr, "  could not read %s: pass README.md's path as the first "
                        "argument or set OC_SOURCE_DIR\n", path);
        return;
    }
    char *b = strstr(text, README_BEGIN "\n");
    char *e = b ? strstr(b, "\n" README_END) : NULL;
    CHECK(b != NULL && e != NULL);
    char *gen = NULL;
    size_t gen_len = 0;
    FILE *m = open_memstream(&gen, &gen_len);
    CHECK(m != NULL && cfg_write_markdown(m) == 0);
    if (m != NULL)
        fclose(m);
    if (b != NULL && e != NULL && gen != NULL) {
        int line = 2;            /* the line after the begin marker */
        for (const char *p = text; p < b; p++)
            line += *p == '\n';
        compare_tables(path, line, b + strlen(README_BEGIN "\n"), e + 1, gen);
    } else if (b == NULL || e == NULL) {
        fprintf(stderr, "  %s has no %s ... %s section\n", path, README_BEGIN, README_END);
    }
    free(gen);
    free(text);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--markdown") == 0)
        return cfg_write_markdown(stdout) == 0 && fflush(stdout) == 0 ? 0 : 1;
    char readme[PATH_MAX + 16];
    readme_path(argc, argv, readme, sizeof(readme));
    test_readme(readme);

    char oldcwd[PATH_MAX];
    if (getcwd(oldcwd, sizeof(oldcwd)) == NULL)
        return 2;
    char tmpl[] = "/tmp/oc-test-config-XXXXXX";
    if (mkdtemp(tmpl) == NULL)
        return 2;
    /* getcwd() after chdir gives the resolved path cfg_load will see. */
    if (chdir(tmpl) != 0 || getcwd(tmpdir, sizeof(tmpdir)) == NULL)
        return 2;

    test_parse_long();
    test_env_names();
    test_defaults();
    test_required();
    test_integers();
    test_role_integers();
    test_api_db_pool_and_messages();
    test_strings();
    test_worker();
    test_worker_agent_env();
    test_worker_files();
    test_env_file();
    test_env_file_errors();

    if (chdir(oldcwd) != 0)
        return 2;
    CHECK(fs_rm_rf(tmpl) == 0);
    return check_report();
}
