// The OpenVINO runtime of the native library (mirrors fcn_deploy/runtime/openvino_backend.py and
// runtime_spec.py): reads an fcn-deploy ONNX file (or OpenVINO IR), takes the spec from the model's runtime info
// ("framework" / "fcn_deploy.spec", where OpenVINO keeps ONNX metadata), checks it against the sidecar and the
// model's inputs and outputs, compiles for the CPU and lends infer requests from a pool so that calls from
// several threads run at the same time.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <openvino/openvino.hpp>
#include <optional>
#include <string>
#include <vector>

#include "spec.hpp"

namespace fcn {

// How to compile: OpenVINO's inference precision hint ("f32" or "bf16").
struct RuntimeOptions {
    std::string precision = "f32";
};

// Infer requests of one compiled model, created on demand up to ``limit`` and handed out one caller at a time.
class RequestPool {
public:
    RequestPool(ov::CompiledModel& compiled, std::size_t limit) : compiled_(compiled), limit_(limit) {}

    // An idle request (a new one while fewer than ``limit`` exist; otherwise wait for one to come back).
    ov::InferRequest acquire();
    void release(ov::InferRequest request);

private:
    ov::CompiledModel& compiled_;
    std::size_t limit_;
    std::size_t created_ = 0;
    std::vector<ov::InferRequest> idle_;
    std::mutex mutex_;
    std::condition_variable returned_;
};

// An infer request borrowed from the pool for one call; given back when the lease ends.
class RequestLease {
public:
    explicit RequestLease(RequestPool& pool) : pool_(pool), request_(pool.acquire()) {}
    ~RequestLease() { pool_.release(std::move(request_)); }
    RequestLease(const RequestLease&) = delete;
    RequestLease& operator=(const RequestLease&) = delete;

    ov::InferRequest& request() { return request_; }

private:
    RequestPool& pool_;
    ov::InferRequest request_;
};

class Runtime {
public:
    Runtime(const std::string& path, const RuntimeOptions& options);
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    const ModelSpec& spec() const { return spec_; }
    // True when the model computes labels itself (an export with the argmax in the graph).
    bool has_labels() const { return labels_port_.has_value(); }
    const ov::element::Type& input_type() const { return input_type_; }
    const ov::Output<const ov::Node>& logits_port() const { return logits_port_; }
    const ov::Output<const ov::Node>& labels_port() const { return *labels_port_; }
    RequestPool& pool() { return *pool_; }

private:
    ModelSpec spec_;
    ov::Core core_;
    ov::CompiledModel compiled_;
    ov::element::Type input_type_;
    ov::Output<const ov::Node> logits_port_;
    std::optional<ov::Output<const ov::Node>> labels_port_;
    std::optional<RequestPool> pool_;
};

// Why BF16 cannot run natively here (empty: it can), from OpenVINO's CPU capabilities and /proc/cpuinfo.
std::string bf16_unsupported_reason(const std::vector<std::string>& capabilities);

}  // namespace fcn
