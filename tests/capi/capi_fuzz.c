/*
 * Argument fuzzer for the C API; tests/capi/test_capi_fuzz.py compiles it against the built library and runs it.
 *
 *   capi_fuzz MODEL ITERATIONS SEED
 *
 * Each iteration calls fcn_segmenter_apply (and now and then the class and palette queries) with arguments
 * drawn at random: NULL pointers, zero, negative and huge sizes, short and negative strides, unknown formats,
 * counts below one. It predicts from the documented rules whether the call is valid: a valid call must return
 * FCN_OK with masks of the images' sizes, an invalid one FCN_E_INVALID_ARG with a message and no masks. Buffers
 * exist only for calls predicted valid, so a check the library skipped shows up as a crash or a wrong status.
 * Prints "ok CALLS VALID" and exits 0, or prints each mismatch and exits 1.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcn_deploy.h>

#define MAX_IMAGES 3
#define MAX_SIDE 40

static uint64_t state;

static uint32_t next_random(void) { /* xorshift64* */
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (uint32_t)((state * 2685821657736338717ULL) >> 32);
}

static int pick(const int* values, int count) { return values[next_random() % (uint32_t)count]; }

static int chance(int percent) { return (int)(next_random() % 100) < percent; }

static int bytes_per_pixel(int format) {
    switch (format) {
        case FCN_PIXEL_RGB8:
        case FCN_PIXEL_BGR8: return 3;
        case FCN_PIXEL_RGBA8:
        case FCN_PIXEL_BGRA8: return 4;
        case FCN_PIXEL_GRAY8: return 1;
        default: return 0;
    }
}

static int side(void) {
    static const int odd[] = {INT_MIN, -100, -1, 0, INT_MAX, 1 << 20, 65536};
    return chance(75) ? 1 + (int)(next_random() % MAX_SIDE) : pick(odd, (int)(sizeof odd / sizeof odd[0]));
}

/* One image with random fields; returns 1 when the documented rules make it valid (and then gives it pixels). */
static int random_image(fcn_image* image, uint8_t** buffer, const uint8_t* dummy) {
    static const int formats[] = {-1, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 99, INT_MIN, INT_MAX};
    image->width = side();
    image->height = side();
    image->format = (fcn_pixel_format)pick(formats, (int)(sizeof formats / sizeof formats[0]));
    int bpp = bytes_per_pixel((int)image->format);
    long long row = (long long)image->width * (bpp ? bpp : 1);
    static const int odd_strides[] = {INT_MIN, -1, 0, 1};
    if (chance(70) && row >= 0 && row <= INT_MAX - 64)
        image->stride_bytes = (int)row + (chance(50) ? 0 : (int)(next_random() % 64));
    else if (chance(50) && row > 0 && row <= INT_MAX)
        image->stride_bytes = (int)row - 1;
    else
        image->stride_bytes = pick(odd_strides, (int)(sizeof odd_strides / sizeof odd_strides[0]));
    int has_data = !chance(5);
    int valid = has_data && image->width > 0 && image->height > 0 && bpp > 0 &&
                (long long)image->stride_bytes >= row && (long long)image->width * image->height <= INT_MAX;
    *buffer = NULL;
    image->data = has_data ? dummy : NULL;
    if (valid && image->width <= MAX_SIDE && image->height <= MAX_SIDE) {
        size_t size = (size_t)image->stride_bytes * (size_t)(image->height - 1) + (size_t)row;
        *buffer = (uint8_t*)malloc(size);
        if (*buffer == NULL) return -1;
        for (size_t i = 0; i < size; ++i) (*buffer)[i] = (uint8_t)next_random();
        image->data = *buffer;
    } else if (valid) { /* valid but too big to allocate here: make it invalid by its size */
        image->width = -image->width;
    }
    return valid && *buffer != NULL;
}

static int failures = 0;

static void fail(long iteration, const char* what, int status) {
    ++failures;
    printf("FAIL iteration %ld: %s (status %s, message '%s')\n", iteration, what, fcn_status_name(status),
           fcn_last_error());
}

static void queries(fcn_segmenter* segmenter, long iteration, int num_classes) {
    int index = (int)(next_random() % 1000) - 500;
    int null_segmenter = chance(10);
    const char* name = fcn_segmenter_class_name(null_segmenter ? NULL : segmenter, index);
    int named = !null_segmenter && index >= 0 && index < num_classes;
    if ((name != NULL) != named) fail(iteration, "class name: wrong result for the index", 0);
    const uint8_t* rgb = NULL;
    int count = 0, null_rgb = chance(10);
    null_segmenter = chance(10);
    int status = fcn_segmenter_palette(null_segmenter ? NULL : segmenter, null_rgb ? NULL : &rgb,
                                       chance(10) ? NULL : &count);
    int expected = null_segmenter || null_rgb ? FCN_E_INVALID_ARG : FCN_OK;
    if (status != expected) fail(iteration, "palette: wrong status", status);
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: capi_fuzz MODEL ITERATIONS SEED\n");
        return 2;
    }
    long iterations = strtol(argv[2], NULL, 10);
    state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)strtoull(argv[3], NULL, 10);
    fcn_segmenter* segmenter = NULL;
    int status = fcn_segmenter_create(argv[1], "cpu", &segmenter);
    if (status != FCN_OK) {
        printf("FAIL create: %s %s\n", fcn_status_name(status), fcn_last_error());
        return 1;
    }
    int num_classes = 0;
    fcn_segmenter_num_classes(segmenter, &num_classes);
    static const int counts[] = {INT_MIN, -1, 0, 1, 1, 1, 2, 3};
    static uint8_t dummy[16];
    long valid_calls = 0;
    for (long iteration = 0; iteration < iterations; ++iteration) {
        fcn_image images[MAX_IMAGES];
        uint8_t* buffers[MAX_IMAGES] = {NULL, NULL, NULL};
        int count = pick(counts, (int)(sizeof counts / sizeof counts[0]));
        int filled = count > 0 ? count : 1;
        int valid = 1;
        for (int i = 0; i < filled; ++i) {
            int image_valid = random_image(&images[i], &buffers[i], dummy);
            if (image_valid < 0) return 3; /* out of memory in the harness */
            valid &= image_valid;
        }
        int null_segmenter = chance(5), null_images = chance(5), null_masks = chance(5);
        valid &= !null_segmenter && !null_images && !null_masks && count >= 1;
        fcn_mask* masks = (fcn_mask*)dummy; /* must be set to NULL on any failure */
        status = fcn_segmenter_apply(null_segmenter ? NULL : segmenter, null_images ? NULL : images, count,
                                     null_masks ? NULL : &masks);
        if (valid) {
            ++valid_calls;
            if (status != FCN_OK) {
                fail(iteration, "a valid call failed", status);
            } else {
                for (int i = 0; i < count; ++i)
                    if (masks[i].width != images[i].width || masks[i].height != images[i].height)
                        fail(iteration, "a mask of the wrong size", status);
                fcn_masks_release(masks, count);
            }
        } else {
            if (status != FCN_E_INVALID_ARG) fail(iteration, "an invalid call was not refused", status);
            if (fcn_last_error()[0] == '\0') fail(iteration, "a refusal without a message", status);
            if (!null_masks && masks != NULL) fail(iteration, "a refusal left masks set", status);
        }
        for (int i = 0; i < filled; ++i) free(buffers[i]);
        if (chance(10)) queries(segmenter, iteration, num_classes);
    }
    fcn_segmenter_destroy(segmenter);
    if (failures) return 1;
    printf("ok %ld %ld\n", iterations, valid_calls);
    return 0;
}
