/* Making renames durable (src/lib/fsync.c): the folder is found and
 * synced, and every failure comes back as -1 with errno. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/fsync.h"

/* mkdtemp() fills in the Xs. */
static char dir[] = "/tmp/postern-test-fsync-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char path[200];

    (void)state;
    snprintf(path, sizeof(path), "%s/file", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/state", dir);
    unlink(path);
    return rmdir(dir);
}

static void test_fsync_dir(void **state)
{
    char path[200];

    (void)state;
    assert_int_equal(fsync_dir(dir), 0);
    snprintf(path, sizeof(path), "%s/file", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    errno = 0;
    assert_int_equal(fsync_dir(path), -1);
    assert_int_equal(errno, ENOTDIR);
    snprintf(path, sizeof(path), "%s/missing", dir);
    errno = 0;
    assert_int_equal(fsync_dir(path), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_fsync_parent(void **state)
{
    char path[200], cwd[PATH_MAX];

    (void)state;
    snprintf(path, sizeof(path), "%s/file", dir);
    assert_int_equal(fsync_parent(path), 0);
    /* A bare name is in the current folder; "/name" in the root. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(fsync_parent("file"), 0);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(fsync_parent("/postern-no-such-file"), 0);
    errno = 0;
    assert_int_equal(fsync_parent("/postern-no-such-dir/file"), -1);
    assert_int_equal(errno, ENOENT);
    /* A folder name longer than PATH_MAX is refused, not truncated. */
    size_t n = PATH_MAX + 10;
    char *lng = malloc(n + 8);
    assert_non_null(lng);
    memset(lng, 'a', n);
    lng[0] = '/';
    strcpy(lng + n, "/file");
    errno = 0;
    assert_int_equal(fsync_parent(lng), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    free(lng);
}

static void test_fsync_replace(void **state)
{
    char path[200], tmp[210], buf[64] = {0};

    (void)state;
    snprintf(path, sizeof(path), "%s/state", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(fsync_replace(path, "first\n", 6), 0);
    assert_int_equal(fsync_replace(path, "second\n", 7), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 7);
    fclose(f);
    assert_string_equal(buf, "second\n");
    assert_int_equal(access(tmp, F_OK), -1); /* no leftover */
    /* An empty text is an empty file. */
    assert_int_equal(fsync_replace(path, "", 0), 0);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof(buf), f), 0);
    fclose(f);
    /* No folder: -1 with errno, nothing made. */
    errno = 0;
    assert_int_equal(fsync_replace("/postern-no-such-dir/state", "x", 1), -1);
    assert_int_equal(errno, ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fsync_dir),
        cmocka_unit_test(test_fsync_parent),
        cmocka_unit_test(test_fsync_replace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
