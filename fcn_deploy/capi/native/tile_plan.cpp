// Tile plans, line for line the arithmetic of fcn_deploy/tiling.py and Segmenter.plan.
#include "tile_plan.hpp"

#include <algorithm>
#include <stdexcept>

namespace fcn {
namespace {

// Python's a // b (rounds towards minus infinity, unlike C++'s division).
long long floor_div(long long a, long long b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Python's -(-a // b): the ceiling of a / b.
long long ceil_div(long long a, long long b) { return -floor_div(-a, b); }

// Overlap in pixels on a tile side: the model's context capped at half the side, on the grid (_overlap_px).
int default_overlap(int side, int alignment) {
    int half = side / 2 / alignment * alignment;
    return std::min(kContextCells * alignment, half);
}

// The default batch capped so one call holds no more pixels than the largest whole-image pass.
int pixel_capped_batch(int batch, HW tile, const PlanLimits& limits) {
    long long largest = static_cast<long long>(limits.largest.height) * limits.largest.width;
    long long fits = largest / (static_cast<long long>(tile.height) * tile.width);
    return static_cast<int>(std::max<long long>(limits.min_batch, std::min<long long>(batch, fits)));
}

}  // namespace

int align_up(int value, int alignment) { return static_cast<int>(ceil_div(value, alignment) * alignment); }

int TilePlan::seam_rows() const {
    int rows = 0;
    for (std::size_t i = 0; i + 1 < ys.size(); ++i) rows = std::max(rows, ys[i] + tile.height - ys[i + 1]);
    return rows;
}

bool TilePlan::neighbours_only() const {
    for (std::size_t i = 0; i + 2 < ys.size(); ++i)
        if (ys[i + 2] < ys[i] + tile.height) return false;
    for (std::size_t i = 0; i + 2 < xs.size(); ++i)
        if (xs[i + 2] < xs[i] + tile.width) return false;
    return true;
}

std::vector<int> axis_starts_px(int length, int tile, int overlap_px, int alignment) {
    long long span = std::max(0, align_up(length, alignment) - tile);
    if (span == 0) return {0};
    long long stride = (tile - overlap_px) / alignment;  // tile > overlap >= 0: floor equals Python's //
    if (stride < 1) throw std::invalid_argument("tile overlap steps less than the alignment");
    long long units = ceil_div(span, alignment);
    long long count = ceil_div(units, stride) + 1;
    std::vector<int> starts;
    starts.reserve(static_cast<std::size_t>(count));
    for (long long i = 0; i < count; ++i)
        starts.push_back(static_cast<int>(std::min(span, alignment * (i * units / (count - 1)))));
    return starts;
}

int fitted_tile(int length, int overlap_px, int largest, int smallest, int alignment) {
    int aligned = align_up(length, alignment);
    if (aligned <= largest) return std::max(aligned, smallest);
    if (overlap_px > largest - alignment) throw std::invalid_argument("tile overlap leaves no step");
    long long count = ceil_div(aligned - overlap_px, largest - overlap_px);
    int side = align_up(static_cast<int>(ceil_div(aligned + (count - 1) * overlap_px, count)), alignment);
    return std::min(largest, std::max(smallest, side));
}

HW whole_size(HW image, int alignment, HW smallest) {
    return {align_up(std::max(image.height, smallest.height), alignment),
            align_up(std::max(image.width, smallest.width), alignment)};
}

TilePlan default_plan(HW image, const PlanLimits& limits) {
    const int align = limits.alignment;
    int over_h = default_overlap(limits.largest.height, align);
    int over_w = default_overlap(limits.largest.width, align);
    TilePlan plan;
    plan.image = image;
    plan.tile = {fitted_tile(image.height, over_h, limits.largest.height, limits.smallest.height, align),
                 fitted_tile(image.width, over_w, limits.largest.width, limits.smallest.width, align)};
    over_h = std::min(over_h, plan.tile.height - align);
    over_w = std::min(over_w, plan.tile.width - align);
    if (over_h < 0 || over_w < 0 || plan.tile.height % align || plan.tile.width % align)
        throw std::invalid_argument("the model's size range gives no tile on its alignment grid");
    plan.batch = pixel_capped_batch(std::min(kDefaultBatch, limits.max_batch), plan.tile, limits);
    plan.ys = axis_starts_px(image.height, plan.tile.height, over_h, align);
    plan.xs = axis_starts_px(image.width, plan.tile.width, over_w, align);
    return plan;
}

}  // namespace fcn
