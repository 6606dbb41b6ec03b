/*
 * segment - run the fcn-deploy segmenter on a binary PPM image from C.
 *
 *   segment MODEL INPUT.ppm OUTPUT.pgm [DEVICE]
 *
 * MODEL is an ONNX file, TensorRT engine or checkpoint written by fcn-deploy; DEVICE is auto (default),
 * cpu or cuda. The labels are written as an 8-bit PGM (one class index a pixel) and the pixel count of
 * every class present is printed with its name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcn_deploy.h>

/* Skip whitespace and '#' comments between PPM header fields. */
static void skip_separators(FILE* file) {
    int c = fgetc(file);
    while (c == '#' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        if (c == '#')
            while (c != '\n' && c != EOF) c = fgetc(file);
        c = fgetc(file);
    }
    if (c != EOF) ungetc(c, file);
}

/* Read a binary PPM (P6, maxval 255) into a new RGB buffer; NULL (with a message) on failure. */
static uint8_t* read_ppm(const char* path, int* width, int* height) {
    FILE* file = fopen(path, "rb");
    if (file == NULL) {
        perror(path);
        return NULL;
    }
    int maxval = 0;
    uint8_t* pixels = NULL;
    char magic[3] = {0};
    if (fread(magic, 1, 2, file) != 2 || strcmp(magic, "P6") != 0) {
        fprintf(stderr, "%s: not a binary PPM (P6) file\n", path);
        goto done;
    }
    skip_separators(file);
    if (fscanf(file, "%d", width) != 1) goto bad_header;
    skip_separators(file);
    if (fscanf(file, "%d", height) != 1) goto bad_header;
    skip_separators(file);
    if (fscanf(file, "%d", &maxval) != 1 || maxval != 255 || *width < 1 || *height < 1) goto bad_header;
    fgetc(file); /* the single whitespace byte before the pixels */
    size_t size = (size_t)*width * (size_t)*height * 3;
    pixels = (uint8_t*)malloc(size);
    if (pixels == NULL || fread(pixels, 1, size, file) != size) {
        fprintf(stderr, "%s: truncated pixel data\n", path);
        free(pixels);
        pixels = NULL;
    }
    goto done;
bad_header:
    fprintf(stderr, "%s: unsupported PPM header (need P6, positive size, maxval 255)\n", path);
done:
    fclose(file);
    return pixels;
}

/* Write a mask as an 8-bit binary PGM (P5); 0 on success. */
static int write_pgm(const char* path, const fcn_mask* mask) {
    FILE* file = fopen(path, "wb");
    if (file == NULL) {
        perror(path);
        return 1;
    }
    size_t size = (size_t)mask->width * (size_t)mask->height;
    fprintf(file, "P5\n%d %d\n255\n", mask->width, mask->height);
    int failed = fwrite(mask->labels, 1, size, file) != size;
    failed |= fclose(file) != 0;
    if (failed) fprintf(stderr, "%s: write failed\n", path);
    return failed;
}

/* Print "index name count (share)" for every class present in the mask. */
static void print_class_counts(const fcn_segmenter* segmenter, const fcn_mask* mask) {
    size_t counts[256] = {0};
    size_t total = (size_t)mask->width * (size_t)mask->height;
    for (size_t i = 0; i < total; ++i) counts[mask->labels[i]]++;
    int num_classes = 0;
    fcn_segmenter_num_classes(segmenter, &num_classes);
    for (int label = 0; label < 256; ++label) {
        if (counts[label] == 0) continue;
        const char* name = label < num_classes ? fcn_segmenter_class_name(segmenter, label) : "(unknown)";
        printf("%3d %-14s %9zu px %6.2f%%\n", label, name, counts[label], 100.0 * (double)counts[label] / (double)total);
    }
}

int main(int argc, char** argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s MODEL INPUT.ppm OUTPUT.pgm [auto|cpu|cuda]\n", argv[0]);
        return 2;
    }
    int width = 0, height = 0;
    uint8_t* pixels = read_ppm(argv[2], &width, &height);
    if (pixels == NULL) return 1;

    fcn_segmenter* segmenter = NULL;
    int status = fcn_segmenter_create(argv[1], argc == 5 ? argv[4] : "auto", &segmenter);
    if (status != FCN_OK) {
        fprintf(stderr, "error: %s: %s\n", fcn_status_name(status), fcn_last_error());
        free(pixels);
        return 1;
    }
    fcn_image image = {pixels, width, height, width * 3, FCN_PIXEL_RGB8};
    fcn_mask* masks = NULL;
    status = fcn_segmenter_apply(segmenter, &image, 1, &masks);
    int exit_code = 1;
    if (status != FCN_OK) {
        fprintf(stderr, "error: %s: %s\n", fcn_status_name(status), fcn_last_error());
    } else {
        printf("fcn-deploy %s: %s (%dx%d) -> %s\n", fcn_version(), argv[2], width, height, argv[3]);
        print_class_counts(segmenter, &masks[0]);
        exit_code = write_pgm(argv[3], &masks[0]);
        fcn_masks_release(masks, 1);
    }
    fcn_segmenter_destroy(segmenter);
    free(pixels);
    return exit_code;
}
