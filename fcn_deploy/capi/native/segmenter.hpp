// Full-image segmentation (mirrors fcn_deploy/segmenter.py with its default configuration): one whole-image pass
// when the padded image fits the model's size range, default tiles with hann blending otherwise.
//
// Memory bound of one call (as tiling.py states it for Python): beyond the caller's image (read in place, never
// copied) and the labels it receives (1 byte a pixel), a tiled call holds only
//   - the stitcher's open sums: classes x seam rows x canvas width floats (the rows the next tile row shares, the
//     one term that grows with the image, with its width alone) plus classes x tile height x shared columns;
//   - one batch of tiles in the model's input layout and its logits (classes x tile pixels floats a tile, in the
//     infer request's output tensor, weighted and summed in place);
//   - OpenVINO's working memory for one batch of tiles, in the one engine (compiled model + request) the call
//     borrows: a host calling from one thread keeps reusing one engine, from several threads holds at most
//     kParallelCalls of them.
// A whole-image call holds the padded input, its logits and the same working memory, bounded by the model's
// largest whole-image size. For 8192 x 8192 RGB with a 1024-pixel-tile model of 21 classes: 192 MiB image,
// 64 MiB labels, 84 MiB seam sums, 12 MiB tile input, 84 MiB tile logits, plus the model and OpenVINO's working
// memory for one 1024 x 1024 tile.
#pragma once

#include <cstdint>
#include <memory>

#include "fcn_deploy.h"
#include "runtime.hpp"
#include "tile_plan.hpp"

namespace fcn {

class Segmenter {
public:
    explicit Segmenter(std::unique_ptr<Runtime> runtime);

    const ModelSpec& spec() const { return runtime_->spec(); }

    // Labels of one checked image into ``labels`` (height x width bytes). Safe to call from several threads.
    void segment(const fcn_image& image, std::uint8_t* labels) const;

    // The tile layout slide mode uses for an image of ``image``.
    TilePlan plan(HW image) const { return default_plan(image, limits_); }

private:
    void segment_whole(const fcn_image& image, HW padded, std::uint8_t* labels) const;
    void segment_tiled(const fcn_image& image, std::uint8_t* labels) const;

    std::unique_ptr<Runtime> runtime_;
    PlanLimits limits_;
};

}  // namespace fcn
