// Turning tile logits into labels (mirrors fcn_deploy/tiling.py: blend_window, argmax_classes, LabelStitcher).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tile_plan.hpp"

namespace fcn {

// Scores of C classes over a block: class c, row r, column k at data[c * class_stride + r * row_stride + k].
struct ScoreBlock {
    const float* data;
    std::size_t class_stride, row_stride;
    int classes, rows, cols;
};

// Per-pixel index of the largest score into out (row stride out_stride); the first class wins on ties and a NaN
// stops later classes from winning, as numpy's greater / maximum do in argmax_classes.
void argmax_classes(const ScoreBlock& scores, std::uint8_t* out, std::size_t out_stride);

// Per-pixel "hann" tile weights (float32, height x width, every entry > 0), computed in float64 as Python does.
std::vector<float> hann_window(HW tile);

// Blends tiles added in row-major order and writes each block into the labels as soon as no later tile touches
// it, holding only the open overlaps (LabelStitcher; needs plan.neighbours_only()). Per pixel the sum is the
// window-weighted logits of its tiles added in row-major tile order, exactly as in Python.
class LabelStitcher {
public:
    LabelStitcher(const TilePlan& plan, int num_classes, std::uint8_t* labels);

    // Add the tile at (ys[row], xs[column]) with its C x h x w logits (overwritten), the next in row-major order.
    void add(std::size_t row, std::size_t column, float* logits);

private:
    const TilePlan& plan_;
    int classes_;
    std::uint8_t* labels_;
    std::vector<float> window_;
    std::vector<float> strip_;  // C x seam rows x canvas width: the previous tile row's share of this row
    std::vector<float> carry_;  // C x tile height x shared columns: the previous tile's share of this tile
    std::size_t strip_rows_, canvas_width_;
};

}  // namespace fcn
