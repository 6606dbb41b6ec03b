// Model inputs from the caller's pixels (mirrors capi/embedded.py's pixel views, tiling.extract_tile / pad_to and
// spec.normalize_images): any fcn_pixel_format and stride, reflect padding of the region to the tile size, then
// the model's layout: normalised N x 3 x H x W float32 (or float16) or raw N x H x W x 3 uint8.
#pragma once

#include <array>
#include <cstdint>

#include "fcn_deploy.h"
#include "spec.hpp"
#include "tile_plan.hpp"

namespace fcn {

// Bytes a pixel of ``format``, or 0 for an unknown format.
int bytes_per_pixel(int format);

// The caller's format field as an integer. A C caller may store any int there; reading it as the C++ enum would
// be undefined behaviour for values outside the enum's range, so its bytes are copied out instead.
int format_code(const fcn_image& image);

// The caller's image as the library reads it: where R, G and B sit inside a pixel.
struct PixelView {
    const std::uint8_t* data = nullptr;
    int width = 0, height = 0;
    long long stride = 0;
    int pixel_bytes = 3;
    std::array<int, 3> rgb_offsets{0, 1, 2};

    explicit PixelView(const fcn_image& image);
};

// numpy's "reflect" padding: the source index of position ``index`` of an axis of ``length`` samples.
int reflect_index(int index, int length);

// Per-channel x * scale + offset in float32, the constants computed in float64 as normalize_images does.
struct Normalizer {
    std::array<float, 3> scale{};
    std::array<float, 3> offset{};

    explicit Normalizer(const ModelSpec& spec);
};

// The region at (y, x) of size ``tile`` (reflect-padded where it reaches past the image, as extract_tile
// pads the cropped region) written as planes of float32: dst holds 3 * tile.height * tile.width values.
void write_float_planes(const PixelView& image, int y, int x, HW tile, const Normalizer& norm, float* dst);

// The same region as uint8 H x W x 3 RGB (models with the normalisation inside the graph).
void write_rgb_bytes(const PixelView& image, int y, int x, HW tile, std::uint8_t* dst);

}  // namespace fcn
