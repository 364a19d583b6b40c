/*
 * The gateway's keys file (producers/keys.h): the format of
 * docs/command-contract.md "Signatures", scopes (issue 14 item 3), and the
 * faults that must stop a start or a reload (never echoing a secret).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keys.h"

static ordo_keyset_t *parse(const char *text, char *err) {
        return ordo_keyset_parse(text, "keys", err, 512);
}

Test(keys, old_format_is_read_and_unscoped_keys_may_send_all) {
        char err[512] = "";
        ordo_keyset_t *ks =
            parse("# comment\n\nshop s3cret\nreplayer s2 batch\n", err);
        const ordo_key_t *k;

        cr_assert(ks, "%s", err);
        cr_assert_eq(ordo_keyset_count(ks), 2);
        k = ordo_keyset_find(ks, "shop");
        cr_assert(k);
        cr_assert_str_eq(k->secret, "s3cret");
        cr_assert_not(k->trusted);
        cr_assert_not(k->scoped);
        cr_assert(ordo_key_allows(k, ORDO_MSG_CREATE_ACTIVITY));
        cr_assert(ordo_key_allows(k, ORDO_MSG_CONFIRM_PAYMENT));
        cr_assert(ordo_key_allows(k, ORDO_MSG_BIND_REFERRER));
        /* Never what only the engine sends. */
        cr_assert_not(ordo_key_allows(k, ORDO_MSG_TICK));
        cr_assert_not(ordo_key_allows(k, ORDO_MSG_OPEN_ORDER));
        cr_assert_not(ordo_key_allows(k, ORDO_MSG_RELEASE_STOCK));
        cr_assert_not(ordo_key_allows(k, ORDO_MSG_ORDER_PAID));
        cr_assert(ordo_keyset_find(ks, "replayer")->trusted);
        cr_assert_null(ordo_keyset_find(ks, "nobody"));
        cr_assert_null(ordo_keyset_find(ks, NULL));
        ordo_keyset_release(ks);
}

Test(keys, scopes_allow_only_their_types) {
        char err[512] = "", s[256];
        ordo_keyset_t *ks =
            parse("pay p1 scope=ConfirmPayment,RefundOrder\n"
                  "shop p2 scope=PlaceOrder,CancelOrder,ConfirmReceipt\n"
                  "admin p3 batch scope=*\n",
                  err);
        const ordo_key_t *pay, *shop, *admin;

        cr_assert(ks, "%s", err);
        pay = ordo_keyset_find(ks, "pay");
        shop = ordo_keyset_find(ks, "shop");
        admin = ordo_keyset_find(ks, "admin");
        cr_assert(pay->scoped && shop->scoped && admin->scoped);
        cr_assert(ordo_key_allows(pay, ORDO_MSG_CONFIRM_PAYMENT));
        cr_assert(ordo_key_allows(pay, ORDO_MSG_REFUND_ORDER));
        cr_assert_not(ordo_key_allows(pay, ORDO_MSG_PLACE_ORDER));
        cr_assert_not(ordo_key_allows(pay, ORDO_MSG_CREATE_ACTIVITY));
        cr_assert(ordo_key_allows(shop, ORDO_MSG_PLACE_ORDER));
        cr_assert_not(ordo_key_allows(shop, ORDO_MSG_CONFIRM_PAYMENT));
        cr_assert_not(ordo_key_allows(shop, ORDO_MSG_REFUND_ORDER));
        cr_assert(admin->trusted);
        cr_assert(ordo_key_allows(admin, ORDO_MSG_CREATE_ACTIVITY));
        cr_assert_str_eq(ordo_key_scopes_str(pay, s, sizeof(s)),
                         "ConfirmPayment,RefundOrder");
        cr_assert_str_eq(ordo_key_scopes_str(admin, s, sizeof(s)), "*");
        ordo_keyset_release(ks);
}

/* Each fault names the file and line and never the secret. */
Test(keys, faults_name_the_line_not_the_secret) {
        static const char *bad[] = {
                "k topsecret scope=Tick\n",
                "k topsecret scope=OpenOrder\n",
                "k topsecret scope=OrderPaid\n",
                "k topsecret scope=PlaceOrdr\n",
                "k topsecret scope=\n",
                "k topsecret trusted\n",
                "k topsecret batch batch\n",
                "k\n",
                "k topsecret\nk topsecret2\n",
                "# only a comment\n",
        };
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char err[512] = "";
                ordo_keyset_t *ks = parse(bad[i], err);
                cr_assert_null(ks, "accepted: %s", bad[i]);
                cr_assert(strstr(err, "keys"), "%s", err);
                cr_assert_null(strstr(err, "topsecret"), "%s", err);
        }
}

/* The fault says what is wrong with the line, not only its format. */
Test(keys, faults_say_which_part_is_wrong) {
        static const char *bad[][2] = {
                { "k\n", "no secret" },
                { "k topsecret trusted\n", "neither batch nor scope=" },
                { "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
                  "k"
                  "kkkk1 topsecret\n",
                  "key_id over 64 bytes" },
        };
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char err[512] = "";
                cr_assert_null(parse(bad[i][0], err), "accepted: %s",
                               bad[i][0]);
                cr_assert(strstr(err, bad[i][1]), "%s", err);
        }
}

Test(keys, references_keep_a_set_alive) {
        char err[512];
        ordo_keyset_t *ks = parse("a b\n", err);
        const ordo_key_t *k;

        cr_assert(ks);
        ordo_keyset_ref(ks);
        k = ordo_keyset_find(ks, "a");
        ordo_keyset_release(ks);          /* the gateway swapped it out */
        cr_assert_str_eq(k->secret, "b"); /* a request still holds it */
        ordo_keyset_release(ks);
        ordo_keyset_release(NULL);
}

Test(keys, load_reads_a_file_and_names_a_missing_one) {
        char err[512] = "", path[64];
        FILE *f;
        ordo_keyset_t *ks;

        snprintf(path, sizeof(path), "/tmp/ordo-keys-unit-%d", (int)getpid());
        f = fopen(path, "w");
        cr_assert(f);
        fputs("pay p scope=ConfirmPayment\n", f);
        fclose(f);
        ks = ordo_keyset_load(path, err, sizeof(err));
        cr_assert(ks, "%s", err);
        cr_assert(ordo_key_allows(ordo_keyset_find(ks, "pay"),
                                  ORDO_MSG_CONFIRM_PAYMENT));
        ordo_keyset_release(ks);
        unlink(path);
        cr_assert_null(ordo_keyset_load(path, err, sizeof(err)));
        cr_assert(strstr(err, path), "%s", err);
}
