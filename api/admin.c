/*
 * admin.c - operator commands of opencode-api:
 *
 *   opencode-api migrate              apply pending database migrations
 *   opencode-api keys create NAME     issue a key (printed once)
 *   opencode-api keys list            list keys (ids and names, never keys)
 *   opencode-api keys revoke KEY_ID   revoke a key
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "apikey.h"
#include "db.h"
#include "log.h"
#include "migrate.h"

static int admin_usage(void)
{
    fprintf(stderr,
            "usage: opencode-api                     serve the HTTP API\n"
            "       opencode-api migrate             apply database migrations\n"
            "       opencode-api keys create NAME    issue an API key (shown once)\n"
            "       opencode-api keys list           list API keys\n"
            "       opencode-api keys revoke KEY_ID  revoke an API key\n");
    return 2;
}

static int admin_keys(PGconn *db, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "create") == 0 && argc == 3) {
        char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
        unsigned char hash[APIKEY_HASH_LEN];
        if (strlen(argv[2]) == 0 || strlen(argv[2]) > 200) {
            fprintf(stderr, "opencode-api: key name must be 1 to 200 characters\n");
            return 2;
        }
        if (apikey_generate(key, id) != 0 || apikey_hash(key, strlen(key), hash) != 0 ||
            store_key_create(db, id, argv[2], hash) != STORE_OK) {
            fprintf(stderr, "opencode-api: could not create the key\n");
            return 1;
        }
        printf("id:  %s\nkey: %s\n(store the key now: it is not shown again)\n", id, key);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        int rc;
        cJSON *list = store_key_list(db, &rc);
        if (list == NULL) {
            fprintf(stderr, "opencode-api: could not list keys\n");
            return 1;
        }
        char *text = cJSON_Print(list);
        printf("%s\n", text ? text : "[]");
        free(text);
        cJSON_Delete(list);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "revoke") == 0) {
        int rc = store_key_revoke(db, argv[2]);
        if (rc == STORE_NOT_FOUND) {
            fprintf(stderr, "opencode-api: no active key with id %s\n", argv[2]);
            return 1;
        }
        if (rc != STORE_OK) {
            fprintf(stderr, "opencode-api: could not revoke the key\n");
            return 1;
        }
        printf("revoked %s\n", argv[2]);
        return 0;
    }
    return admin_usage();
}

int api_admin_main(int argc, char **argv)
{
    struct cfg cfg;
    char err[512];
    if (cfg_load(&cfg, CFG_ROLE_ADMIN, err, sizeof(err)) != 0) {
        fprintf(stderr, "opencode-api: %s\n", err);
        return 2;
    }
    log_init("opencode-api", cfg.log_level);
    PGconn *db = db_connect(cfg.database_url, "opencode-api-admin", err, sizeof(err));
    if (db == NULL) {
        fprintf(stderr, "opencode-api: could not connect to the database: %s\n", err);
        cfg_free(&cfg);
        return 1;
    }
    int rc;
    if (strcmp(argv[0], "migrate") == 0 && argc == 1) {
        int n = migrate_run(db, err, sizeof(err));
        if (n < 0)
            fprintf(stderr, "opencode-api: %s\n", err);
        else
            printf("schema at version %d (%d migration(s) applied)\n",
                   migrate_latest_version(), n);
        rc = n < 0 ? 1 : 0;
    } else if (strcmp(argv[0], "keys") == 0) {
        rc = admin_keys(db, argc, argv);
    } else {
        rc = admin_usage();
    }
    PQfinish(db);
    cfg_free(&cfg);
    return rc;
}
