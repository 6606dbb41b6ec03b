// Pixel gathering, reflect padding and normalisation; plain float32 arithmetic in numpy's order (the build
// turns off floating-point contraction, so x * scale + offset is two roundings, as in numpy).
#include "preprocess.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace fcn {

int bytes_per_pixel(int format) {
    switch (format) {
        case FCN_PIXEL_RGB8:
        case FCN_PIXEL_BGR8: return 3;
        case FCN_PIXEL_RGBA8:
        case FCN_PIXEL_BGRA8: return 4;
        case FCN_PIXEL_GRAY8: return 1;
        default: return 0;
    }
}

int format_code(const fcn_image& image) {
    static_assert(sizeof(image.format) == sizeof(int), "fcn_pixel_format is stored as an int");
    int code = 0;
    std::memcpy(&code, &image.format, sizeof code);
    return code;
}

PixelView::PixelView(const fcn_image& image)
    : data(image.data), width(image.width), height(image.height), stride(image.stride_bytes),
      pixel_bytes(bytes_per_pixel(format_code(image))) {
    switch (format_code(image)) {
        case FCN_PIXEL_BGR8:
        case FCN_PIXEL_BGRA8: rgb_offsets = {2, 1, 0}; break;
        case FCN_PIXEL_GRAY8: rgb_offsets = {0, 0, 0}; break;
        default: rgb_offsets = {0, 1, 2}; break;
    }
}

int reflect_index(int index, int length) {
    if (length <= 1) return 0;
    const int period = 2 * (length - 1);
    int folded = index % period;
    if (folded < 0) folded += period;
    return folded < length ? folded : period - folded;
}

Normalizer::Normalizer(const ModelSpec& spec) {
    for (std::size_t c = 0; c < 3; ++c) {
        scale[c] = static_cast<float>(1.0 / (255.0 * spec.std[c]));
        offset[c] = static_cast<float>(-spec.mean[c] / spec.std[c]);
    }
}

namespace {

// Source rows (or columns) of a region: extract_tile crops image[start : start + size] and reflect-pads the crop.
std::vector<int> source_indices(int start, int size, int image_length) {
    const int cropped = std::min(size, image_length - start);
    std::vector<int> indices(static_cast<std::size_t>(size));
    for (int i = 0; i < size; ++i) indices[static_cast<std::size_t>(i)] = start + reflect_index(i, cropped);
    return indices;
}

}  // namespace

void write_float_planes(const PixelView& image, int y, int x, HW tile, const Normalizer& norm, float* dst) {
    const std::vector<int> rows = source_indices(y, tile.height, image.height);
    const std::vector<int> cols = source_indices(x, tile.width, image.width);
    const std::size_t plane = static_cast<std::size_t>(tile.height) * static_cast<std::size_t>(tile.width);
    for (int r = 0; r < tile.height; ++r) {
        const std::uint8_t* row = image.data + rows[static_cast<std::size_t>(r)] * image.stride;
        const std::size_t out = static_cast<std::size_t>(r) * static_cast<std::size_t>(tile.width);
        for (int c = 0; c < 3; ++c) {
            const float scale = norm.scale[static_cast<std::size_t>(c)];
            const float offset = norm.offset[static_cast<std::size_t>(c)];
            const int channel = image.rgb_offsets[static_cast<std::size_t>(c)];
            float* target = dst + static_cast<std::size_t>(c) * plane + out;
            for (int k = 0; k < tile.width; ++k) {
                const std::uint8_t value = row[static_cast<long long>(cols[static_cast<std::size_t>(k)]) *
                                               image.pixel_bytes + channel];
                float scaled = static_cast<float>(value) * scale;
                target[k] = scaled + offset;
            }
        }
    }
}

void write_rgb_bytes(const PixelView& image, int y, int x, HW tile, std::uint8_t* dst) {
    const std::vector<int> rows = source_indices(y, tile.height, image.height);
    const std::vector<int> cols = source_indices(x, tile.width, image.width);
    for (int r = 0; r < tile.height; ++r) {
        const std::uint8_t* row = image.data + rows[static_cast<std::size_t>(r)] * image.stride;
        std::uint8_t* out = dst + static_cast<std::size_t>(r) * static_cast<std::size_t>(tile.width) * 3;
        for (int k = 0; k < tile.width; ++k) {
            const std::uint8_t* pixel = row + static_cast<long long>(cols[static_cast<std::size_t>(k)]) * image.pixel_bytes;
            out[3 * k] = pixel[image.rgb_offsets[0]];
            out[3 * k + 1] = pixel[image.rgb_offsets[1]];
            out[3 * k + 2] = pixel[image.rgb_offsets[2]];
        }
    }
}

}  // namespace fcn
