// Full-image segmentation (mirrors fcn_deploy/segmenter.py with its default configuration): one whole-image pass
// when the padded image fits the model's size range, default tiles with hann blending otherwise.
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
