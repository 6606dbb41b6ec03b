// Whole-versus-tiled decision, model input batches and output checks.
#include "segmenter.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "errors.hpp"
#include "preprocess.hpp"
#include "stitching.hpp"

namespace fcn {
namespace {

constexpr const char* kGraphHint = "re-export the model; its graph does not match its spec";

PlanLimits limits_of(const ModelSpec& spec) {
    const ShapeRange& range = spec.shape_range;
    PlanLimits limits;
    limits.alignment = spec.alignment;
    limits.min_batch = range.min[0];
    limits.max_batch = range.max[0];
    limits.smallest = {range.min[1], range.min[2]};
    limits.largest = {range.max[1], range.max[2]};
    return limits;
}

std::string shape_text(const ov::Shape& shape) {
    std::ostringstream text;
    text << shape;
    return text.str();
}

void check_output(const char* name, const ov::Shape& shape, const ov::Shape& expected) {
    if (shape != expected)
        throw artifact_error(std::string("the model returned ") + name + " of shape " + shape_text(shape) +
                                 ", expected " + shape_text(expected),
                             kGraphHint);
}

// A batch of regions of one image in the model's input layout; regions past ``count`` repeat the last one
// (the model's minimum batch, as Segmenter._min_batch pads).
class InputBatch {
public:
    InputBatch(const Runtime& runtime, const PixelView& image, HW tile, std::size_t slots)
        : runtime_(runtime), image_(image), tile_(tile), norm_(runtime.spec()),
          tensor_(runtime.input_type(), shape(runtime.spec(), tile, slots)) {}

    // Fill slot ``slot`` with the region at (y, x).
    void fill(std::size_t slot, int y, int x) {
        const std::size_t pixels = static_cast<std::size_t>(tile_.height) * static_cast<std::size_t>(tile_.width);
        const auto type = runtime_.input_type();
        if (type == ov::element::u8) {
            write_rgb_bytes(image_, y, x, tile_, tensor_.data<std::uint8_t>() + slot * pixels * 3);
        } else if (type == ov::element::f32) {
            write_float_planes(image_, y, x, tile_, norm_, tensor_.data<float>() + slot * pixels * 3);
        } else {  // f16 inputs of FP16 exports: float32 values rounded to half, as numpy's astype does
            scratch_.resize(pixels * 3);
            write_float_planes(image_, y, x, tile_, norm_, scratch_.data());
            ov::float16* target = tensor_.data<ov::float16>() + slot * pixels * 3;
            for (std::size_t i = 0; i < scratch_.size(); ++i) target[i] = ov::float16(scratch_[i]);
        }
    }

    // Copy slot ``from`` into every slot from ``first`` on.
    void repeat(std::size_t from, std::size_t first) {
        const std::size_t bytes = tensor_.get_byte_size() / tensor_.get_shape()[0];
        auto* base = static_cast<std::uint8_t*>(tensor_.data());
        for (std::size_t slot = first; slot < tensor_.get_shape()[0]; ++slot)
            std::copy(base + from * bytes, base + (from + 1) * bytes, base + slot * bytes);
    }

    ov::Tensor& tensor() { return tensor_; }

private:
    static ov::Shape shape(const ModelSpec& spec, HW tile, std::size_t slots) {
        const auto h = static_cast<std::size_t>(tile.height), w = static_cast<std::size_t>(tile.width);
        return spec.takes_uint8() ? ov::Shape{slots, h, w, 3} : ov::Shape{slots, 3, h, w};
    }

    const Runtime& runtime_;
    const PixelView& image_;
    HW tile_;
    Normalizer norm_;
    ov::Tensor tensor_;
    std::vector<float> scratch_;
};

// The logits of one inference as float32 (copied only where the model returns float16).
float* float_logits(ov::Tensor& tensor, std::vector<float>& converted) {
    if (tensor.get_element_type() == ov::element::f32) return tensor.data<float>();
    const ov::float16* half = tensor.data<ov::float16>();
    converted.resize(tensor.get_size());
    for (std::size_t i = 0; i < converted.size(); ++i) converted[i] = static_cast<float>(half[i]);
    return converted.data();
}

}  // namespace

Segmenter::Segmenter(std::unique_ptr<Runtime> runtime) : runtime_(std::move(runtime)), limits_(limits_of(spec())) {}

void Segmenter::segment(const fcn_image& image, std::uint8_t* labels) const {
    const HW size{image.height, image.width};
    const HW padded = whole_size(size, limits_.alignment, limits_.smallest);
    if (spec().shape_range.contains_hw(padded.height, padded.width)) segment_whole(image, padded, labels);
    else segment_tiled(image, labels);
}

void Segmenter::segment_whole(const fcn_image& image, HW padded, std::uint8_t* labels) const {
    const PixelView view(image);
    const std::size_t slots = static_cast<std::size_t>(std::max(1, limits_.min_batch));
    InputBatch batch(*runtime_, view, padded, slots);
    batch.fill(0, 0, 0);
    batch.repeat(0, 1);
    RequestLease lease(runtime_->pool());
    ov::InferRequest& request = lease.request();
    request.set_input_tensor(batch.tensor());
    request.infer();
    const auto ph = static_cast<std::size_t>(padded.height), pw = static_cast<std::size_t>(padded.width);
    const auto width = static_cast<std::size_t>(image.width);
    if (runtime_->has_labels()) {  // the argmax ran in the graph: no logits copied out
        const ov::Tensor out = request.get_output_tensor(runtime_->labels_index());
        check_output("labels", out.get_shape(), ov::Shape{slots, ph, pw});
        for (int r = 0; r < image.height; ++r) {
            const std::size_t row = static_cast<std::size_t>(r) * pw;
            std::uint8_t* target = labels + static_cast<std::size_t>(r) * width;
            if (out.get_element_type() == ov::element::u8) {
                const std::uint8_t* source = out.data<std::uint8_t>() + row;
                std::copy(source, source + width, target);
            } else {
                const std::int64_t* source = out.data<std::int64_t>() + row;
                for (std::size_t k = 0; k < width; ++k) target[k] = static_cast<std::uint8_t>(source[k]);
            }
        }
        return;
    }
    ov::Tensor out = request.get_output_tensor(runtime_->logits_index());
    const auto classes = static_cast<std::size_t>(spec().num_classes);
    check_output("logits", out.get_shape(), ov::Shape{slots, classes, ph, pw});
    std::vector<float> converted;
    const float* logits = float_logits(out, converted);
    argmax_classes({logits, ph * pw, pw, spec().num_classes, image.height, image.width}, labels, width);
}

void Segmenter::segment_tiled(const fcn_image& image, std::uint8_t* labels) const {
    TilePlan tiles;
    try {
        tiles = plan({image.height, image.width});
    } catch (const std::invalid_argument& exc) {
        throw artifact_error(std::string("no tile plan for this model's size range: ") + exc.what(), kGraphHint);
    }
    if (!tiles.neighbours_only())
        throw Error(FCN_E_INTERNAL, "the default tiles of this model overlap beyond their neighbours, which the native "
                                    "library does not stitch",
                    "use the embedded library ('fcn-deploy capi build --runtime embedded') for this model");
    const PixelView view(image);
    LabelStitcher stitcher(tiles, spec().num_classes, labels);
    const std::size_t count = tiles.count(), columns = tiles.xs.size();
    const auto per_call = static_cast<std::size_t>(tiles.batch);
    const auto th = static_cast<std::size_t>(tiles.tile.height), tw = static_cast<std::size_t>(tiles.tile.width);
    const auto classes = static_cast<std::size_t>(spec().num_classes);
    RequestLease lease(runtime_->pool());
    ov::InferRequest& request = lease.request();
    std::vector<float> converted;
    for (std::size_t first = 0; first < count; first += per_call) {
        const std::size_t n = std::min(per_call, count - first);
        const std::size_t slots = std::max(n, static_cast<std::size_t>(limits_.min_batch));
        {
            InputBatch batch(*runtime_, view, tiles.tile, slots);
            for (std::size_t i = 0; i < n; ++i) {
                const std::size_t index = first + i;
                batch.fill(i, tiles.ys[index / columns], tiles.xs[index % columns]);
            }
            batch.repeat(n - 1, n);
            request.set_input_tensor(batch.tensor());
            request.infer();
        }
        ov::Tensor out = request.get_output_tensor(runtime_->logits_index());
        check_output("logits", out.get_shape(), ov::Shape{slots, classes, th, tw});
        float* logits = float_logits(out, converted);
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t index = first + i;
            stitcher.add(index / columns, index % columns, logits + i * classes * th * tw);
        }
    }
}

}  // namespace fcn
