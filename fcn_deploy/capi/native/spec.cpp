// Parsing and validation of the spec JSON (mirrors ModelSpec.from_dict and ModelSpec._validate).
#include "spec.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "errors.hpp"

namespace fcn {
namespace {

using json = nlohmann::json;

constexpr const char* kSpecHint =
    "the file's model spec is missing or damaged: re-run the stage that wrote it (e.g. 'fcn-deploy export')";
constexpr std::array<double, 3> kImagenetMean{0.485, 0.456, 0.406};
constexpr std::array<double, 3> kImagenetStd{0.229, 0.224, 0.225};

// A field of the wrong JSON type, named as Python's _check_json_types names it.
[[noreturn]] void wrong_type(const std::string& source, const std::string& field) {
    throw artifact_error(source + " holds a malformed fcn-deploy model spec (field '" + field +
                             "' has the wrong type)",
                         kSpecHint);
}

bool is_integer(const json& value) { return value.is_number_integer(); }

int int_field(const json& data, const char* name, int fallback, const std::string& source) {
    if (!data.contains(name)) return fallback;
    const json& value = data.at(name);
    if (!is_integer(value)) wrong_type(source, name);
    long long number = value.get<long long>();
    if (number < -1000000000LL || number > 1000000000LL) wrong_type(source, name);
    return static_cast<int>(number);
}

std::string string_field(const json& data, const char* name, const std::string& fallback, const std::string& source) {
    if (!data.contains(name)) return fallback;
    if (!data.at(name).is_string()) wrong_type(source, name);
    return data.at(name).get<std::string>();
}

std::optional<std::string> optional_string(const json& data, const char* name, const std::string& source) {
    if (!data.contains(name) || data.at(name).is_null()) return std::nullopt;
    if (!data.at(name).is_string()) wrong_type(source, name);
    return data.at(name).get<std::string>();
}

std::array<double, 3> triple(const json& data, const char* name, const std::array<double, 3>& fallback,
                             const std::string& source) {
    if (!data.contains(name)) return fallback;
    const json& value = data.at(name);
    if (!value.is_array() || value.size() != 3) wrong_type(source, name);
    std::array<double, 3> out{};
    for (std::size_t i = 0; i < 3; ++i) {
        if (!value[i].is_number()) wrong_type(source, name);
        out[i] = value[i].get<double>();
    }
    return out;
}

Shape3 shape3(const json& range, const char* name, const std::string& source) {
    if (!range.contains(name)) wrong_type(source, "shape_range");
    const json& value = range.at(name);
    if (!value.is_array() || value.size() != 3) wrong_type(source, name);
    Shape3 out{};
    for (std::size_t i = 0; i < 3; ++i) {
        if (!is_integer(value[i])) wrong_type(source, name);
        long long number = value[i].get<long long>();
        if (number < 1 || number > 1000000000LL)
            throw artifact_error(source + ": shape range '" + name + "' must be three positive integers", kSpecHint);
        out[i] = static_cast<int>(number);
    }
    return out;
}

ShapeRange shape_range_field(const json& data, const std::string& source) {
    ShapeRange range;
    if (!data.contains("shape_range")) return range;
    const json& value = data.at("shape_range");
    if (!value.is_object()) wrong_type(source, "shape_range");
    range.min = shape3(value, "min", source);
    range.opt = shape3(value, "opt", source);
    range.max = shape3(value, "max", source);
    for (std::size_t axis = 0; axis < 3; ++axis) {
        if (!(range.min[axis] <= range.opt[axis] && range.opt[axis] <= range.max[axis]))
            throw artifact_error(source + ": shape range is not ordered min <= opt <= max", kSpecHint);
    }
    return range;
}

std::vector<std::string> class_names_field(const json& data, const std::string& source) {
    if (!data.contains("class_names") || !data.at("class_names").is_array()) wrong_type(source, "class_names");
    std::vector<std::string> names;
    for (const json& name : data.at("class_names")) {
        if (!name.is_string()) wrong_type(source, "class_names");
        names.push_back(name.get<std::string>());
    }
    return names;
}

std::vector<std::array<std::uint8_t, 3>> palette_field(const json& data, const std::string& source,
                                                       std::vector<std::string>& problems) {
    if (!data.contains("palette") || !data.at("palette").is_array()) wrong_type(source, "palette");
    std::vector<std::array<std::uint8_t, 3>> palette;
    bool out_of_range = false;
    for (const json& color : data.at("palette")) {
        if (!color.is_array() || color.size() != 3) wrong_type(source, "palette");
        std::array<std::uint8_t, 3> rgb{};
        for (std::size_t c = 0; c < 3; ++c) {
            if (!is_integer(color[c])) wrong_type(source, "palette");
            long long value = color[c].get<long long>();
            out_of_range = out_of_range || value < 0 || value > 255;
            rgb[c] = static_cast<std::uint8_t>(value < 0 ? 0 : value > 255 ? 255 : value);
        }
        palette.push_back(rgb);
    }
    if (out_of_range) problems.push_back("palette colours must be RGB values in 0 .. 255");
    return palette;
}

bool one_of(const std::string& value, std::initializer_list<const char*> allowed) {
    for (const char* candidate : allowed)
        if (value == candidate) return true;
    return false;
}

// The problems ModelSpec._validate reports, in its order.
void validate(const ModelSpec& spec, const json& data, std::vector<std::string>& problems) {
    if (spec.num_classes < 1)
        problems.push_back("num_classes must be positive, got " + std::to_string(spec.num_classes));
    if (static_cast<long long>(spec.class_names.size()) != spec.num_classes)
        problems.push_back(std::to_string(spec.class_names.size()) + " class names for " +
                           std::to_string(spec.num_classes) + " classes");
    if (spec.num_classes >= 1 && static_cast<long long>(spec.palette.size()) < spec.num_classes)
        problems.push_back("palette needs " + std::to_string(spec.num_classes) + " RGB colours, has " +
                           std::to_string(spec.palette.size()));
    bool normal = true;
    for (std::size_t c = 0; c < 3; ++c) {
        // written so that NaN fails, as in Python
        normal = normal && spec.mean[c] >= 0.0 && spec.mean[c] <= 1.0 && spec.std[c] >= kMinStd && spec.std[c] <= 1.0;
    }
    if (!normal)
        problems.push_back("mean and std need three values each, as fractions of 255: mean in 0 .. 1, std in 0.0001 .. 1");
    if (spec.alignment < 1) problems.push_back("alignment must be positive, got " + std::to_string(spec.alignment));
    if (!one_of(spec.input_format, {kInputFloatNchw, kInputUint8Nhwc}))
        problems.push_back("input_format must be float32_nchw or uint8_nhwc, got '" + spec.input_format + "'");
    std::string upsampler = string_field(data, "upsampler", "convtranspose", "spec");
    if (!one_of(upsampler, {"convtranspose", "matmul"}))
        problems.push_back("upsampler must be convtranspose or matmul, got '" + upsampler + "'");
    if (!one_of(spec.precision, {"fp32", "fp16", "int8"}))
        problems.push_back("precision must be fp32, fp16 or int8, got '" + spec.precision + "'");
    if (int_field(data, "format_version", kSpecFormatVersion, "spec") > kSpecFormatVersion)
        problems.push_back("spec format is newer than this fcn-deploy understands");
}

}  // namespace

ModelSpec spec_from_json(const std::string& text, const std::string& source) {
    json data = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (data.is_discarded()) throw artifact_error(source + " is not valid JSON", kSpecHint);
    if (!data.is_object() || !data.contains("arch"))
        throw artifact_error(source + " holds no fcn-deploy model spec", kSpecHint);
    ModelSpec spec;
    std::vector<std::string> problems;
    spec.arch = string_field(data, "arch", "", source);
    spec.num_classes = int_field(data, "num_classes", 21, source);
    spec.class_names = class_names_field(data, source);
    spec.palette = palette_field(data, source, problems);
    spec.mean = triple(data, "mean", kImagenetMean, source);
    spec.std = triple(data, "std", kImagenetStd, source);
    spec.alignment = int_field(data, "alignment", 32, source);
    spec.input_name = string_field(data, "input_name", "image", source);
    spec.output_name = string_field(data, "output_name", "logits", source);
    spec.labels_name = optional_string(data, "labels_name", source);
    spec.input_format = string_field(data, "input_format", kInputFloatNchw, source);
    spec.precision = string_field(data, "precision", "fp32", source);
    spec.shape_range = shape_range_field(data, source);
    validate(spec, data, problems);
    if (!problems.empty()) {
        std::ostringstream joined;
        for (std::size_t i = 0; i < problems.size(); ++i) joined << (i ? "; " : "") << problems[i];
        throw artifact_error(source + ": invalid model spec: " + joined.str(), kSpecHint);
    }
    if (spec.palette.size() > static_cast<std::size_t>(spec.num_classes))
        spec.palette.resize(static_cast<std::size_t>(spec.num_classes));
    return spec;
}

bool same_spec_json(const std::string& metadata_spec, const std::string& sidecar_document) {
    json ours = json::parse(metadata_spec, nullptr, false);
    json document = json::parse(sidecar_document, nullptr, false);
    if (ours.is_discarded() || document.is_discarded() || !document.is_object() || !document.contains("spec"))
        return false;
    return ours == document.at("spec");
}

}  // namespace fcn
