/*
 * admin.c - operator commands of opencode-api:
 *
 *   opencode-api migrate              apply pending database migrations
 *   opencode-api keys create NAME     issue a key (printed once)
 *   opencode-api keys list            list keys (ids and names, never keys)
 *   opencode-api keys revoke KEY_ID   revoke a key
 *   opencode-api keys set KEY_ID NAME=VALUE...
 *                                     change a key's settings (quotas);
 *                                     VALUE "default" = the environment's
 *                                     (webhook_url=URL: the key's default
 *                                     webhook URL)
 *   opencode-api keys rotate-webhook-secret KEY_ID
 *                                     new webhook signing secret (printed
 *                                     once); the old one signs too for
 *                                     WEBHOOK_SECRET_GRACE_S
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "apikey.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "prog.h"
#include "render.h"
#include "webhook_sign.h"

static int admin_usage(void)
{
    fprintf(stderr,
            "usage: opencode-api                     serve the HTTP API\n"
            "       opencode-api migrate             apply database migrations\n"
            "       opencode-api keys create NAME    issue an API key (shown once)\n"
            "       opencode-api keys list           list API keys\n"
            "       opencode-api keys revoke KEY_ID  revoke an API key\n"
            "       opencode-api keys set KEY_ID NAME=VALUE...\n"
            "                                        change a key's settings; NAME is one of\n"
            "                                        max_active_sessions, max_queued_jobs,\n"
            "                                        max_stored_bytes, max_usd_per_day (whole\n"
            "                                        USD, 0 = unlimited), max_tokens_per_job\n"
            "                                        (0 = unlimited); VALUE an integer >= 0\n"
            "                                        or \"default\" (the KEY_MAX_* variable);\n"
            "                                        webhook_url=URL (http or https) or\n"
            "                                        webhook_url=default (none)\n"
            "       opencode-api keys rotate-webhook-secret KEY_ID\n"
            "                                        new webhook secret (shown once); the\n"
            "                                        old one also signs for\n"
            "                                        WEBHOOK_SECRET_GRACE_S\n");
    return 2;
}

static int admin_key_create(struct db *db, const char *name)
{
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
    unsigned char hash[APIKEY_HASH_LEN];
    if (strlen(name) == 0 || strlen(name) > 200) {
        fprintf(stderr, "opencode-api: key name must be 1 to 200 characters\n");
        return 2;
    }
    if (apikey_generate(key, id) != 0 || apikey_hash(key, strlen(key), hash) != 0 ||
        store_key_create(db, id, name, hash) != STORE_OK) {
        fprintf(stderr, "opencode-api: could not create the key\n");
        return 1;
    }
    char secret[WEBHOOK_SECRET_MAX];
    if (webhook_secret_new(secret) != 0 || store_webhook_secret_set(db, id, secret) != STORE_OK) {
        fprintf(stderr, "opencode-api: could not create the key's webhook secret (the key "
                        "%s exists: run keys rotate-webhook-secret %s)\n", id, id);
        memset(secret, 0, sizeof(secret));
        return 1;
    }
    printf("id:  %s\nkey: %s\nwebhook_secret: %s\n(store the key and the webhook secret now: "
           "they are not shown again)\n", id, key, secret);
    memset(secret, 0, sizeof(secret));
    return 0;
}

/* keys rotate-webhook-secret KEY_ID: a new secret, printed once; the old
 * one keeps signing (a second signature) for WEBHOOK_SECRET_GRACE_S. */
static int admin_key_rotate_secret(struct db *db, const char *id)
{
    char secret[WEBHOOK_SECRET_MAX];
    if (strcmp(id, "bootstrap") == 0 && api_bootstrap_row(db) != 0) {
        fprintf(stderr, "opencode-api: could not record the bootstrap key\n");
        return 1;
    }
    if (webhook_secret_new(secret) != 0) {
        fprintf(stderr, "opencode-api: could not make a secret\n");
        return 1;
    }
    int rc = store_webhook_secret_set(db, id, secret);
    if (rc == STORE_OK)
        printf("id: %s\nwebhook_secret: %s\n(store it now: it is not shown again)\n", id,
               secret);
    else if (rc == STORE_NOT_FOUND)
        fprintf(stderr, "opencode-api: no active key with id %s\n", id);
    else
        fprintf(stderr, "opencode-api: could not rotate the webhook secret\n");
    memset(secret, 0, sizeof(secret));
    return rc == STORE_OK ? 0 : 1;
}

/* keys set KEY_ID webhook_url=URL|default. Returns 0, or the exit code
 * (message printed). */
static int admin_key_set_webhook_url(struct db *db, const char *id, const char *value)
{
    int dflt = strcmp(value, "default") == 0;
    if (!dflt && !webhook_url_valid(value)) {
        fprintf(stderr, "opencode-api: webhook_url must be an http:// or https:// URL or "
                        "\"default\"\n");
        return 2;
    }
    int rc = store_key_webhook_url_set(db, id, dflt ? NULL : value);
    if (rc == STORE_NOT_FOUND)
        fprintf(stderr, "opencode-api: no active key with id %s\n", id);
    else if (rc != STORE_OK)
        fprintf(stderr, "opencode-api: could not set webhook_url\n");
    return rc == STORE_OK ? 0 : 1;
}

static int admin_key_list(struct db *db)
{
    struct store_keys keys;
    if (store_key_list(db, &keys) != STORE_OK) {
        fprintf(stderr, "opencode-api: could not list keys\n");
        return 1;
    }
    cJSON *list = render_keys(&keys);
    store_keys_free(&keys);
    char *text = cJSON_Print(list);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(list);
    return 0;
}

static int admin_key_revoke(struct db *db, const char *id)
{
    if (strcmp(id, "bootstrap") == 0) {
        fprintf(stderr, "opencode-api: the bootstrap key is API_KEY: change or unset that "
                        "variable instead\n");
        return 1;
    }
    int rc = store_key_revoke(db, id);
    if (rc == STORE_NOT_FOUND) {
        fprintf(stderr, "opencode-api: no active key with id %s\n", id);
        return 1;
    }
    if (rc != STORE_OK) {
        fprintf(stderr, "opencode-api: could not revoke the key\n");
        return 1;
    }
    printf("revoked %s\n", id);
    return 0;
}

/* Prints a key's settings as "id: name=value ..." ("default" for NULL). */
static int admin_key_show(struct db *db, const char *id)
{
    struct store_key_settings set;
    if (store_key_settings_get(db, id, &set) != STORE_OK) {
        fprintf(stderr, "opencode-api: could not read the settings of %s\n", id);
        return 1;
    }
    printf("%s:", id);
    for (size_t i = 0; store_key_setting_name(i) != NULL; i++) {
        if (set.set[i])
            printf(" %s=%lld", store_key_setting_name(i), (long long)set.value[i]);
        else
            printf(" %s=default", store_key_setting_name(i));
    }
    char *url = NULL;
    if (store_key_webhook_url_get(db, id, &url) == STORE_OK)
        printf(" webhook_url=%s", url != NULL ? url : "default");
    free(url);
    printf("\n");
    return 0;
}

/* Splits NAME=VALUE: VALUE "default" leaves *has at 0. Returns 0, or -1
 * (message printed) when malformed. */
static int admin_setting_parse(char *arg, const char **name, int64_t *value, int *has)
{
    char *eq = strchr(arg, '=');
    long v;
    *has = 0;
    if (eq == NULL) {
        fprintf(stderr, "opencode-api: expected NAME=VALUE, got \"%s\"\n", arg);
        return -1;
    }
    *eq = '\0';
    *name = arg;
    if (strcmp(eq + 1, "default") == 0)
        return 0;
    if (cfg_parse_long(eq + 1, 0, LONG_MAX, &v) != 0) {
        fprintf(stderr, "opencode-api: %s: VALUE must be an integer >= 0 or \"default\"\n",
                arg);
        return -1;
    }
    *value = v;
    *has = 1;
    return 0;
}

/* keys set KEY_ID NAME=VALUE...: each setting in turn (not atomic: a
 * failure names the setting it stopped at). */
static int admin_key_set(struct db *db, const char *id, int n, char **args)
{
    if (strcmp(id, "bootstrap") == 0 && api_bootstrap_row(db) != 0) {
        fprintf(stderr, "opencode-api: could not record the bootstrap key\n");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const char *name;
        int64_t value = 0;
        int has;
        if (strncmp(args[i], "webhook_url=", strlen("webhook_url=")) == 0) {
            int st = admin_key_set_webhook_url(db, id, args[i] + strlen("webhook_url="));
            if (st != 0)
                return st;
            continue;
        }
        if (admin_setting_parse(args[i], &name, &value, &has) != 0)
            return 2;
        int rc = store_key_set(db, id, name, has ? &value : NULL);
        if (rc == STORE_NOT_FOUND) {
            fprintf(stderr, "opencode-api: no active key with id %s\n", id);
            return 1;
        }
        if (rc == STORE_CONFLICT) {
            fprintf(stderr, "opencode-api: unknown setting %s (see usage)\n", name);
            return 2;
        }
        if (rc != STORE_OK) {
            fprintf(stderr, "opencode-api: could not set %s\n", name);
            return 1;
        }
    }
    return admin_key_show(db, id);
}

int api_bootstrap_row(struct db *db)
{
    /* key_sha256 is the hash of a fresh random key that is then dropped,
     * so no request can ever match the row. */
    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
    unsigned char hash[APIKEY_HASH_LEN];
    if (apikey_generate(key, id) != 0 || apikey_hash(key, strlen(key), hash) != 0)
        return -1;
    memset(key, 0, sizeof(key));
    return store_key_ensure_bootstrap(db, hash) == STORE_OK ? 0 : -1;
}

static int admin_keys(struct db *db, int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "set") == 0)
        return admin_key_set(db, argv[2], argc - 3, argv + 3);
    if (argc == 3 && strcmp(argv[1], "create") == 0)
        return admin_key_create(db, argv[2]);
    if (argc == 2 && strcmp(argv[1], "list") == 0)
        return admin_key_list(db);
    if (argc == 3 && strcmp(argv[1], "revoke") == 0)
        return admin_key_revoke(db, argv[2]);
    if (argc == 3 && strcmp(argv[1], "rotate-webhook-secret") == 0)
        return admin_key_rotate_secret(db, argv[2]);
    return admin_usage();
}

static int admin_migrate(struct db *db)
{
    char err[512];
    int n = migrate_run(db, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "opencode-api: %s\n", err);
        return 1;
    }
    printf("schema at version %d (%d migration(s) applied)\n", migrate_latest_version(), n);
    return 0;
}

int api_admin_main(int argc, char **argv)
{
    struct cfg cfg;
    char err[512];
    int rc = prog_init("opencode-api", CFG_ROLE_ADMIN, &cfg);
    if (rc != 0)
        return rc;
    struct db *db = db_new(cfg.database_url, "opencode-api-admin");
    if (db_ensure(db, err, sizeof(err)) != DB_OK) {
        fprintf(stderr, "opencode-api: could not connect to the database: %s\n", err);
        rc = 1;
    } else if (strcmp(argv[0], "migrate") == 0 && argc == 1) {
        rc = admin_migrate(db);
    } else if (strcmp(argv[0], "keys") == 0) {
        rc = admin_keys(db, argc, argv);
    } else {
        rc = admin_usage();
    }
    db_free(db);
    cfg_free(&cfg);
    return rc;
}
