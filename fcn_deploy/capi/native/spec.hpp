// The model contract (mirrors fcn_deploy/spec.py and contract.py): the spec JSON an fcn-deploy export stores in
// its ONNX metadata under "fcn_deploy.spec", parsed with nlohmann/json and validated like ModelSpec.from_json.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fcn {

inline constexpr const char* kOnnxMetadataKey = "fcn_deploy.spec";
inline constexpr const char* kInputFloatNchw = "float32_nchw";
inline constexpr const char* kInputUint8Nhwc = "uint8_nhwc";
inline constexpr int kSpecFormatVersion = 1;
inline constexpr double kMinStd = 1e-4;

using Shape3 = std::array<int, 3>;  // (batch, height, width)

// Supported (batch, height, width) range of an artifact.
struct ShapeRange {
    Shape3 min{1, 32, 32};
    Shape3 opt{1, 320, 480};
    Shape3 max{8, 1024, 1024};

    // True when an image of height x width fits the range at some batch size.
    bool contains_hw(int height, int width) const {
        return min[1] <= height && height <= max[1] && min[2] <= width && width <= max[2];
    }
};

// What the native runtime needs of a ModelSpec.
struct ModelSpec {
    std::string arch;
    int num_classes = 0;
    std::vector<std::string> class_names;
    std::vector<std::array<std::uint8_t, 3>> palette;  // num_classes colours
    std::array<double, 3> mean{};
    std::array<double, 3> std{};
    int alignment = 32;
    std::string input_name = "image";
    std::string output_name = "logits";
    std::optional<std::string> labels_name;
    std::string input_format = kInputFloatNchw;
    std::string precision = "fp32";
    ShapeRange shape_range;

    // True when the model takes raw uint8 N x H x W x 3 RGB (normalisation inside the graph).
    bool takes_uint8() const { return input_format == kInputUint8Nhwc; }
};

// The spec in ``text`` (JSON); artifact_error naming ``source`` for anything malformed or invalid.
ModelSpec spec_from_json(const std::string& text, const std::string& source);

// True when the JSON texts hold equal specs (a sidecar's "spec" object against the metadata's).
bool same_spec_json(const std::string& metadata_spec, const std::string& sidecar_document);

}  // namespace fcn
