/*
 * C side of libfcn_deploy.so: argument checks, result memory, per-thread error messages and the start
 * of the embedded Python runtime. The segmentation itself runs in Python (fcn_deploy/capi/embedded.py)
 * through cffi's ``extern "Python"`` functions declared below.
 *
 * The build (fcn_deploy/capi/build.py) passes this file to cffi's set_source after a prelude that defines
 * FCN_BUILD_VERSION, FCN_BUILD_PYTHON (the interpreter of the environment the library was built from) and
 * FCN_BUILD_LIBPYTHON (the soname of its shared libpython).
 * Python.h and cffi's embedding helpers (cffi_start_python) are already included by cffi.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fcn_deploy.h"

struct fcn_segmenter {
    long long key;       /* key of the Python segmenter in embedded.py's registry; -1 before creation */
    int num_classes;
    char** class_names;  /* num_classes NUL-terminated copies */
    uint8_t* palette;    /* num_classes * 3 bytes */
};

/* --- per-thread error message ---------------------------------------------------------------------- */

static __thread char fcn_error_message[2048];

static void fcn_clear_error(void) { fcn_error_message[0] = '\0'; }

/* Store a formatted message for the calling thread and return status (for `return fcn_fail(...)`). */
static int fcn_fail(int status, const char* format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(fcn_error_message, sizeof fcn_error_message, format, args);
    va_end(args);
    return status;
}

/* Called from Python: the message of an exception caught at the boundary. */
static void _fcn_set_error(const char* message) {
    snprintf(fcn_error_message, sizeof fcn_error_message, "%s", message ? message : "");
}

/* --- functions implemented in Python (embedded.py binds them with ffi.def_extern) ---------------------- */

static int _fcn_py_create(const char* model_path, const char* device, fcn_segmenter* handle);
static int _fcn_py_apply(long long key, const fcn_image* images, int count, fcn_mask* masks);
static int _fcn_py_destroy(long long key);

/* --- handle metadata, filled from Python during creation --------------------------------------------- */

static void fcn_free_metadata(fcn_segmenter* handle) {
    if (handle->class_names != NULL) {
        for (int i = 0; i < handle->num_classes; ++i) free(handle->class_names[i]);
        free(handle->class_names);
    }
    free(handle->palette);
    handle->class_names = NULL;
    handle->palette = NULL;
    handle->num_classes = 0;
}

/* Called from Python: copy num_classes NUL-separated names and num_classes * 3 palette bytes. */
static int _fcn_store_metadata(fcn_segmenter* handle, int num_classes, const char* names, size_t names_size,
                               const uint8_t* palette) {
    if (handle == NULL || num_classes < 1 || names == NULL || palette == NULL)
        return fcn_fail(FCN_E_INTERNAL, "internal error: bad model metadata");
    fcn_free_metadata(handle);
    handle->class_names = (char**)calloc((size_t)num_classes, sizeof(char*));
    handle->palette = (uint8_t*)malloc((size_t)num_classes * 3);
    if (handle->class_names == NULL || handle->palette == NULL) {
        free(handle->class_names);
        free(handle->palette);
        handle->class_names = NULL;
        handle->palette = NULL;
        return fcn_fail(FCN_E_OUT_OF_MEMORY, "out of memory storing the class names");
    }
    handle->num_classes = num_classes;
    memcpy(handle->palette, palette, (size_t)num_classes * 3);
    const char* cursor = names;
    const char* end = names + names_size;
    for (int i = 0; i < num_classes; ++i) {
        size_t length = cursor < end ? strnlen(cursor, (size_t)(end - cursor)) : 0;
        handle->class_names[i] = (char*)malloc(length + 1);
        if (handle->class_names[i] == NULL) {
            fcn_free_metadata(handle);
            return fcn_fail(FCN_E_OUT_OF_MEMORY, "out of memory storing the class names");
        }
        memcpy(handle->class_names[i], cursor, length);
        handle->class_names[i][length] = '\0';
        cursor += length + 1;
    }
    return FCN_OK;
}

/* --- the host's signals --------------------------------------------------------------------------------- */

/* Signal handling belongs to the host. The runtimes the embedded Python loads may install handlers of their own:
 * Ray's core worker takes SIGTERM, SIGSEGV, SIGBUS, SIGABRT, SIGFPE and SIGILL (a SIGTERM then ends the process
 * in an abort with a stack dump, and its handlers stay after ray.shutdown), and a Python started with its own
 * handlers takes SIGINT and ignores SIGPIPE and SIGXFSZ. Every call into Python therefore puts back the
 * dispositions these signals had when the call began. */
static const int fcn_host_signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGXFSZ,
                                       SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
#define FCN_HOST_SIGNAL_COUNT (sizeof fcn_host_signals / sizeof fcn_host_signals[0])

typedef struct {
    struct sigaction actions[FCN_HOST_SIGNAL_COUNT];
} fcn_host_signal_state;

static void fcn_save_host_signals(fcn_host_signal_state* state) {
    for (size_t i = 0; i < FCN_HOST_SIGNAL_COUNT; ++i) sigaction(fcn_host_signals[i], NULL, &state->actions[i]);
}

/* Put back each handler the call replaced (the others are left alone). */
static void fcn_restore_host_signals(const fcn_host_signal_state* state) {
    for (size_t i = 0; i < FCN_HOST_SIGNAL_COUNT; ++i) {
        struct sigaction now;
        if (sigaction(fcn_host_signals[i], NULL, &now) == 0 && now.sa_handler != state->actions[i].sa_handler)
            sigaction(fcn_host_signals[i], &state->actions[i], NULL);
    }
}

/* --- embedded Python start-up -------------------------------------------------------------------------- */

static pthread_once_t fcn_python_once = PTHREAD_ONCE_INIT;
static int fcn_python_status = FCN_OK;
static char fcn_python_message[1024];

/* Start the interpreter as if FCN_BUILD_PYTHON had been launched (its prefix, venv and site-packages),
 * whatever PATH, PYTHONPATH or PYTHONHOME the host has; then let cffi run the library's init code. */
static void fcn_start_python_once(void) {
    /* Extension modules (numpy, onnxruntime) resolve Python symbols globally; a host that dlopen()ed this
     * library with RTLD_LOCAL would hide them, so promote the already loaded libpython to global scope. */
    (void)dlopen(FCN_BUILD_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    if (!Py_IsInitialized()) {
        /* PYTHONMALLOC=malloc is the one variable honoured: memory checkers (valgrind) need it */
        const char* allocator = getenv("PYTHONMALLOC");
        PyPreConfig preconfig;
        PyPreConfig_InitPythonConfig(&preconfig);
        preconfig.use_environment = 0;
        preconfig.parse_argv = 0;
        if (allocator != NULL && strcmp(allocator, "malloc") == 0) preconfig.allocator = PYMEM_ALLOCATOR_MALLOC;
        PyStatus status = Py_PreInitialize(&preconfig);
        PyConfig config;
        PyConfig_InitPythonConfig(&config);
        config.parse_argv = 0;
        config.install_signal_handlers = 0; /* the host owns SIGINT */
        config.use_environment = 0;         /* ignore the host's PYTHONHOME, PYTHONPATH, ... */
        config.user_site_directory = 0;
        if (!PyStatus_Exception(status))
            status = PyConfig_SetBytesString(&config, &config.program_name, FCN_BUILD_PYTHON);
        if (!PyStatus_Exception(status))
            status = PyConfig_SetBytesString(&config, &config.executable, FCN_BUILD_PYTHON);
        if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(status)) {
            fcn_python_status = FCN_E_BACKEND_UNAVAILABLE;
            snprintf(fcn_python_message, sizeof fcn_python_message,
                     "cannot start the embedded Python runtime of %s (%s%s%s); "
                     "fix: rebuild the library with 'fcn-deploy capi build' in a working environment",
                     FCN_BUILD_PYTHON, status.func ? status.func : "", status.func ? ": " : "",
                     status.err_msg ? status.err_msg : "exit requested");
            return;
        }
        PyEval_SaveThread(); /* cffi takes the GIL per call */
    }
    if (cffi_start_python() != 0) {
        fcn_python_status = FCN_E_BACKEND_UNAVAILABLE;
        snprintf(fcn_python_message, sizeof fcn_python_message,
                 "the embedded Python runtime of %s could not load fcn_deploy (traceback on stderr); "
                 "fix: rebuild the library with 'fcn-deploy capi build' in the environment fcn-deploy is "
                 "installed in",
                 FCN_BUILD_PYTHON);
    }
}

static int fcn_start_python(void) {
    pthread_once(&fcn_python_once, fcn_start_python_once);
    if (fcn_python_status != FCN_OK) return fcn_fail(fcn_python_status, "%s", fcn_python_message);
    return FCN_OK;
}

/* --- public API --------------------------------------------------------------------------------------- */

const char* fcn_version(void) { return FCN_BUILD_VERSION; }

const char* fcn_last_error(void) { return fcn_error_message; }

const char* fcn_status_name(int status) {
    switch (status) {
        case FCN_OK: return "FCN_OK";
        case FCN_E_INVALID_ARG: return "FCN_E_INVALID_ARG";
        case FCN_E_NOT_FOUND: return "FCN_E_NOT_FOUND";
        case FCN_E_BAD_MODEL: return "FCN_E_BAD_MODEL";
        case FCN_E_BACKEND_UNAVAILABLE: return "FCN_E_BACKEND_UNAVAILABLE";
        case FCN_E_INTERNAL: return "FCN_E_INTERNAL";
        case FCN_E_OUT_OF_MEMORY: return "FCN_E_OUT_OF_MEMORY";
        default: return "FCN_E_UNKNOWN";
    }
}

static void fcn_free_handle(fcn_segmenter* handle) {
    fcn_free_metadata(handle);
    free(handle);
}

/* 1 when device is one of the device strings fcn_segmenter_create accepts. */
static int fcn_known_device(const char* device) {
    static const char* const known[] = {"auto", "cpu", "cuda", "openvino", "openvino:f32", "openvino:bf16"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; ++i)
        if (strcmp(device, known[i]) == 0) return 1;
    return 0;
}

int fcn_segmenter_create(const char* model_path, const char* device, fcn_segmenter** out) {
    fcn_clear_error();
    if (out == NULL)
        return fcn_fail(FCN_E_INVALID_ARG, "out is NULL: pass the address of an fcn_segmenter* to receive the handle");
    *out = NULL;
    if (model_path == NULL || model_path[0] == '\0')
        return fcn_fail(FCN_E_INVALID_ARG, "model_path is NULL or empty: pass the path of an .onnx, .engine or .pt file");
    if (device == NULL) device = "auto";
    if (!fcn_known_device(device))
        return fcn_fail(FCN_E_INVALID_ARG,
                        "unknown device '%s': use \"auto\", \"cpu\", \"cuda\", \"openvino\", \"openvino:f32\" "
                        "or \"openvino:bf16\"", device);
    struct stat info;
    if (stat(model_path, &info) != 0)
        return fcn_fail(FCN_E_NOT_FOUND, "model file not found: %s (%s)", model_path, strerror(errno));
    fcn_segmenter* handle = (fcn_segmenter*)calloc(1, sizeof *handle);
    if (handle == NULL) return fcn_fail(FCN_E_OUT_OF_MEMORY, "out of memory creating the segmenter");
    handle->key = -1;
    fcn_host_signal_state host_signals;
    fcn_save_host_signals(&host_signals);
    int status = fcn_start_python();
    if (status == FCN_OK) status = _fcn_py_create(model_path, device, handle);
    fcn_restore_host_signals(&host_signals);
    if (status != FCN_OK) {
        fcn_free_handle(handle);
        if (fcn_error_message[0] == '\0') fcn_fail(status, "opening %s failed", model_path);
        return status;
    }
    *out = handle;
    return FCN_OK;
}

/* Bytes a pixel of format, or 0 for an unknown format. */
static int fcn_bytes_per_pixel(int format) {
    switch (format) {
        case FCN_PIXEL_RGB8:
        case FCN_PIXEL_BGR8: return 3;
        case FCN_PIXEL_RGBA8:
        case FCN_PIXEL_BGRA8: return 4;
        case FCN_PIXEL_GRAY8: return 1;
        default: return 0;
    }
}

static int fcn_check_image(const fcn_image* image, int index) {
    if (image->data == NULL) return fcn_fail(FCN_E_INVALID_ARG, "images[%d].data is NULL", index);
    if (image->width < 1 || image->height < 1)
        return fcn_fail(FCN_E_INVALID_ARG, "images[%d] has size %dx%d: width and height must be positive", index,
                        image->width, image->height);
    int bytes_per_pixel = fcn_bytes_per_pixel((int)image->format);
    if (bytes_per_pixel == 0)
        return fcn_fail(FCN_E_INVALID_ARG,
                        "images[%d].format is %d, not a known fcn_pixel_format (FCN_PIXEL_RGB8 .. FCN_PIXEL_GRAY8)",
                        index, (int)image->format);
    long long row_bytes = (long long)image->width * bytes_per_pixel;
    if ((long long)image->stride_bytes < row_bytes)
        return fcn_fail(FCN_E_INVALID_ARG,
                        "images[%d].stride_bytes is %d, smaller than a row (%d pixels x %d bytes = %lld bytes)", index,
                        image->stride_bytes, image->width, bytes_per_pixel, row_bytes);
    if ((long long)image->width * image->height > INT_MAX)
        return fcn_fail(FCN_E_INVALID_ARG, "images[%d] is too large (%dx%d)", index, image->width, image->height);
    return FCN_OK;
}

void fcn_masks_release(fcn_mask* masks, int count) {
    if (masks == NULL) return;
    for (int i = 0; i < count; ++i) free(masks[i].labels);
    free(masks);
}

/* One zeroed mask per image, the size of the image, for Python to fill. */
static fcn_mask* fcn_allocate_masks(const fcn_image* images, int count) {
    fcn_mask* masks = (fcn_mask*)calloc((size_t)count, sizeof(fcn_mask));
    if (masks == NULL) return NULL;
    for (int i = 0; i < count; ++i) {
        masks[i].width = images[i].width;
        masks[i].height = images[i].height;
        masks[i].labels = (uint8_t*)calloc((size_t)images[i].width * (size_t)images[i].height, 1);
        if (masks[i].labels == NULL) {
            fcn_masks_release(masks, count);
            return NULL;
        }
    }
    return masks;
}

int fcn_segmenter_apply(fcn_segmenter* segmenter, const fcn_image* images, int count, fcn_mask** masks) {
    fcn_clear_error();
    if (masks == NULL)
        return fcn_fail(FCN_E_INVALID_ARG, "masks is NULL: pass the address of an fcn_mask* to receive the results");
    *masks = NULL;
    if (segmenter == NULL) return fcn_fail(FCN_E_INVALID_ARG, "segmenter is NULL: create one with fcn_segmenter_create");
    if (segmenter->key < 0) return fcn_fail(FCN_E_INVALID_ARG, "segmenter is not an open handle");
    if (images == NULL) return fcn_fail(FCN_E_INVALID_ARG, "images is NULL");
    if (count < 1) return fcn_fail(FCN_E_INVALID_ARG, "count is %d: pass at least one image", count);
    for (int i = 0; i < count; ++i) {
        int status = fcn_check_image(&images[i], i);
        if (status != FCN_OK) return status;
    }
    fcn_mask* result = fcn_allocate_masks(images, count);
    if (result == NULL) return fcn_fail(FCN_E_OUT_OF_MEMORY, "out of memory allocating %d masks", count);
    fcn_host_signal_state host_signals;
    fcn_save_host_signals(&host_signals);
    int status = fcn_start_python();
    if (status == FCN_OK) status = _fcn_py_apply(segmenter->key, images, count, result);
    fcn_restore_host_signals(&host_signals);
    if (status != FCN_OK) {
        fcn_masks_release(result, count);
        if (fcn_error_message[0] == '\0') fcn_fail(status, "segmentation failed");
        return status;
    }
    *masks = result;
    return FCN_OK;
}

int fcn_segmenter_num_classes(const fcn_segmenter* segmenter, int* num_classes) {
    fcn_clear_error();
    if (segmenter == NULL) return fcn_fail(FCN_E_INVALID_ARG, "segmenter is NULL");
    if (num_classes == NULL) return fcn_fail(FCN_E_INVALID_ARG, "num_classes is NULL");
    *num_classes = segmenter->num_classes;
    return FCN_OK;
}

const char* fcn_segmenter_class_name(const fcn_segmenter* segmenter, int index) {
    fcn_clear_error();
    if (segmenter == NULL) {
        fcn_fail(FCN_E_INVALID_ARG, "segmenter is NULL");
        return NULL;
    }
    if (index < 0 || index >= segmenter->num_classes) {
        fcn_fail(FCN_E_INVALID_ARG, "class index %d is outside 0 .. %d", index, segmenter->num_classes - 1);
        return NULL;
    }
    return segmenter->class_names[index];
}

int fcn_segmenter_palette(const fcn_segmenter* segmenter, const uint8_t** rgb, int* count) {
    fcn_clear_error();
    if (segmenter == NULL) return fcn_fail(FCN_E_INVALID_ARG, "segmenter is NULL");
    if (rgb == NULL) return fcn_fail(FCN_E_INVALID_ARG, "rgb is NULL");
    *rgb = segmenter->palette;
    if (count != NULL) *count = segmenter->num_classes;
    return FCN_OK;
}

void fcn_segmenter_destroy(fcn_segmenter* segmenter) {
    fcn_clear_error();
    if (segmenter == NULL) return;
    if (segmenter->key >= 0) {
        fcn_host_signal_state host_signals;
        fcn_save_host_signals(&host_signals);
        if (fcn_start_python() == FCN_OK) _fcn_py_destroy(segmenter->key);
        fcn_restore_host_signals(&host_signals);
    }
    fcn_free_handle(segmenter);
}
