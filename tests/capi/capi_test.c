/*
 * Test driver for the C API; tests/capi/test_capi.py compiles it against the built library and runs it.
 *
 *   capi_test errors MODEL NOT_A_MODEL...
 *       every error path (each NOT_A_MODEL must give FCN_E_BAD_MODEL): prints "ok|FAIL <case> <status>
 *       <message>" (newlines in messages shown as " | "), exits with the number of failures
 *   capi_test create MODEL DEVICE
 *       prints "status=<name>" and "message=<text>" for one fcn_segmenter_create call
 *   capi_test apply MODEL OUT_PREFIX RAW:W:H:FORMAT:PAD ...
 *       converts each raw RGB file to FORMAT (rgb, bgr, rgba, bgra, gray = the R channel) with PAD bytes
 *       of garbage after every row, segments all of them in one call, writes OUT_PREFIX<i>.labels
 *   capi_test threads MODEL OUT_PREFIX ITERATIONS RAW:W:H RAW:W:H
 *       two threads share one handle and segment their image ITERATIONS times each; every result must equal
 *       the thread's first; writes OUT_PREFIX<thread>.labels
 *   capi_test pool MODEL THREADS RAW:W:H ...
 *       segments every image once on one thread, then THREADS threads share the handle and each segments every
 *       image (thread t starting at image t); every result must equal the sequential one; prints "ok" or each
 *       mismatch, exits with the number of mismatches
 *   capi_test cycles MODEL RAW:W:H N
 *       N cycles of create, class queries, apply, release, destroy (for the sanitizer build)
 *   capi_test maps MODEL RAW:W:H
 *       creates a segmenter, segments the image, prints "status=<name>" and then the process's /proc/self/maps
 *       (which shared libraries the library loaded: the relocation test checks for libpython and paths)
 *   capi_test leaks MODEL RAW:W:H N        (compiled with -DFCN_TEST_VALGRIND, run under valgrind)
 *       one warm-up cycle of create, class queries, apply, release, destroy; then N more cycles; prints the
 *       growth of leaked bytes over those N cycles, then the growth after one deliberately unreleased result
 *       (showing that the measurement does see a leak)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcn_deploy.h>

#ifdef FCN_TEST_VALGRIND
#include <valgrind/memcheck.h>
#endif

/* --- input images ------------------------------------------------------------------------------------- */

typedef struct {
    uint8_t* buffer; /* exactly stride * (height - 1) + width * bytes-per-pixel bytes */
    fcn_image image;
} test_image;

static uint8_t* read_file(const char* path, size_t expected) {
    FILE* file = fopen(path, "rb");
    if (file == NULL) {
        perror(path);
        return NULL;
    }
    uint8_t* data = (uint8_t*)malloc(expected);
    if (data != NULL && fread(data, 1, expected, file) != expected) {
        fprintf(stderr, "%s: expected %zu bytes\n", path, expected);
        free(data);
        data = NULL;
    }
    fclose(file);
    return data;
}

static int parse_format(const char* name, fcn_pixel_format* format, int* bytes_per_pixel) {
    static const struct { const char* name; fcn_pixel_format format; int bytes; } formats[] = {
        {"rgb", FCN_PIXEL_RGB8, 3}, {"bgr", FCN_PIXEL_BGR8, 3}, {"rgba", FCN_PIXEL_RGBA8, 4},
        {"bgra", FCN_PIXEL_BGRA8, 4}, {"gray", FCN_PIXEL_GRAY8, 1},
    };
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; ++i) {
        if (strcmp(name, formats[i].name) == 0) {
            *format = formats[i].format;
            *bytes_per_pixel = formats[i].bytes;
            return 0;
        }
    }
    fprintf(stderr, "unknown format %s\n", name);
    return 1;
}

/* Build a test image from "RAW:W:H[:FORMAT[:PAD]]" (RAW holds W*H*3 RGB bytes). */
static int load_image(const char* spec, test_image* out) {
    char path[4096], format_name[16] = "rgb";
    int width = 0, height = 0, pad = 0;
    const char* colon = strchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) >= sizeof path) return 1;
    memcpy(path, spec, (size_t)(colon - spec));
    path[colon - spec] = '\0';
    if (sscanf(colon + 1, "%d:%d:%15[a-z]:%d", &width, &height, format_name, &pad) < 2) return 1;
    fcn_pixel_format format;
    int bytes_per_pixel;
    if (parse_format(format_name, &format, &bytes_per_pixel) != 0) return 1;
    uint8_t* rgb = read_file(path, (size_t)width * height * 3);
    if (rgb == NULL) return 1;
    int stride = width * bytes_per_pixel + pad;
    size_t size = (size_t)stride * (height - 1) + (size_t)width * bytes_per_pixel;
    uint8_t* buffer = (uint8_t*)malloc(size);
    memset(buffer, 0xAB, size); /* garbage in the padding */
    for (int y = 0; y < height; ++y) {
        for (int x = 0; x < width; ++x) {
            const uint8_t* src = rgb + ((size_t)y * width + x) * 3;
            uint8_t* dst = buffer + (size_t)y * stride + (size_t)x * bytes_per_pixel;
            switch (format) {
                case FCN_PIXEL_RGB8: dst[0] = src[0], dst[1] = src[1], dst[2] = src[2]; break;
                case FCN_PIXEL_BGR8: dst[0] = src[2], dst[1] = src[1], dst[2] = src[0]; break;
                case FCN_PIXEL_RGBA8: dst[0] = src[0], dst[1] = src[1], dst[2] = src[2], dst[3] = 7; break;
                case FCN_PIXEL_BGRA8: dst[0] = src[2], dst[1] = src[1], dst[2] = src[0], dst[3] = 7; break;
                case FCN_PIXEL_GRAY8: dst[0] = src[0]; break;
            }
        }
    }
    free(rgb);
    out->buffer = buffer;
    out->image = (fcn_image){buffer, width, height, stride, format};
    return 0;
}

static int write_labels(const char* prefix, int index, const fcn_mask* mask) {
    char path[4200];
    snprintf(path, sizeof path, "%s%d.labels", prefix, index);
    FILE* file = fopen(path, "wb");
    if (file == NULL) return 1;
    size_t size = (size_t)mask->width * mask->height;
    int failed = fwrite(mask->labels, 1, size, file) != size;
    return (fclose(file) != 0) | failed;
}

static int report(int status) {
    fprintf(stderr, "error: %s: %s\n", fcn_status_name(status), fcn_last_error());
    return 1;
}

/* --- errors ------------------------------------------------------------------------------------------- */

static int failures = 0;

/* Record that a call returned `got` (expected `want`) and left a message (or none, for FCN_OK). */
static void expect(const char* name, int got, int want) {
    const char* message = fcn_last_error();
    int message_ok = want == FCN_OK ? message[0] == '\0' : message[0] != '\0';
    int ok = got == want && message_ok;
    failures += !ok;
    printf("%s %s %s ", ok ? "ok" : "FAIL", name, fcn_status_name(got));
    for (const char* c = message; *c; ++c) fputs(*c == '\n' ? " | " : (char[]){*c, '\0'}, stdout);
    putchar('\n');
}

static int run_errors(const char* model, int bad_count, char** bad_models) {
    fcn_segmenter* segmenter = (fcn_segmenter*)&failures; /* must be reset to NULL on failure */
    expect("create-null-out", fcn_segmenter_create(model, "cpu", NULL), FCN_E_INVALID_ARG);
    expect("create-null-path", fcn_segmenter_create(NULL, "cpu", &segmenter), FCN_E_INVALID_ARG);
    expect("create-null-resets-out", segmenter == NULL ? FCN_E_INVALID_ARG : FCN_OK, FCN_E_INVALID_ARG);
    expect("create-unknown-device", fcn_segmenter_create(model, "gpu", &segmenter), FCN_E_INVALID_ARG);
    expect("create-missing-file", fcn_segmenter_create("no/such/model.onnx", "cpu", &segmenter), FCN_E_NOT_FOUND);
    for (int i = 0; i < bad_count; ++i) {
        segmenter = (fcn_segmenter*)&failures;
        expect(bad_models[i], fcn_segmenter_create(bad_models[i], "cpu", &segmenter), FCN_E_BAD_MODEL);
        expect("create-not-a-model-resets-out", segmenter == NULL ? FCN_E_BAD_MODEL : FCN_OK, FCN_E_BAD_MODEL);
    }
    expect("create", fcn_segmenter_create(model, "cpu", &segmenter), FCN_OK);
    if (segmenter == NULL) return failures;

    uint8_t pixels[64 * 64 * 3] = {0};
    fcn_image good = {pixels, 64, 64, 64 * 3, FCN_PIXEL_RGB8};
    fcn_mask* masks = (fcn_mask*)&failures;
    expect("apply-null-handle", fcn_segmenter_apply(NULL, &good, 1, &masks), FCN_E_INVALID_ARG);
    expect("apply-null-resets-masks", masks == NULL ? FCN_E_INVALID_ARG : FCN_OK, FCN_E_INVALID_ARG);
    expect("apply-null-images", fcn_segmenter_apply(segmenter, NULL, 1, &masks), FCN_E_INVALID_ARG);
    expect("apply-count-zero", fcn_segmenter_apply(segmenter, &good, 0, &masks), FCN_E_INVALID_ARG);
    expect("apply-count-negative", fcn_segmenter_apply(segmenter, &good, -3, &masks), FCN_E_INVALID_ARG);
    expect("apply-null-masks", fcn_segmenter_apply(segmenter, &good, 1, NULL), FCN_E_INVALID_ARG);
    fcn_image bad = good;
    bad.stride_bytes = 64 * 3 - 1;
    expect("apply-short-stride", fcn_segmenter_apply(segmenter, &bad, 1, &masks), FCN_E_INVALID_ARG);
    bad = good;
    bad.format = (fcn_pixel_format)42;
    expect("apply-unknown-format", fcn_segmenter_apply(segmenter, &bad, 1, &masks), FCN_E_INVALID_ARG);
    bad = good;
    bad.data = NULL;
    expect("apply-null-data", fcn_segmenter_apply(segmenter, &bad, 1, &masks), FCN_E_INVALID_ARG);
    bad = good;
    bad.width = 0;
    expect("apply-zero-width", fcn_segmenter_apply(segmenter, &bad, 1, &masks), FCN_E_INVALID_ARG);
    fcn_image pair[2] = {good, good};
    pair[1].format = FCN_PIXEL_GRAY8;
    pair[1].stride_bytes = 63;
    expect("apply-second-image-bad", fcn_segmenter_apply(segmenter, pair, 2, &masks), FCN_E_INVALID_ARG);
    expect("apply-second-image-bad-null", masks == NULL ? FCN_E_INVALID_ARG : FCN_OK, FCN_E_INVALID_ARG);

    int num_classes = 0;
    expect("num-classes-null-handle", fcn_segmenter_num_classes(NULL, &num_classes), FCN_E_INVALID_ARG);
    expect("num-classes-null-out", fcn_segmenter_num_classes(segmenter, NULL), FCN_E_INVALID_ARG);
    expect("class-name-negative", fcn_segmenter_class_name(segmenter, -1) == NULL ? FCN_E_INVALID_ARG : FCN_OK,
           FCN_E_INVALID_ARG);
    expect("num-classes", fcn_segmenter_num_classes(segmenter, &num_classes), FCN_OK);
    expect("class-name-past-end",
           fcn_segmenter_class_name(segmenter, num_classes) == NULL ? FCN_E_INVALID_ARG : FCN_OK, FCN_E_INVALID_ARG);
    expect("class-name-null-handle", fcn_segmenter_class_name(NULL, 0) == NULL ? FCN_E_INVALID_ARG : FCN_OK,
           FCN_E_INVALID_ARG);
    const uint8_t* palette = NULL;
    expect("palette-null-out", fcn_segmenter_palette(segmenter, NULL, NULL), FCN_E_INVALID_ARG);
    expect("palette", fcn_segmenter_palette(segmenter, &palette, NULL), FCN_OK);
    /* after all those failures the handle still works and a success clears the message */
    expect("apply-after-errors", fcn_segmenter_apply(segmenter, &good, 1, &masks), FCN_OK);
    fcn_masks_release(masks, 1);
    fcn_masks_release(NULL, 5);
    fcn_segmenter_destroy(segmenter);
    fcn_segmenter_destroy(NULL);
    return failures;
}

/* --- apply, threads, cycles ------------------------------------------------------------------------- */

static int run_apply(const char* model, const char* prefix, int count, char** specs) {
    test_image* inputs = (test_image*)calloc((size_t)count, sizeof(test_image));
    fcn_image* images = (fcn_image*)calloc((size_t)count, sizeof(fcn_image));
    int failed = 0;
    for (int i = 0; i < count && !failed; ++i) {
        failed = load_image(specs[i], &inputs[i]);
        images[i] = inputs[i].image;
    }
    fcn_segmenter* segmenter = NULL;
    fcn_mask* masks = NULL;
    if (!failed) {
        int status = fcn_segmenter_create(model, "cpu", &segmenter);
        if (status == FCN_OK) status = fcn_segmenter_apply(segmenter, images, count, &masks);
        failed = status != FCN_OK ? report(status) : 0;
    }
    for (int i = 0; i < count && !failed; ++i) failed = write_labels(prefix, i, &masks[i]);
    fcn_masks_release(masks, count);
    fcn_segmenter_destroy(segmenter);
    for (int i = 0; i < count; ++i) free(inputs[i].buffer);
    free(inputs);
    free(images);
    return failed;
}

typedef struct {
    fcn_segmenter* segmenter;
    test_image input;
    int iterations;
    fcn_mask* first;
    int failed;
} worker;

static void* work(void* argument) {
    worker* w = (worker*)argument;
    for (int i = 0; i < w->iterations && !w->failed; ++i) {
        fcn_mask* masks = NULL;
        int status = fcn_segmenter_apply(w->segmenter, &w->input.image, 1, &masks);
        if (status != FCN_OK) {
            w->failed = report(status);
        } else if (w->first == NULL) {
            w->first = masks;
        } else {
            size_t size = (size_t)masks[0].width * masks[0].height;
            if (memcmp(masks[0].labels, w->first[0].labels, size) != 0) {
                fprintf(stderr, "iteration %d differs from the first\n", i);
                w->failed = 1;
            }
            fcn_masks_release(masks, 1);
        }
    }
    return NULL;
}

static int run_threads(const char* model, const char* prefix, int iterations, char** specs) {
    fcn_segmenter* segmenter = NULL;
    int status = fcn_segmenter_create(model, "cpu", &segmenter);
    if (status != FCN_OK) return report(status);
    worker workers[2];
    memset(workers, 0, sizeof workers);
    int failed = 0;
    for (int t = 0; t < 2; ++t) {
        workers[t].segmenter = segmenter;
        workers[t].iterations = iterations;
        failed |= load_image(specs[t], &workers[t].input);
    }
    pthread_t threads[2];
    for (int t = 0; t < 2 && !failed; ++t) failed = pthread_create(&threads[t], NULL, work, &workers[t]) != 0;
    for (int t = 0; t < 2 && !failed; ++t) pthread_join(threads[t], NULL);
    for (int t = 0; t < 2; ++t) {
        failed |= workers[t].failed || workers[t].first == NULL;
        if (!failed) failed = write_labels(prefix, t, &workers[t].first[0]);
        fcn_masks_release(workers[t].first, 1);
        free(workers[t].input.buffer);
    }
    fcn_segmenter_destroy(segmenter);
    return failed;
}

typedef struct {
    fcn_segmenter* segmenter;
    const test_image* inputs;
    fcn_mask* const* expected;
    int count, first, mismatches;
} pool_worker;

static void* pool_work(void* argument) {
    pool_worker* w = (pool_worker*)argument;
    for (int k = 0; k < w->count; ++k) {
        int i = (w->first + k) % w->count;
        fcn_mask* masks = NULL;
        int status = fcn_segmenter_apply(w->segmenter, &w->inputs[i].image, 1, &masks);
        size_t size = (size_t)w->inputs[i].image.width * w->inputs[i].image.height;
        if (status != FCN_OK) {
            report(status);
            ++w->mismatches;
        } else if (memcmp(masks[0].labels, w->expected[i][0].labels, size) != 0) {
            printf("thread %d: image %d differs from the sequential result\n", w->first, i);
            ++w->mismatches;
        }
        fcn_masks_release(masks, 1);
    }
    return NULL;
}

static int run_pool(const char* model, int thread_count, int count, char** specs) {
    enum { MAX_THREADS = 16, MAX_IMAGES = 64 };
    if (thread_count < 1 || thread_count > MAX_THREADS || count > MAX_IMAGES) return 2;
    test_image inputs[MAX_IMAGES];
    fcn_mask* expected[MAX_IMAGES] = {NULL};
    int failed = 0, loaded = 0;
    for (; loaded < count && !failed; ++loaded) failed = load_image(specs[loaded], &inputs[loaded]);
    if (failed) --loaded;
    fcn_segmenter* segmenter = NULL;
    int status = failed ? FCN_OK : fcn_segmenter_create(model, "cpu", &segmenter);
    if (status != FCN_OK) failed = report(status);
    for (int i = 0; i < count && !failed; ++i) {
        status = fcn_segmenter_apply(segmenter, &inputs[i].image, 1, &expected[i]);
        if (status != FCN_OK) failed = report(status);
    }
    pool_worker workers[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    int started = 0;
    for (; started < thread_count && !failed; ++started) {
        workers[started] = (pool_worker){segmenter, inputs, expected, count, started, 0};
        if (pthread_create(&threads[started], NULL, pool_work, &workers[started]) != 0) break;
    }
    int mismatches = 0;
    for (int t = 0; t < started; ++t) {
        pthread_join(threads[t], NULL);
        mismatches += workers[t].mismatches;
    }
    if (!failed && started == thread_count && mismatches == 0) printf("ok threads=%d images=%d\n", thread_count, count);
    for (int i = 0; i < count; ++i) fcn_masks_release(expected[i], 1);
    fcn_segmenter_destroy(segmenter);
    for (int i = 0; i < loaded; ++i) free(inputs[i].buffer);
    return failed || started != thread_count ? 1 : mismatches;
}

/* One create / query / apply / release / destroy cycle; with `keep`, the result is not released. */
static int cycle(const char* model, const fcn_image* image, int keep) {
    fcn_segmenter* segmenter = NULL;
    fcn_mask* masks = NULL;
    int num_classes = 0;
    const uint8_t* palette = NULL;
    int status = fcn_segmenter_create(model, "cpu", &segmenter);
    if (status == FCN_OK) status = fcn_segmenter_num_classes(segmenter, &num_classes);
    if (status == FCN_OK) status = fcn_segmenter_palette(segmenter, &palette, NULL);
    if (status == FCN_OK && fcn_segmenter_class_name(segmenter, num_classes - 1) == NULL) status = FCN_E_INTERNAL;
    if (status == FCN_OK) status = fcn_segmenter_apply(segmenter, image, 1, &masks);
    if (!keep) fcn_masks_release(masks, 1);
    fcn_segmenter_destroy(segmenter);
    return status != FCN_OK ? report(status) : 0;
}

static int run_cycles(const char* model, const char* spec, int cycles) {
    test_image input;
    if (load_image(spec, &input) != 0) return 1;
    int failed = 0;
    for (int i = 0; i < cycles && !failed; ++i) failed = cycle(model, &input.image, 0);
    free(input.buffer);
    if (!failed) printf("ok cycles=%d\n", cycles);
    return failed;
}

static int run_maps(const char* model, const char* spec) {
    test_image input;
    if (load_image(spec, &input) != 0) return 1;
    fcn_segmenter* segmenter = NULL;
    fcn_mask* masks = NULL;
    int status = fcn_segmenter_create(model, "cpu", &segmenter);
    if (status == FCN_OK) status = fcn_segmenter_apply(segmenter, &input.image, 1, &masks);
    printf("status=%s\n", fcn_status_name(status));
    FILE* maps = fopen("/proc/self/maps", "r");
    int c;
    while (maps != NULL && (c = fgetc(maps)) != EOF) putchar(c);
    if (maps != NULL) fclose(maps);
    fcn_masks_release(masks, 1);
    fcn_segmenter_destroy(segmenter);
    free(input.buffer);
    return status != FCN_OK ? report(status) : 0;
}

#ifdef FCN_TEST_VALGRIND
/* Bytes valgrind counts as leaked (definitely + indirectly lost) now; a full check also prints the records. */
static unsigned long leaked_bytes(int full) {
    unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
    if (full) {
        fprintf(stderr, "capi_test: leak records after the cycles\n");
        VALGRIND_DO_LEAK_CHECK;
        fprintf(stderr, "capi_test: end of leak records\n");
    } else {
        VALGRIND_DO_QUICK_LEAK_CHECK;
    }
    VALGRIND_COUNT_LEAKS(leaked, dubious, reachable, suppressed);
    (void)dubious, (void)reachable, (void)suppressed;
    return leaked;
}

static int run_leaks(const char* model, const char* spec, int cycles) {
    test_image input;
    if (load_image(spec, &input) != 0) return 1;
    int failed = cycle(model, &input.image, 0); /* warm-up: the interpreter's one-time allocations */
    unsigned long before = leaked_bytes(0);
    for (int i = 0; i < cycles && !failed; ++i) failed = cycle(model, &input.image, 0);
    unsigned long after = leaked_bytes(1);
    if (!failed) failed = cycle(model, &input.image, 1);
    unsigned long deliberate = leaked_bytes(0);
    free(input.buffer);
    printf("running_on_valgrind=%u\n", (unsigned)RUNNING_ON_VALGRIND);
    printf("leak_growth_bytes=%ld\n", (long)(after - before));
    printf("deliberate_leak_bytes=%ld\n", (long)(deliberate - after));
    return failed;
}
#endif

int main(int argc, char** argv) {
    if (argc >= 4 && strcmp(argv[1], "errors") == 0) return run_errors(argv[2], argc - 3, argv + 3);
    if (argc == 4 && strcmp(argv[1], "create") == 0) {
        fcn_segmenter* segmenter = NULL;
        int status = fcn_segmenter_create(argv[2], argv[3], &segmenter);
        printf("status=%s\nmessage=%s\n", fcn_status_name(status), fcn_last_error());
        fcn_segmenter_destroy(segmenter);
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "apply") == 0) return run_apply(argv[2], argv[3], argc - 4, argv + 4);
    if (argc >= 5 && strcmp(argv[1], "pool") == 0) return run_pool(argv[2], atoi(argv[3]), argc - 4, argv + 4);
    if (argc == 5 && strcmp(argv[1], "cycles") == 0) return run_cycles(argv[2], argv[3], atoi(argv[4]));
    if (argc == 4 && strcmp(argv[1], "maps") == 0) return run_maps(argv[2], argv[3]);
    if (argc == 7 && strcmp(argv[1], "threads") == 0) return run_threads(argv[2], argv[3], atoi(argv[4]), argv + 5);
#ifdef FCN_TEST_VALGRIND
    if (argc == 5 && strcmp(argv[1], "leaks") == 0) return run_leaks(argv[2], argv[3], atoi(argv[4]));
#endif
    fprintf(stderr, "usage: see the comment at the top of capi_test.c\n");
    return 2;
}
