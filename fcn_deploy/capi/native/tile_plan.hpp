// Where the tiles of one image go (mirrors fcn_deploy/tiling.py: axis_starts_px, fitted_tile, plan_tiles_px,
// whole_size, neighbours_only, and the default plan of fcn_deploy/segmenter.py: Segmenter.plan). Kept free of
// OpenVINO so that a small test program can print native plans for comparison with Python's.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace fcn {

// Context a default tile overlap gives each side of a seam, in alignment cells (segmenter.CONTEXT_CELLS).
inline constexpr int kContextCells = 3;
// Tiles per model call by default (segmenter.DEFAULT_BATCH).
inline constexpr int kDefaultBatch = 4;

struct HW {
    int height = 0;
    int width = 0;
};

// What a plan needs of the model's spec.
struct PlanLimits {
    int alignment = 32;
    int min_batch = 1, max_batch = 8;
    HW smallest{32, 32};
    HW largest{1024, 1024};
};

struct TilePlan {
    HW image;
    HW tile;
    std::vector<int> ys, xs;
    int batch = 1;

    std::size_t count() const { return ys.size() * xs.size(); }
    // The area the tiles cover: the image grown to where the last tile along each axis ends.
    HW canvas() const { return {ys.back() + tile.height, xs.back() + tile.width}; }
    // Rows of one tile row that the next tile row overlaps.
    int seam_rows() const;
    // True when every tile overlaps only its direct neighbours on both axes.
    bool neighbours_only() const;
};

// ``value`` rounded up to a multiple of ``alignment``.
int align_up(int value, int alignment);

// Tile offsets along one axis of ``length`` (tiling.axis_starts_px).
std::vector<int> axis_starts_px(int length, int tile, int overlap_px, int alignment);

// The default tile side for an axis (tiling.fitted_tile).
int fitted_tile(int length, int overlap_px, int largest, int smallest, int alignment);

// The padded size whole mode runs (tiling.whole_size).
HW whole_size(HW image, int alignment, HW smallest);

// The tile layout slide mode uses by default for an image (Segmenter.plan with no tile or overlap given).
TilePlan default_plan(HW image, const PlanLimits& limits);

}  // namespace fcn
