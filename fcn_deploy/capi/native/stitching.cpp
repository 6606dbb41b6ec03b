// Argmax, blend window and the overlap stitcher; float32 operations in the order numpy performs them.
#include "stitching.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace fcn {
namespace {

constexpr double kWindowFloor = 1e-3;  // tiling._WINDOW_FLOOR
constexpr double kPi = 3.141592653589793;

std::vector<double> hann_1d(int length) {
    std::vector<double> profile(static_cast<std::size_t>(length));
    for (int i = 0; i < length; ++i) {
        const double centre = (static_cast<double>(i) + 0.5) / length;
        const double s = std::sin(kPi * centre);
        profile[static_cast<std::size_t>(i)] = kWindowFloor + (1.0 - kWindowFloor) * (s * s);
    }
    return profile;
}

}  // namespace

void argmax_classes(const ScoreBlock& scores, std::uint8_t* out, std::size_t out_stride) {
    std::vector<float> best(static_cast<std::size_t>(scores.cols));
    for (int r = 0; r < scores.rows; ++r) {
        const float* first = scores.data + static_cast<std::size_t>(r) * scores.row_stride;
        std::uint8_t* labels = out + static_cast<std::size_t>(r) * out_stride;
        for (int k = 0; k < scores.cols; ++k) {
            best[static_cast<std::size_t>(k)] = first[k];
            labels[k] = 0;
        }
        for (int c = 1; c < scores.classes; ++c) {
            const float* plane = first + static_cast<std::size_t>(c) * scores.class_stride;
            for (int k = 0; k < scores.cols; ++k) {
                float& top = best[static_cast<std::size_t>(k)];
                const float value = plane[k];
                if (std::isnan(value)) {
                    top = value;
                } else if (value > top) {
                    top = value;
                    labels[k] = static_cast<std::uint8_t>(c);
                }
            }
        }
    }
}

std::vector<float> hann_window(HW tile) {
    const std::vector<double> ys = hann_1d(tile.height), xs = hann_1d(tile.width);
    std::vector<float> window(static_cast<std::size_t>(tile.height) * static_cast<std::size_t>(tile.width));
    for (std::size_t r = 0; r < ys.size(); ++r)
        for (std::size_t k = 0; k < xs.size(); ++k) window[r * xs.size() + k] = static_cast<float>(ys[r] * xs[k]);
    return window;
}

LabelStitcher::LabelStitcher(const TilePlan& plan, int num_classes, std::uint8_t* labels)
    : plan_(plan), classes_(num_classes), labels_(labels), window_(hann_window(plan.tile)),
      strip_rows_(static_cast<std::size_t>(plan.seam_rows())),
      canvas_width_(static_cast<std::size_t>(plan.canvas().width)) {
    if (!plan.neighbours_only()) throw std::invalid_argument("tiles overlap beyond their neighbours");
    strip_.resize(static_cast<std::size_t>(num_classes) * strip_rows_ * canvas_width_);
}

void LabelStitcher::add(std::size_t row, std::size_t column, float* logits) {
    const int tile_h = plan_.tile.height, tile_w = plan_.tile.width;
    const std::size_t th = static_cast<std::size_t>(tile_h), tw = static_cast<std::size_t>(tile_w);
    const std::size_t plane = th * tw;
    const int y = plan_.ys[row], x = plan_.xs[column];
    const bool last_row = row + 1 == plan_.ys.size(), last_column = column + 1 == plan_.xs.size();
    for (int c = 0; c < classes_; ++c) {  // hann is never uniform: always weighted
        float* values = logits + static_cast<std::size_t>(c) * plane;
        for (std::size_t i = 0; i < plane; ++i) values[i] = values[i] * window_[i];
    }
    const int left = column > 0 ? plan_.xs[column - 1] + tile_w - x : 0;  // columns the previous tile shares
    if (left > 0) {
        const std::size_t shared = static_cast<std::size_t>(left);
        for (int c = 0; c < classes_; ++c)
            for (std::size_t r = 0; r < th; ++r) {
                float* target = logits + static_cast<std::size_t>(c) * plane + r * tw;
                const float* source = carry_.data() + (static_cast<std::size_t>(c) * th + r) * shared;
                for (std::size_t k = 0; k < shared; ++k) target[k] = target[k] + source[k];
            }
    }
    if (row > 0) {  // rows the previous tile row shares; the carried columns already hold them
        const int top = plan_.ys[row - 1] + tile_h - y;
        for (int c = 0; c < classes_ && top > 0; ++c)
            for (int r = 0; r < top; ++r) {
                float* target = logits + static_cast<std::size_t>(c) * plane + static_cast<std::size_t>(r) * tw;
                const float* source = strip_.data() + (static_cast<std::size_t>(c) * strip_rows_ +
                                                       static_cast<std::size_t>(r)) * canvas_width_ +
                                      static_cast<std::size_t>(x);
                for (int k = left; k < tile_w; ++k) target[k] = target[k] + source[k];
            }
    }
    const int stop_y = last_row ? tile_h : plan_.ys[row + 1] - y;  // rows no later tile touches
    const int stop_x = last_column ? tile_w : plan_.xs[column + 1] - x;
    const int rows = std::min(stop_y, plan_.image.height - y), cols = std::min(stop_x, plan_.image.width - x);
    if (rows > 0 && cols > 0) {
        const std::size_t image_w = static_cast<std::size_t>(plan_.image.width);
        argmax_classes({logits, plane, tw, classes_, rows, cols},
                       labels_ + static_cast<std::size_t>(y) * image_w + static_cast<std::size_t>(x), image_w);
    }
    if (!last_column) {
        const std::size_t shared = tw - static_cast<std::size_t>(stop_x);
        carry_.resize(static_cast<std::size_t>(classes_) * th * shared);
        for (int c = 0; c < classes_; ++c)
            for (std::size_t r = 0; r < th; ++r) {
                const float* source = logits + static_cast<std::size_t>(c) * plane + r * tw + stop_x;
                float* target = carry_.data() + (static_cast<std::size_t>(c) * th + r) * shared;
                std::copy(source, source + shared, target);
            }
    }
    if (!last_row && stop_y < tile_h) {
        for (int c = 0; c < classes_; ++c)
            for (int r = stop_y; r < tile_h; ++r) {
                const float* source = logits + static_cast<std::size_t>(c) * plane + static_cast<std::size_t>(r) * tw;
                float* target = strip_.data() + (static_cast<std::size_t>(c) * strip_rows_ +
                                                 static_cast<std::size_t>(r - stop_y)) * canvas_width_ +
                                static_cast<std::size_t>(x);
                std::copy(source, source + stop_x, target);
            }
    }
}

}  // namespace fcn
