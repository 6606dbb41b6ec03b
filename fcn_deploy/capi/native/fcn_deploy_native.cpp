// The C ABI of the native libfcn_deploy.so (fcn_deploy.h) over the C++ segmenter. Handles own their C++ objects;
// every exception is caught here and becomes a status plus a per-thread message (std::bad_alloc:
// FCN_E_OUT_OF_MEMORY), so nothing propagates into the C host. The argument checks and their messages are those
// of the embedded library (fcn_deploy_capi.c), so a host sees the same behaviour from either.
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "cache_dir.hpp"
#include "errors.hpp"
#include "fcn_deploy.h"
#include "preprocess.hpp"
#include "segmenter.hpp"

#ifndef FCN_DEPLOY_VERSION
#error "the build defines FCN_DEPLOY_VERSION (the fcn-deploy version the library is built from)"
#endif

struct fcn_segmenter {
    std::unique_ptr<fcn::Segmenter> segmenter;
    std::vector<std::string> class_names;
    std::vector<std::uint8_t> palette;  // num_classes * 3 bytes
};

namespace {

// --- per-thread error message --------------------------------------------------------------------------------

thread_local char error_message[4096];

void clear_error() { error_message[0] = '\0'; }

// Store a formatted message for the calling thread and return status (for `return fail(...)`).
int fail(int status, const char* format, ...) __attribute__((format(printf, 2, 3)));
int fail(int status, const char* format, ...) {
    va_list args;
    va_start(args, format);
    std::vsnprintf(error_message, sizeof error_message, format, args);
    va_end(args);
    return status;
}

// Run body; return FCN_OK, or the status of the exception it threw with its message stored for the caller.
template <typename Body>
int guarded(const char* what, Body&& body) noexcept {
    try {
        body();
        return FCN_OK;
    } catch (const fcn::Error& exc) {
        return fail(exc.status(), "%s", exc.what());
    } catch (const std::bad_alloc&) {
        return fail(FCN_E_OUT_OF_MEMORY, "out of memory %s", what);
    } catch (const std::exception& exc) {
        return fail(FCN_E_INTERNAL, "%s failed: %s", what, exc.what());
    } catch (...) {
        return fail(FCN_E_INTERNAL, "%s failed with an unknown exception", what);
    }
}

// The device string's OpenVINO precision; throws for a device the native library refuses.
std::string precision_of(const std::string& device) {
    if (device == "auto" || device == "cpu" || device == "openvino" || device == "openvino:f32") return "f32";
    if (device == "openvino:bf16") return "bf16";
    throw fcn::missing_component(
        "device 'cuda' is not available in the native library: it runs OpenVINO on the CPU",
        "use \"cpu\" (or \"auto\"), or build the embedded library ('fcn-deploy capi build --runtime embedded') to "
        "run on CUDA with ONNX Runtime or TensorRT");
}

bool known_device(const char* device) {
    static const char* const known[] = {"auto", "cpu", "cuda", "openvino", "openvino:f32", "openvino:bf16"};
    for (const char* name : known)
        if (std::strcmp(device, name) == 0) return true;
    return false;
}

int check_image(const fcn_image& image, int index) {
    if (image.data == nullptr) return fail(FCN_E_INVALID_ARG, "images[%d].data is NULL", index);
    if (image.width < 1 || image.height < 1)
        return fail(FCN_E_INVALID_ARG, "images[%d] has size %dx%d: width and height must be positive", index,
                    image.width, image.height);
    const int pixel_bytes = fcn::bytes_per_pixel(fcn::format_code(image));
    if (pixel_bytes == 0)
        return fail(FCN_E_INVALID_ARG,
                    "images[%d].format is %d, not a known fcn_pixel_format (FCN_PIXEL_RGB8 .. FCN_PIXEL_GRAY8)", index,
                    fcn::format_code(image));
    const long long row_bytes = static_cast<long long>(image.width) * pixel_bytes;
    if (static_cast<long long>(image.stride_bytes) < row_bytes)
        return fail(FCN_E_INVALID_ARG,
                    "images[%d].stride_bytes is %d, smaller than a row (%d pixels x %d bytes = %lld bytes)", index,
                    image.stride_bytes, image.width, pixel_bytes, row_bytes);
    if (static_cast<long long>(image.width) * image.height > INT_MAX)
        return fail(FCN_E_INVALID_ARG, "images[%d] is too large (%dx%d)", index, image.width, image.height);
    return FCN_OK;
}

// Masks as the C caller receives them: calloc'ed, released with fcn_masks_release (free).
struct MaskArrayDeleter {
    int count;
    void operator()(fcn_mask* masks) const { fcn_masks_release(masks, count); }
};
using MaskArray = std::unique_ptr<fcn_mask, MaskArrayDeleter>;

MaskArray allocate_masks(const fcn_image* images, int count) {
    MaskArray masks(static_cast<fcn_mask*>(std::calloc(static_cast<std::size_t>(count), sizeof(fcn_mask))),
                    MaskArrayDeleter{count});
    if (!masks) throw std::bad_alloc();
    for (int i = 0; i < count; ++i) {
        fcn_mask& mask = masks.get()[i];
        mask.width = images[i].width;
        mask.height = images[i].height;
        mask.labels = static_cast<std::uint8_t*>(
            std::malloc(static_cast<std::size_t>(images[i].width) * static_cast<std::size_t>(images[i].height)));
        if (mask.labels == nullptr) throw std::bad_alloc();
    }
    return masks;
}

}  // namespace

extern "C" {

FCN_API const char* fcn_version(void) { return FCN_DEPLOY_VERSION; }

FCN_API const char* fcn_last_error(void) { return error_message; }

FCN_API const char* fcn_status_name(int status) {
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

FCN_API int fcn_segmenter_create(const char* model_path, const char* device, fcn_segmenter** out) {
    clear_error();
    if (out == nullptr)
        return fail(FCN_E_INVALID_ARG, "out is NULL: pass the address of an fcn_segmenter* to receive the handle");
    *out = nullptr;
    if (model_path == nullptr || model_path[0] == '\0')
        return fail(FCN_E_INVALID_ARG, "model_path is NULL or empty: pass the path of an .onnx file");
    if (device == nullptr) device = "auto";
    if (!known_device(device))
        return fail(FCN_E_INVALID_ARG,
                    "unknown device '%s': use \"auto\", \"cpu\", \"cuda\", \"openvino\", \"openvino:f32\" or "
                    "\"openvino:bf16\"",
                    device);
    struct stat info {};
    if (stat(model_path, &info) != 0)
        return fail(FCN_E_NOT_FOUND, "model file not found: %s (%s)", model_path, std::strerror(errno));
    return guarded("opening the model", [&] {
        auto handle = std::make_unique<fcn_segmenter>();
        fcn::RuntimeOptions options;
        options.precision = precision_of(device);
        options.cache_dir = fcn::compiled_model_cache_dir();
        handle->segmenter = std::make_unique<fcn::Segmenter>(std::make_unique<fcn::Runtime>(model_path, options));
        const fcn::ModelSpec& spec = handle->segmenter->spec();
        handle->class_names = spec.class_names;
        for (const auto& color : spec.palette) handle->palette.insert(handle->palette.end(), color.begin(), color.end());
        *out = handle.release();  // from here the caller owns it (fcn_segmenter_destroy)
    });
}

FCN_API int fcn_segmenter_apply(fcn_segmenter* segmenter, const fcn_image* images, int count, fcn_mask** masks) {
    clear_error();
    if (masks == nullptr)
        return fail(FCN_E_INVALID_ARG, "masks is NULL: pass the address of an fcn_mask* to receive the results");
    *masks = nullptr;
    if (segmenter == nullptr) return fail(FCN_E_INVALID_ARG, "segmenter is NULL: create one with fcn_segmenter_create");
    if (!segmenter->segmenter) return fail(FCN_E_INVALID_ARG, "segmenter is not an open handle");
    if (images == nullptr) return fail(FCN_E_INVALID_ARG, "images is NULL");
    if (count < 1) return fail(FCN_E_INVALID_ARG, "count is %d: pass at least one image", count);
    for (int i = 0; i < count; ++i) {
        const int status = check_image(images[i], i);
        if (status != FCN_OK) return status;
    }
    return guarded("segmenting", [&] {
        MaskArray result = allocate_masks(images, count);
        for (int i = 0; i < count; ++i) segmenter->segmenter->segment(images[i], result.get()[i].labels);
        *masks = result.release();
    });
}

FCN_API void fcn_masks_release(fcn_mask* masks, int count) {
    if (masks == nullptr) return;
    for (int i = 0; i < count; ++i) std::free(masks[i].labels);
    std::free(masks);
}

FCN_API int fcn_segmenter_num_classes(const fcn_segmenter* segmenter, int* num_classes) {
    clear_error();
    if (segmenter == nullptr) return fail(FCN_E_INVALID_ARG, "segmenter is NULL");
    if (num_classes == nullptr) return fail(FCN_E_INVALID_ARG, "num_classes is NULL");
    *num_classes = static_cast<int>(segmenter->class_names.size());
    return FCN_OK;
}

FCN_API const char* fcn_segmenter_class_name(const fcn_segmenter* segmenter, int index) {
    clear_error();
    if (segmenter == nullptr) {
        fail(FCN_E_INVALID_ARG, "segmenter is NULL");
        return nullptr;
    }
    const int classes = static_cast<int>(segmenter->class_names.size());
    if (index < 0 || index >= classes) {
        fail(FCN_E_INVALID_ARG, "class index %d is outside 0 .. %d", index, classes - 1);
        return nullptr;
    }
    return segmenter->class_names[static_cast<std::size_t>(index)].c_str();
}

FCN_API int fcn_segmenter_palette(const fcn_segmenter* segmenter, const uint8_t** rgb, int* count) {
    clear_error();
    if (segmenter == nullptr) return fail(FCN_E_INVALID_ARG, "segmenter is NULL");
    if (rgb == nullptr) return fail(FCN_E_INVALID_ARG, "rgb is NULL");
    *rgb = segmenter->palette.data();
    if (count != nullptr) *count = static_cast<int>(segmenter->class_names.size());
    return FCN_OK;
}

FCN_API void fcn_segmenter_destroy(fcn_segmenter* segmenter) {
    clear_error();
    std::unique_ptr<fcn_segmenter> owned(segmenter);  // frees the runtime, its requests and the metadata
}

}  // extern "C"
