/*
 * Linked into the sanitizer build of the C test program only. AddressSanitizer refuses dlopen with RTLD_DEEPBIND
 * (https://github.com/google/sanitizers/issues/611), which oneTBB uses to load its optional topology library;
 * this dlopen drops that flag and hands the call on to the sanitizer's own dlopen.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

void* dlopen(const char* file, int mode) {
    typedef void* (*dlopen_fn)(const char*, int);
    static dlopen_fn next = NULL;
    if (next == NULL) next = (dlopen_fn)dlsym(RTLD_NEXT, "dlopen");
    return next(file, mode & ~RTLD_DEEPBIND);
}
