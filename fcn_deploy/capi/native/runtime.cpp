// Reading, checking and compiling the model with OpenVINO's C++ API; the request pool.
#include "runtime.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <sched.h>
#include <sys/stat.h>

#include "errors.hpp"

namespace fcn {
namespace {

constexpr const char* kExportHint = "export the model with 'fcn-deploy export CHECKPOINT'";
constexpr const char* kReexportHint = "the file was modified after export; re-export it with 'fcn-deploy export'";
constexpr const char* kCpuDevice = "CPU";

bool ends_with(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_file(const std::string& path) {
    struct stat info {};
    return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

std::string read_text(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
}

std::shared_ptr<ov::Model> read_model(ov::Core& core, const std::string& path) {
    if (!ends_with(path, ".onnx") && !ends_with(path, ".xml"))
        throw artifact_error(path + " is not a model the native library reads (it reads fcn-deploy ONNX files, .onnx, "
                                    "and OpenVINO IR, .xml)",
                             "pass the exported .onnx file, or build the embedded library ('fcn-deploy capi build "
                             "--runtime embedded') for TensorRT engines and checkpoints");
    try {
        return core.read_model(path);
    } catch (const std::exception& exc) {
        std::string reason = exc.what();
        if (reason.size() > 400) reason = reason.substr(0, 400) + "...";
        throw artifact_error(path + " is not a readable model: OpenVINO cannot read it (" + reason + ")", kExportHint);
    }
}

// The spec JSON OpenVINO keeps from the ONNX metadata.
std::string metadata_spec(const ov::Model& model, const std::string& path) {
    if (!model.has_rt_info("framework", kOnnxMetadataKey) && ends_with(path, ".xml"))
        throw artifact_error(path + " is an OpenVINO IR without the fcn-deploy model contract (no '" +
                                 std::string(kOnnxMetadataKey) + "' under 'framework' in its runtime info)",
                             "build the IR with 'fcn-deploy build --target openvino', which writes the contract "
                             "into it (openvino.save_model of the fcn-deploy ONNX model keeps it too), or pass the "
                             "exported .onnx file");
    if (!model.has_rt_info("framework", kOnnxMetadataKey))
        throw artifact_error(path + " is not an fcn-deploy ONNX model (no '" + std::string(kOnnxMetadataKey) +
                                 "' metadata)",
                             "export it with 'fcn-deploy export CHECKPOINT'; other ONNX models lack the spec "
                             "(classes, normalisation, alignment) it needs");
    return model.get_rt_info<std::string>("framework", kOnnxMetadataKey);
}

void check_sidecar(const std::string& path, const std::string& spec_json) {
    const std::string sidecar = path + ".json";
    if (!is_file(sidecar)) return;
    if (!same_spec_json(spec_json, read_text(sidecar)))
        throw artifact_error(path + " and its sidecar " + sidecar.substr(sidecar.find_last_of('/') + 1) +
                                 " disagree on the model spec",
                             "the sidecar belongs to another export: re-export, or delete the stale sidecar");
}

bool has_name(const ov::Output<const ov::Node>& port, const std::string& name) {
    const auto names = port.get_names();
    return names.count(name) > 0;
}

std::string describe(const ov::Output<const ov::Node>& port) {
    std::ostringstream text;
    text << "'" << port.get_any_name() << "' " << port.get_element_type().get_type_name() << " "
         << port.get_partial_shape();
    return text.str();
}

// The problems check_spec_against_signatures finds, for the inputs and outputs OpenVINO reports.
void check_signatures(const ov::Model& model, const ModelSpec& spec, const std::string& path) {
    std::vector<std::string> problems;
    const auto inputs = model.inputs();
    if (inputs.size() != 1 || !has_name(inputs[0], spec.input_name)) {
        problems.push_back("the spec names one input '" + spec.input_name + "'");
    } else {
        const auto type = inputs[0].get_element_type();
        const auto shape = inputs[0].get_partial_shape();
        const bool type_ok = spec.takes_uint8() ? type == ov::element::u8
                                                : type == ov::element::f32 ||
                                                      (spec.precision == "fp16" && type == ov::element::f16);
        const std::size_t channel_axis = spec.takes_uint8() ? 3 : 1;
        const bool shape_ok = shape.rank().is_static() && shape.rank().get_length() == 4 &&
                              (shape[channel_axis].is_dynamic() || shape[channel_axis].get_length() == 3);
        if (!type_ok || !shape_ok)
            problems.push_back("input " + describe(inputs[0]) + " is not the input_format " + spec.input_format);
    }
    std::optional<ov::Output<const ov::Node>> logits, labels;
    for (const auto& port : model.outputs()) {
        if (has_name(port, spec.output_name)) logits = port;
        else if (spec.labels_name && has_name(port, *spec.labels_name)) labels = port;
    }
    const std::size_t expected = 1 + (spec.labels_name ? 1 : 0);
    if (!logits || (spec.labels_name && !labels) || model.outputs().size() != expected) {
        problems.push_back("the outputs are not the spec's '" + spec.output_name + "'" +
                           (spec.labels_name ? " and '" + *spec.labels_name + "'" : std::string()));
    } else {
        const auto shape = logits->get_partial_shape();
        const auto type = logits->get_element_type();
        if ((type != ov::element::f32 && type != ov::element::f16) || !shape.rank().is_static() ||
            shape.rank().get_length() != 4)
            problems.push_back("output " + describe(*logits) + " is not N x C x H x W float logits");
        else if (shape[1].is_static() && shape[1].get_length() != spec.num_classes)
            problems.push_back("output " + describe(*logits) + " has " + std::to_string(shape[1].get_length()) +
                               " classes, the spec " + std::to_string(spec.num_classes));
        if (labels) {
            const auto label_shape = labels->get_partial_shape();
            const auto label_type = labels->get_element_type();
            if ((label_type != ov::element::u8 && label_type != ov::element::i64) || !label_shape.rank().is_static() ||
                label_shape.rank().get_length() != 3)
                problems.push_back("labels output " + describe(*labels) + " is not N x H x W uint8/int64");
        }
    }
    if (!problems.empty()) {
        std::string joined;
        for (const auto& problem : problems) joined += (joined.empty() ? "" : "; ") + problem;
        throw artifact_error(path + ": the model spec contradicts the graph: " + joined, kReexportHint);
    }
}

std::set<std::string> cpu_flags() {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string key = line.substr(0, colon);
        key.erase(key.find_last_not_of(" \t") + 1);
        if (key != "flags") continue;
        std::istringstream words(line.substr(colon + 1));
        std::set<std::string> flags;
        for (std::string flag; words >> flag;) flags.insert(flag);
        return flags;
    }
    return {};
}

std::size_t output_index(const ov::Model& model, const std::string& name) {
    const auto outputs = model.outputs();
    for (std::size_t index = 0; index < outputs.size(); ++index)
        if (has_name(outputs[index], name)) return index;
    throw artifact_error("the model has no output '" + name + "'", kReexportHint);
}

// CPUs this process may run on (its affinity mask, so taskset and container limits count).
int usable_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// One stream per engine, the CPUs shared out between the engines that may run at once: a lone call uses
// 1/kParallelCalls of them, two calls together use them all instead of competing for the same ones. No CPU
// pinning: each compiled model pins its stream from the first CPU on, so two engines pinned (the LATENCY hint's
// default) would both run on the same CPUs and two calls would take turns instead of overlapping.
ov::AnyMap compile_config(const RuntimeOptions& options) {
    const ov::element::Type precision = options.precision == "bf16" ? ov::element::bf16 : ov::element::f32;
    const int threads = std::max(1, usable_cpus() / static_cast<int>(kParallelCalls));
    ov::AnyMap config{ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY),
                      ov::hint::inference_precision(precision), ov::num_streams(1),
                      ov::inference_num_threads(threads), ov::hint::enable_cpu_pinning(false)};
    if (!options.cache_dir.empty()) config.emplace(ov::cache_dir(options.cache_dir));
    return config;
}

}  // namespace

std::string bf16_unsupported_reason(const std::vector<std::string>& capabilities) {
    if (std::find(capabilities.begin(), capabilities.end(), "BF16") == capabilities.end()) {
        std::string listed;
        for (const auto& capability : capabilities) listed += (listed.empty() ? "" : ", ") + capability;
        return "OpenVINO's CPU plugin does not offer BF16 here (its OPTIMIZATION_CAPABILITIES: " + listed + ")";
    }
    const auto flags = cpu_flags();
    if (!flags.empty() && !flags.count("avx512_bf16") && !flags.count("amx_bf16"))
        return "this CPU has none of the native BF16 instructions (avx512_bf16 or amx_bf16), BF16 would be emulated";
    return "";
}

Engine RequestPool::acquire() {
    std::unique_lock<std::mutex> lock(mutex_);
    returned_.wait(lock, [this] { return !idle_.empty() || created_ < limit_; });
    if (!idle_.empty()) {
        Engine engine = std::move(idle_.back());
        idle_.pop_back();
        return engine;
    }
    ++created_;  // counted before creating, so a failure below gives the slot back
    try {
        lock.unlock();
        return make_();
    } catch (...) {
        lock.lock();
        --created_;
        returned_.notify_one();
        throw;
    }
}

void RequestPool::add(Engine engine) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++created_;
        idle_.push_back(std::move(engine));
    }
    returned_.notify_one();
}

void RequestPool::release(Engine engine) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        idle_.push_back(std::move(engine));
    }
    returned_.notify_one();
}

Runtime::Runtime(const std::string& path, const RuntimeOptions& options) {
    if (options.precision == "bf16") {
        const auto reason = bf16_unsupported_reason(core_.get_property(kCpuDevice, ov::device::capabilities));
        if (!reason.empty())
            throw missing_component("precision 'bf16' refused: " + reason,
                                    "use the device \"openvino:f32\" (or \"cpu\"), or the INT8 model "
                                    "(fcn-deploy calibrate) for speed");
    }
    std::shared_ptr<ov::Model> model = read_model(core_, path);
    opened_spec_json_ = metadata_spec(*model, path);
    path_ = path;
    spec_ = spec_from_json(opened_spec_json_, path + " metadata");
    check_sidecar(path, opened_spec_json_);
    check_signatures(*model, spec_, path);
    if (spec_.num_classes > 256)
        throw artifact_error(std::to_string(spec_.num_classes) + " classes do not fit uint8 labels (at most 256)");
    input_type_ = model->input().get_element_type();
    logits_index_ = output_index(*model, spec_.output_name);
    if (spec_.labels_name) labels_index_ = output_index(*model, *spec_.labels_name);
    compile_config_ = compile_config(options);
    pool_.emplace([this] { return compile(nullptr); }, kParallelCalls);
    pool_->add(compile(std::move(model)));  // the first engine now: compile errors surface here, not in a call
}

Engine Runtime::compile(std::shared_ptr<ov::Model> model) const {
    if (!model) {
        model = read_model(core_, path_);
        if (!model->has_rt_info("framework", kOnnxMetadataKey) ||
            model->get_rt_info<std::string>("framework", kOnnxMetadataKey) != opened_spec_json_)
            throw artifact_error(path_ + " changed after the handle opened it (a second concurrent call reads it "
                                         "again)",
                                 "destroy the handle and create it again to use the new file");
        check_signatures(*model, spec_, path_);
    }
    Engine engine;
    engine.compiled = core_.compile_model(model, kCpuDevice, compile_config_);
    engine.request = engine.compiled.create_infer_request();
    return engine;
}

}  // namespace fcn
