/*
 * fcn_deploy.h - C API of the fcn-deploy segmenter (C99, no dependencies).
 *
 * Two libraries implement this header (libfcn_deploy.so, built by `fcn-deploy capi build --runtime R --out DIR`):
 *   native (the default): C++ over OpenVINO on the CPU, no Python in the host; DIR is a relocatable folder.
 *     It reads fcn-deploy ONNX files (FP32, INT8 Q/DQ) and OpenVINO IR, with the same preprocessing, tiling,
 *     blending and argmax as the Python API, so labels equal `fcn-deploy infer --backend openvino`.
 *   embedded: embeds the Python runtime of the environment it was built from and runs the Python segmenter
 *     itself: every artifact (TensorRT engines and checkpoints too) and every device.
 *
 * Conventions
 *   - Every function that can fail returns an int status: FCN_OK (0) or one of the FCN_E_* codes.
 *     fcn_last_error() then gives a message for the last failed call made by the calling thread.
 *   - Every API call clears the calling thread's message first; after a success it is "".
 *   - Handles may be used from several threads: the native library runs up to two such calls in parallel (each
 *     with its own OpenVINO compiled model and infer request), the embedded one serialises them.
 *   - Memory returned by the library is released by the library (fcn_masks_release,
 *     fcn_segmenter_destroy); strings and palettes stay valid until the handle is destroyed.
 *
 * Minimal use
 *   fcn_segmenter* seg = NULL;
 *   if (fcn_segmenter_create("fcn.onnx", "auto", &seg) != FCN_OK) { puts(fcn_last_error()); return 1; }
 *   fcn_image image = { pixels, width, height, width * 3, FCN_PIXEL_RGB8 };
 *   fcn_mask* masks = NULL;
 *   if (fcn_segmenter_apply(seg, &image, 1, &masks) == FCN_OK) {
 *       use masks[0].labels (masks[0].height rows of masks[0].width class indices);
 *       fcn_masks_release(masks, 1);
 *   }
 *   fcn_segmenter_destroy(seg);
 */
#ifndef FCN_DEPLOY_H
#define FCN_DEPLOY_H

#include <stdint.h>

#if defined(_WIN32)
#define FCN_API
#elif defined(__GNUC__) || defined(__clang__)
#define FCN_API __attribute__((visibility("default")))
#else
#define FCN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes returned by the API (0 is success). */
typedef enum fcn_status {
    FCN_OK = 0,
    FCN_E_INVALID_ARG = 1,         /* a NULL pointer, a bad size, stride or format, an unknown device */
    FCN_E_NOT_FOUND = 2,           /* the model file does not exist */
    FCN_E_BAD_MODEL = 3,           /* the file is not a readable fcn-deploy artifact (ONNX, engine, checkpoint) */
    FCN_E_BACKEND_UNAVAILABLE = 4, /* the runtime it needs is missing (CUDA, TensorRT, a Python package)
                                      or the embedded Python runtime could not start */
    FCN_E_INTERNAL = 5,            /* an unexpected failure inside the library; the message says what */
    FCN_E_OUT_OF_MEMORY = 6        /* the library could not allocate the result */
} fcn_status;

/* Pixel layouts of fcn_image; every channel is one byte. */
typedef enum fcn_pixel_format {
    FCN_PIXEL_RGB8 = 0,  /* 3 bytes a pixel: R, G, B */
    FCN_PIXEL_BGR8 = 1,  /* 3 bytes a pixel: B, G, R (OpenCV's default) */
    FCN_PIXEL_RGBA8 = 2, /* 4 bytes a pixel: R, G, B, A (alpha ignored) */
    FCN_PIXEL_BGRA8 = 3, /* 4 bytes a pixel: B, G, R, A (alpha ignored) */
    FCN_PIXEL_GRAY8 = 4  /* 1 byte a pixel, used as R = G = B */
} fcn_pixel_format;

/* An input image the caller owns; the library only reads it during fcn_segmenter_apply.
 * Row y starts at data + y * stride_bytes; stride_bytes >= width * bytes-per-pixel (padded rows allowed). */
typedef struct fcn_image {
    const uint8_t* data;
    int width, height, stride_bytes;
    fcn_pixel_format format;
} fcn_image;

/* A segmentation result: height rows of width class indices (row-major, no padding), one per pixel.
 * Allocated by fcn_segmenter_apply, released by fcn_masks_release. */
typedef struct fcn_mask {
    int width, height;
    uint8_t* labels;
} fcn_mask;

/* An opened model; create with fcn_segmenter_create, release with fcn_segmenter_destroy. */
typedef struct fcn_segmenter fcn_segmenter;

/* Version of fcn-deploy this library was built from, e.g. "0.1.0" (static storage). */
FCN_API const char* fcn_version(void);

/* Message for the last failed API call on the calling thread ("" when the last call succeeded).
 * The pointer stays valid until the thread's next API call. */
FCN_API const char* fcn_last_error(void);

/* Short fixed name of a status code, e.g. "FCN_E_NOT_FOUND" (static storage). */
FCN_API const char* fcn_status_name(int status);

/* Open a model: an ONNX file (.onnx), a TensorRT engine (.engine/.plan) or a checkpoint (.pt/.pth)
 * written by fcn-deploy (native library: .onnx and OpenVINO IR .xml only). device is "auto" (CUDA when
 * available, else CPU), "cpu" or "cuda"; NULL means "auto". "openvino", "openvino:f32" and "openvino:bf16" run
 * an ONNX model with OpenVINO on the CPU (bf16: bfloat16 arithmetic, refused with FCN_E_BACKEND_UNAVAILABLE on
 * a CPU without native BF16). The native library runs "auto" and "cpu" as "openvino:f32" and refuses "cuda"
 * with FCN_E_BACKEND_UNAVAILABLE. On success *out receives a new handle; on failure *out is set to NULL.
 * In the embedded library the first call in a process starts the Python runtime (this takes a few seconds).
 * The native library keeps compiled models in a per-user cache ($XDG_CACHE_HOME or ~/.cache, fcn-deploy/openvino)
 * so that a model opens faster the second time: the environment variable FCN_DEPLOY_CACHE_DIR=DIR moves it, set
 * and empty turns it off; a folder it cannot use means no cache and one warning line on stderr, not a failure. */
FCN_API int fcn_segmenter_create(const char* model_path, const char* device, fcn_segmenter** out);

/* Segment count images (count >= 1). On success *masks receives an array of count masks, mask i the
 * size of image i; release it with fcn_masks_release(*masks, count). On failure *masks is NULL. */
FCN_API int fcn_segmenter_apply(fcn_segmenter* segmenter, const fcn_image* images, int count, fcn_mask** masks);

/* Release masks returned by fcn_segmenter_apply (count as passed to it). NULL is ignored. */
FCN_API void fcn_masks_release(fcn_mask* masks, int count);

/* Number of classes the model predicts (labels are 0 .. num_classes - 1). */
FCN_API int fcn_segmenter_num_classes(const fcn_segmenter* segmenter, int* num_classes);

/* Name of class index (0 .. num_classes - 1), or NULL (see fcn_last_error) for a bad handle or index.
 * The string stays valid until the handle is destroyed. */
FCN_API const char* fcn_segmenter_class_name(const fcn_segmenter* segmenter, int index);

/* The model's colour palette: *rgb receives num_classes * 3 bytes (R, G, B of class 0, then class 1, ...)
 * and *count (if not NULL) the number of colours. The bytes stay valid until the handle is destroyed. */
FCN_API int fcn_segmenter_palette(const fcn_segmenter* segmenter, const uint8_t** rgb, int* count);

/* Close the model and free the handle. NULL is ignored. Do not call while another thread uses it. */
FCN_API void fcn_segmenter_destroy(fcn_segmenter* segmenter);

#ifdef __cplusplus
}
#endif

#endif /* FCN_DEPLOY_H */
