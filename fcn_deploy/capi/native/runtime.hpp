// The OpenVINO runtime of the native library (mirrors fcn_deploy/runtime/openvino_backend.py and
// runtime_spec.py): reads an fcn-deploy ONNX file (or OpenVINO IR), takes the spec from the model's runtime info
// ("framework" / "fcn_deploy.spec", where OpenVINO keeps ONNX metadata), checks it against the sidecar and the
// model's inputs and outputs, compiles for the CPU and lends infer requests from a pool so that calls from
// several threads run at the same time.
//
// Concurrency and memory: every concurrent call gets its own compiled model (one CPU stream of
// cores / kParallelCalls threads) and its own infer request. The first is compiled when the model opens; the
// next only when a second call finds the first busy. OpenVINO's CPU plugin keeps working memory per stream for
// the largest input it has run, so a host that calls from one thread holds one tile's working memory, never
// one per stream (one model with two streams let a lone caller's requests run on either stream, which
// allocated both).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <openvino/openvino.hpp>
#include <optional>
#include <string>
#include <vector>

#include "spec.hpp"

namespace fcn {

// Concurrent calls one handle runs at a time (the pool's size): two host threads infer at once; more would
// split the cores further without making one image faster.
inline constexpr std::size_t kParallelCalls = 2;

// How to compile: OpenVINO's inference precision hint ("f32" or "bf16") and the compiled-model cache folder
// (empty: no cache).
struct RuntimeOptions {
    std::string precision = "f32";
    std::string cache_dir;
};

// An infer request with the compiled model it belongs to (each concurrent call has both to itself).
struct Engine {
    ov::CompiledModel compiled;
    ov::InferRequest request;
};

// Engines created on demand up to ``limit`` by ``make`` and handed out one caller at a time, the most recently
// returned first (so a lone caller keeps reusing the same one and its memory).
class RequestPool {
public:
    RequestPool(std::function<Engine()> make, std::size_t limit) : make_(std::move(make)), limit_(limit) {}

    // An idle engine (a new one while fewer than ``limit`` exist; otherwise wait for one to come back).
    Engine acquire();
    void release(Engine engine);
    // Count in and lend out an engine made elsewhere (the first, compiled when the model opens).
    void add(Engine engine);

private:
    std::function<Engine()> make_;
    std::size_t limit_;
    std::size_t created_ = 0;
    std::vector<Engine> idle_;
    std::mutex mutex_;
    std::condition_variable returned_;
};

// An infer request borrowed from the pool for one call; given back when the lease ends.
class RequestLease {
public:
    explicit RequestLease(RequestPool& pool) : pool_(pool), engine_(pool.acquire()) {}
    ~RequestLease() { pool_.release(std::move(engine_)); }
    RequestLease(const RequestLease&) = delete;
    RequestLease& operator=(const RequestLease&) = delete;

    ov::InferRequest& request() { return engine_.request; }

private:
    RequestPool& pool_;
    Engine engine_;
};

class Runtime {
public:
    Runtime(const std::string& path, const RuntimeOptions& options);
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    const ModelSpec& spec() const { return spec_; }
    // True when the model computes labels itself (an export with the argmax in the graph).
    bool has_labels() const { return labels_index_.has_value(); }
    const ov::element::Type& input_type() const { return input_type_; }
    // Output indices of the logits and of the labels (valid where has_labels()).
    std::size_t logits_index() const { return logits_index_; }
    std::size_t labels_index() const { return *labels_index_; }
    RequestPool& pool() { return *pool_; }

private:
    // A new engine: from ``model`` (the first), else from the file read again (see opened_spec_json_).
    Engine compile(std::shared_ptr<ov::Model> model) const;

    ModelSpec spec_;
    mutable ov::Core core_;
    std::string path_;
    // The spec the handle opened with: a later engine reads the file again (keeping the model instead would
    // hold a second copy of the weights where the first engine came from the compiled-model cache) and is
    // refused if the file no longer holds this spec.
    std::string opened_spec_json_;
    ov::AnyMap compile_config_;
    ov::element::Type input_type_;
    std::size_t logits_index_ = 0;
    std::optional<std::size_t> labels_index_;
    std::optional<RequestPool> pool_;
};

// Why BF16 cannot run natively here (empty: it can), from OpenVINO's CPU capabilities and /proc/cpuinfo.
std::string bf16_unsupported_reason(const std::vector<std::string>& capabilities);

}  // namespace fcn
